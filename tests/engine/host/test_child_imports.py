"""Nothing in the folder the studio is started from runs in its child processes: a `numpy.py`,
`torch.py` or `studio/` package there (a downloaded model folder, a project folder) must never be
imported by the engine process or the pickle converter, whatever the caller's sys.path and
PYTHONPATH say about the current folder."""

import os

import pytest
import torch  # imported before the booby-trapped folder is on this process's own path

from studio.core.child_python import child_env, safe_python_path, shareable_path
from studio.core.jobs import ImageJob
from studio.engine.host.supervisor import EngineProcess, RunnerRecipe
from studio.models.pickle_import import convert_file
from studio.models.registry import ModelRegistry
from studio.state.engine_thread import EngineThread

from fake_models import write_fake_model
from processes import running_children

CANARY_MODULES = ("numpy", "torch", "safetensors", "sitecustomize", "usercustomize")


@pytest.fixture
def booby_trapped_folder(tmp_path, monkeypatch):
    """A working folder whose every importable name writes a canary file when imported, made the
    current folder, put first on sys.path (as `python -m` does) and in PYTHONPATH as an empty and a
    relative entry (both mean the current folder)."""
    folder = tmp_path / "downloads"
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    folder.mkdir()
    for name in CANARY_MODULES:
        (folder / f"{name}.py").write_text(f"open({str(canaries / name)!r}, 'w').close()\n")
    (folder / "studio").mkdir()
    (folder / "studio" / "__init__.py").write_text(f"open({str(canaries / 'studio')!r}, 'w').close()\n")
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["", ".", os.environ.get("PYTHONPATH", "")]))
    return canaries


def image_from_an_engine_process(qtbot, model: str):
    """The image a fresh engine process makes with `model` (16x16, 2 steps); the process is gone after."""
    thread = EngineThread(EngineProcess(RunnerRecipe(ModelRegistry(), 1 << 30)))
    thread.start()
    try:
        with qtbot.waitSignal(thread.job_finished, timeout=60_000) as finished:
            thread.submit(ImageJob(model=model, width=16, height=16, steps=2))
        return finished.args[1].images[0]
    finally:
        assert thread.stop()


def test_the_engine_process_imports_nothing_from_the_folder_it_was_started_from(
    qtbot, fake_models, booby_trapped_folder
):
    write_fake_model(fake_models / "quick-image", "image", step_seconds=0.0)
    assert image_from_an_engine_process(qtbot, "quick-image").shape == (16, 16, 3)
    assert running_children() == []
    assert sorted(p.name for p in booby_trapped_folder.iterdir()) == []


def test_the_pickle_converter_imports_nothing_from_the_current_folder(tmp_path, booby_trapped_folder):
    source = tmp_path / "weights.ckpt"
    torch.save({"w": torch.ones(2, 2)}, source)
    converted = convert_file(source, tmp_path / "weights.safetensors")
    assert converted.tensors == 1
    assert sorted(p.name for p in booby_trapped_folder.iterdir()) == []


def test_a_child_takes_only_absolute_import_paths_other_than_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kept = str(tmp_path.parent)
    assert shareable_path(["", ".", "rel/dir", str(tmp_path), kept]) == [kept]
    entries = safe_python_path(os.pathsep.join(["", ".", "rel", kept, kept]))
    assert entries[1:] == [kept] and os.path.isabs(entries[0])
    env = child_env({"PYTHONPATH": ":x", "STUDIO_MODELS_DIR": "models", "HOME": "h"})
    assert env["STUDIO_MODELS_DIR"] == str(tmp_path / "models")
    assert env["HOME"] == "h"  # only the studio's own and XDG path variables are touched
    assert "" not in env["PYTHONPATH"].split(os.pathsep)


def test_a_models_folder_given_relative_to_the_start_folder_is_found_by_the_engine_process(
    qtbot, sandbox_dirs, tmp_path, monkeypatch
):
    """The engine process runs in the package's folder, not the caller's: a relative models folder
    means the caller's, there too."""
    start = tmp_path / "start"
    write_fake_model(start / "mine" / "relative-image", "image", step_seconds=0.0)
    monkeypatch.chdir(start)
    monkeypatch.setenv("STUDIO_MODELS_DIR", "mine")
    assert image_from_an_engine_process(qtbot, "relative-image").shape == (16, 16, 3)
