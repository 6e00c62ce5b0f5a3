"""The runtime picker under each workspace's model: ONNX Runtime offered where a model has an
export, greyed with how to export it where not, the pick applied to the model's jobs, remembered,
and the provider that ran the last job shown in the status bar."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from studio.core.jobs import LatentDecodeJob
from studio.engine.export.onnx_export import default_out, export_onnx
from studio.models import paths
from studio.models.registry import ModelRegistry
from studio.state.jobs import JobState


@pytest.fixture
def exported_gan(monkeypatch, sandbox_dirs):
    """The embedded models, and emoji-gan exported to ONNX in the user's models folder."""
    monkeypatch.setenv("STUDIO_EMBEDDED_MODELS_DIR", str(paths.EMBEDDED_MODELS_DIR))
    gan = ModelRegistry().resolve("emoji-gan")
    assert export_onnx(gan, default_out(gan)).ok


def pick(combo, data) -> None:
    """Choose an item as a person does: the index changes and `activated` fires."""
    index = combo.findData(data)
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_onnx_is_offered_only_for_exported_models_and_runs_their_jobs(qtbot, exported_gan, make_window):
    window = make_window()
    explore = window.explore
    titles = [explore.runtimes.itemText(i) for i in range(explore.runtimes.count())]
    assert titles == ["Auto", "PyTorch", "ONNX Runtime"]

    pick(explore.models, "emoji-vae")  # not exported yet: ONNX offered, saying that picking it exports
    onnx = explore.runtimes.findData("onnx")
    assert explore.runtimes.model().item(onnx).isEnabled()
    assert explore.runtimes.itemData(onnx, 3).startswith("Not exported yet: picking it exports emoji-vae")

    pick(explore.models, "emoji-gan")
    assert explore.runtimes.model().item(onnx).isEnabled()
    assert explore.runtimes.runtime() == "auto"
    pick(explore.runtimes, "onnx")
    assert window.jobs.runtimes == {"emoji-gan": "onnx"}

    job = window.jobs.submit(LatentDecodeJob(model="emoji-gan", latent=(0.5,) * 128))
    qtbot.waitUntil(lambda: job.state is JobState.FINISHED, timeout=20_000)
    assert job.spec.runtime == "onnx"  # the pick went into the job
    assert window.jobs.last_info.provider == "CPU"
    qtbot.waitUntil(lambda: "ONNX Runtime (CPU)" in window.engine_label.text(), timeout=2_000)
    assert window.engine_label.text() == "Engine idle · cpu · ONNX Runtime (CPU)"

    pick(explore.models, "emoji-vae")  # the pick is per model
    assert explore.runtimes.runtime() == "auto"
    pick(explore.models, "emoji-gan")
    assert explore.runtimes.runtime() == "onnx"


def test_picking_onnx_for_a_model_without_an_export_exports_it_then_runs_on_it(qtbot, exported_gan, make_window):
    window = make_window()
    explore = window.explore
    pick(explore.models, "emoji-vae")
    pick(explore.runtimes, "onnx")
    pick(explore.runtimes, "onnx")  # asked twice while it runs: still one export
    (export,) = [r for r in window.jobs if r.kind == "export"]
    assert export.title == "export · emoji-vae → ONNX"
    assert explore.runtimes.runtime() == "onnx"  # shown as picked while it exports
    assert window.jobs.runtimes == {}  # ...but jobs keep running on torch until the export is there
    job = window.jobs.submit(LatentDecodeJob(model="emoji-vae", latent=(0.5,) * 128))
    qtbot.waitUntil(lambda: window.jobs.get(export.id).state is JobState.FINISHED, timeout=60_000)
    qtbot.waitUntil(lambda: job.state.is_terminal, timeout=20_000)
    assert job.state is JobState.FINISHED  # whichever runtime it found
    assert window.jobs.runtimes == {"emoji-vae": "onnx"}
    qtbot.waitUntil(lambda: window.registry.resolve("emoji-vae").runtimes == ("torch", "onnx"), timeout=5_000)
    assert explore.runtimes.runtime() == "onnx"
    assert explore.runtimes.itemData(explore.runtimes.findData("onnx"), 3) is None  # nothing left to explain

    job = window.jobs.submit(LatentDecodeJob(model="emoji-vae", latent=(0.5,) * 128))
    qtbot.waitUntil(lambda: job.state is JobState.FINISHED, timeout=20_000)
    assert window.jobs.last_info.runtime == "onnx" and window.jobs.last_info.model == "emoji-vae-onnx"


def test_a_failed_export_goes_back_to_the_models_own_runtime(qtbot, exported_gan, make_window):
    window = make_window()
    explore = window.explore
    (Path(os.environ["STUDIO_MODELS_DIR"]) / "emoji-vae-onnx").mkdir()  # taken: the export is refused
    (Path(os.environ["STUDIO_MODELS_DIR"]) / "emoji-vae-onnx" / "mine.txt").write_text("x")
    pick(explore.models, "emoji-vae")
    pick(explore.runtimes, "onnx")
    (export_record,) = [r for r in window.jobs if r.kind == "export"]
    qtbot.waitUntil(lambda: window.jobs.get(export_record.id).state is JobState.FAILED, timeout=30_000)
    assert "already exists and is not empty" in window.jobs.error.message
    qtbot.waitUntil(lambda: explore.runtimes.runtime() == "auto", timeout=5_000)
    assert window.jobs.runtimes == {} and window.jobs.exports == {}


def test_a_saved_onnx_pick_whose_export_is_gone_is_not_restored(qtbot, exported_gan, make_window):
    import shutil

    first = make_window()
    pick(first.explore.models, "emoji-gan")
    pick(first.explore.runtimes, "onnx")
    first.close()
    shutil.rmtree(Path(os.environ["STUDIO_MODELS_DIR"]) / "emoji-gan-onnx")
    second = make_window()
    second.refresh_models()
    assert second.jobs.runtimes == {}
    pick(second.explore.models, "emoji-gan")
    assert second.explore.runtimes.runtime() == "auto"


def test_onnx_is_greyed_for_a_model_that_cannot_be_exported(qtbot, fake_models, make_window):
    window = make_window()
    explore = window.explore
    onnx = explore.runtimes.findData("onnx")
    assert explore.models.model_id() == "fake-latent"
    assert not explore.runtimes.model().item(onnx).isEnabled()
    assert explore.runtimes.itemData(onnx, 3) == "fake-latent is a fake model, which the studio cannot export to ONNX"


def test_the_pick_is_remembered_by_the_next_window(qtbot, exported_gan, make_window):
    first = make_window()
    pick(first.explore.models, "emoji-gan")
    pick(first.explore.runtimes, "torch")
    first.close()
    second = make_window()
    assert second.jobs.runtimes == {"emoji-gan": "torch"}
    pick(second.explore.models, "emoji-gan")
    assert second.explore.runtimes.runtime() == "torch"
    # Every workspace has the picker in its panel, just under its model picker.
    for workspace in second.workspaces():
        assert workspace.isAncestorOf(workspace.runtimes)
        assert workspace.runtimes.parentWidget() is workspace.models.parentWidget()


def test_onnx_is_greyed_for_a_pipeline_family_the_exporter_does_not_handle(qtbot, fake_models, make_window):
    import json

    sd3 = fake_models / "my-sd3"
    sd3.mkdir()
    (sd3 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    window = make_window()
    image = window.image
    pick(image.models, "my-sd3")
    onnx = image.runtimes.findData("onnx")
    assert not image.runtimes.model().item(onnx).isEnabled()
    assert image.runtimes.itemData(onnx, 3) == (
        "my-sd3 is a StableDiffusion3Pipeline; the studio exports only Stable Diffusion 1.x/2.x and SDXL (UNet) "
        "pipelines to ONNX, not transformer pipelines such as SD3 or Flux"
    )


@pytest.fixture
def embedded(monkeypatch, sandbox_dirs):
    monkeypatch.setenv("STUDIO_EMBEDDED_MODELS_DIR", str(paths.EMBEDDED_MODELS_DIR))


def test_the_write_tab_runs_a_gguf_model_on_llama_cpp_and_says_so(qtbot, embedded, make_window):
    window = make_window()
    write = window.write
    assert [write.runtimes.itemText(i) for i in range(write.runtimes.count())][-1] == "llama.cpp"
    assert window.explore.runtimes.findData("llama.cpp") == -1  # latent models never run there
    llama = write.runtimes.findData("llama.cpp")
    pick(write.models, "prose")
    assert not write.runtimes.model().item(llama).isEnabled()
    assert write.runtimes.itemData(llama, 3) == "prose runs on PyTorch only"
    pick(write.models, "prose-gguf")
    assert write.runtimes.model().item(llama).isEnabled()
    assert not write.runtimes.model().item(write.runtimes.findData("torch")).isEnabled()

    write.editor.setPlainText("It was a dark and stormy night")
    cursor = write.editor.textCursor()
    cursor.movePosition(cursor.MoveOperation.End)  # Continue writes at the cursor
    write.editor.setTextCursor(cursor)
    handle = write.continue_text()
    qtbot.waitUntil(lambda: handle.state is JobState.FINISHED, timeout=30_000)
    text = write.editor.toPlainText()
    assert text.startswith("It was a dark and stormy night") and len(text) > 40  # the model wrote on
    assert window.jobs.last_info.runtime == "llama.cpp" and window.jobs.last_info.dtype == "Q8_0"
    qtbot.waitUntil(lambda: "llama.cpp" in window.engine_label.text(), timeout=2_000)
    assert window.engine_label.text() == "Engine idle · cpu · llama.cpp (Q8_0)"

    # Hover shows what else llama.cpp nearly wrote; choosing one rewrites from that token on.
    start = len("It was a dark and stormy night")
    assert "Alternatives here" in write._hover_text(start + 1)
    before = write.editor.toPlainText()
    branch = write.choose_alternative(start + 1, 1)
    assert branch is not None
    qtbot.waitUntil(lambda: branch.state is JobState.FINISHED, timeout=30_000)
    after = write.editor.toPlainText()
    assert after.startswith("It was a dark and stormy night") and after != before
