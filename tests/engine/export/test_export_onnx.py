"""`studio export-onnx` on the embedded VAE and GAN, as a user runs it: the folder it writes, the
parity it prints, the pairing that gives the source model the "onnx" runtime, and jobs that then
run on ONNX Runtime with the same pictures as torch."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from studio.cli import main
from studio.core.events import Failed, Finished
from studio.core.jobs import LatentDecodeJob, LatentEncodeJob
from studio.engine.export import onnx_export as export
from studio.engine.runner import Runner
from studio.models import paths
from studio.models.registry import ModelRegistry

from run_jobs import run


@pytest.fixture(autouse=True)
def embedded(monkeypatch):
    monkeypatch.setenv("STUDIO_EMBEDDED_MODELS_DIR", str(paths.EMBEDDED_MODELS_DIR))


@pytest.fixture
def exported(capsys):
    """emoji-vae exported with the default --out: into the user's models folder."""
    assert main(["export-onnx", "emoji-vae"]) == 0
    captured = capsys.readouterr()
    return Path(os.environ["STUDIO_MODELS_DIR"]) / "emoji-vae-onnx", captured


def test_export_writes_decoder_encoder_and_manifest_and_prints_parity(exported):
    folder, captured = exported
    assert sorted(p.name for p in folder.iterdir()) == ["decoder.onnx", "encoder.onnx", "studio.json"]
    manifest = json.loads((folder / "studio.json").read_text())
    assert manifest["format"] == "onnx-latent" and manifest["exported_from"] == "emoji-vae"
    assert (manifest["latent_dim"], manifest["image_size"]) == (128, 64)
    assert manifest["title"] == "Emoji VAE (ONNX)" and manifest["licence"] == "Apache-2.0"
    lines = captured.out.splitlines()
    assert lines[0] == "parity with torch (CPU, float32):"
    decoder, encoder = lines[1], lines[2]
    assert decoder.strip().startswith("decoder.onnx (8 latents): max abs difference") and decoder.endswith(" ok")
    assert encoder.strip().startswith("encoder.onnx (8 pictures, latent values)") and encoder.endswith(" ok")
    assert float(decoder.split("difference ")[1].split()[0]) <= 1e-3
    assert lines[-1] == f"wrote {folder}"
    assert "exporting decoder.onnx" in captured.err
    # Nothing half-made is left beside it (the staging folder was moved into place).
    assert [p.name for p in folder.parent.iterdir()] == ["emoji-vae-onnx"]


def test_the_export_folder_is_private_to_no_one(exported):
    folder, _ = exported
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's 0700


def test_the_source_model_gains_the_onnx_runtime_and_the_export_is_not_listed_twice(exported, capsys):
    registry = ModelRegistry()
    vae = registry.resolve("emoji-vae")
    assert vae.runtimes == ("torch", "onnx") and vae.onnx_export == "emoji-vae-onnx"
    assert "emoji-vae-onnx" not in [m.id for m in registry.models()]
    assert "emoji-vae-onnx" in [m.id for m in registry.models(exports=True)]
    assert registry.for_runtime(vae, "onnx").path == exported[0]
    assert registry.for_runtime(vae, "torch") is vae

    assert main(["models"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("emoji-vae "))
    assert "torch, onnx (CPU)" in row


def test_jobs_on_the_onnx_runtime_match_torch(exported):
    runner = Runner(ModelRegistry())
    latent = tuple(float(v) for v in np.random.default_rng(3).standard_normal(128))
    images = {}
    for runtime in ("torch", "onnx"):
        (*_, end) = run(runner, LatentDecodeJob(model="emoji-vae", latent=latent, runtime=runtime, device="cpu"))
        assert isinstance(end, Finished), end
        images[runtime] = end.result.images[0].astype(int)
        assert end.result.info.runtime == runtime
    assert end.result.info.provider == "CPU" and end.result.info.model == "emoji-vae-onnx"
    assert np.abs(images["onnx"] - images["torch"]).max() <= 1  # uint8: a rounding step at most
    assert images["onnx"].std() > 5  # a picture, not a flat field


def test_encoding_a_picture_runs_on_the_exported_encoder(exported, tmp_path):
    from PIL import Image

    picture = tmp_path / "smile.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(picture)
    runner = Runner(ModelRegistry())
    latents = {}
    for runtime in ("torch", "onnx"):
        (*_, end) = run(runner, LatentEncodeJob(model="emoji-vae", image=str(picture), runtime=runtime, device="cpu"))
        assert isinstance(end, Finished), end
        latents[runtime] = np.asarray(end.result.latents[0])
    assert np.abs(latents["onnx"] - latents["torch"]).max() < 1e-3


def test_the_gan_exports_a_decoder_only_and_cannot_encode(capsys, tmp_path):
    out = tmp_path / "gan"
    assert main(["export-onnx", "emoji-gan", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "studio.json"]
    assert "encoder" not in capsys.readouterr().out
    runner = Runner(ModelRegistry(roots=[(paths.EMBEDDED_MODELS_DIR, "embedded"), (tmp_path, "user")]))
    picture = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(picture)
    (*_, end) = run(runner, LatentEncodeJob(model="emoji-gan", image=str(picture), runtime="onnx", device="cpu"))
    assert isinstance(end, Failed) and "no encoder" in end.message


def test_onnx_for_a_model_not_yet_exported_says_how_to_export_it():
    runner = Runner(ModelRegistry())
    (*_, end) = run(runner, LatentDecodeJob(model="emoji-gan", latent=(0.0,) * 128, runtime="onnx"))
    assert isinstance(end, Failed)
    assert end.message == (
        "`runtime` is onnx, but emoji-gan runs on torch; export it first with `studio export-onnx emoji-gan`."
    )


def test_an_existing_export_is_replaced_only_with_replace(tmp_path, capsys):
    out = tmp_path / "taken"
    assert main(["export-onnx", "emoji-gan", "--out", str(out)]) == 0
    first = (out / "decoder.onnx").stat().st_ino
    assert main(["export-onnx", "emoji-gan", "--out", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (out / "decoder.onnx").stat().st_ino == first
    assert main(["export-onnx", "emoji-gan", "--out", str(out), "--replace"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "studio.json"]
    assert (out / "decoder.onnx").stat().st_ino != first
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # the replaced folder is gone too


def test_an_export_that_fails_parity_is_not_kept(monkeypatch, tmp_path, capsys):
    from studio.engine.export import latent as export_latent

    def drifted(model, out):
        parity = export.Parity()
        parity.image("decoder.onnx (8 latents)", 0.5)
        return parity

    monkeypatch.setattr(export_latent, "check_parity", drifted)
    out = tmp_path / "bad"
    assert main(["export-onnx", "emoji-gan", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "max abs difference 5.00e-01 (limit 1e-03) TOO LARGE" in captured.out
    assert "does not match torch, so it was not kept" in captured.err
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


def test_models_that_cannot_be_exported_say_so(fake_models, capsys):
    assert main(["export-onnx", "fake-image"]) == 2
    assert capsys.readouterr().err.strip() == (
        "studio: fake-image is a fake model, which the studio cannot export to ONNX."
    )


def test_an_export_job_in_the_engine_writes_the_export_and_the_registry_finds_it(tmp_path):
    from studio.core.events import ExportResult
    from studio.core.jobs import ExportJob

    runner = Runner(ModelRegistry())
    (*_, end) = run(runner, ExportJob(model="emoji-gan"))
    assert isinstance(end, Finished) and isinstance(end.result, ExportResult)
    assert end.result.path == str(Path(os.environ["STUDIO_MODELS_DIR"]) / "emoji-gan-onnx")
    assert end.result.parity[0].startswith("decoder.onnx (8 latents): max abs difference")
    assert runner.registry.resolve("emoji-gan").runtimes == ("torch", "onnx")  # looked again at once


def test_cancelling_an_export_job_between_stages_leaves_nothing(tmp_path, monkeypatch):
    from studio.core.events import Cancelled
    from studio.core.jobs import ExportJob
    from studio.engine.export import latent as export_latent
    from studio.engine.queue import JobQueue

    runner = Runner(ModelRegistry())
    out = tmp_path / "vae"
    stages = []
    real = export_latent._write_decoder

    def write_then_cancel(*args):
        stages.append("decoder")
        job.cancel.set()  # Stop pressed while the decoder was being written
        return real(*args)

    job = JobQueue().make_job(ExportJob(model="emoji-vae", out=str(out)))
    monkeypatch.setattr(export_latent, "_write_decoder", write_then_cancel)
    end = runner.run(job, lambda event: None)
    assert isinstance(end, Cancelled) and stages == ["decoder"]  # the encoder was never exported
    assert list(tmp_path.iterdir()) == []  # neither the export nor its staging folder


def test_the_prose_model_writes_the_same_greedy_text_on_both_runtimes_from_the_command_line(capsys):
    assert main(["export-onnx", "prose"]) == 0
    assert "greedy decoding: 64/64 greedy tokens identical ok" in capsys.readouterr().out
    texts = {}
    for runtime in ("torch", "onnx"):
        assert (
            main(
                [
                    "write",
                    "The old house at the end of the lane",
                    "--model",
                    "prose",
                    "--runtime",
                    runtime,
                    "--temperature",
                    "0",
                    "--max-tokens",
                    "24",
                    "--seed",
                    "1",
                    "--no-progress",
                ]
            )
            == 0
        )
        texts[runtime] = capsys.readouterr().out
    assert texts["onnx"] == texts["torch"] and len(texts["onnx"].split()) >= 5


def test_replace_only_ever_swaps_out_an_earlier_export_never_the_source_or_other_files(tmp_path, capsys):
    source = paths.EMBEDDED_MODELS_DIR / "emoji-gan"
    for out in (source, source / "onnx", paths.EMBEDDED_MODELS_DIR):
        assert main(["export-onnx", "emoji-gan", "--out", str(out), "--replace"]) == 2
        assert "own folder or holds it" in capsys.readouterr().err
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8")
    assert main(["export-onnx", "emoji-gan", "--out", str(mine), "--replace"]) == 2
    assert "holds files that are not an ONNX export, so --replace leaves it alone" in capsys.readouterr().err
    assert (mine / "holiday.jpg").read_bytes() == b"\xff\xd8"


def test_an_export_left_half_made_by_a_killed_export_is_cleared_by_the_next(tmp_path, capsys):
    leftover = tmp_path / ".gan.exporting-abc123"
    leftover.mkdir()
    (leftover / "decoder.onnx").write_bytes(b"half")
    assert main(["export-onnx", "emoji-gan", "--out", str(tmp_path / "gan")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan"]


def test_an_export_of_other_weights_is_not_run_in_the_source_models_place(tmp_path, capsys):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(paths.EMBEDDED_MODELS_DIR / "emoji-gan", models / "gan")
    assert main(["export-onnx", str(models / "gan"), "--out", str(models / "gan-onnx")]) == 0
    registry = ModelRegistry(roots=[(models, "user")])
    assert registry.resolve("gan").runtimes == ("torch", "onnx")
    # The source retrained to another size (a different model under the same name): no longer paired.
    weights = models / "gan" / "decoder.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    registry.refresh()
    assert registry.resolve("gan").runtimes == ("torch",)
    assert "gan-onnx" in [m.id for m in registry.models()]  # still there, as a model of its own


def test_an_export_job_into_an_unknown_users_home_fails_in_one_sentence_naming_out():
    from studio.core.jobs import ExportJob

    runner = Runner(ModelRegistry())
    (*_, end) = run(runner, ExportJob(model="emoji-vae", out="~no-such-studio-user/vae"))
    assert isinstance(end, Failed) and end.kind == "bad input"
    assert end.message == (
        "`out` ~no-such-studio-user/vae starts with ~no-such-studio-user, but this system has no such user "
        "(or no home folder) to put in its place."
    )


def test_export_onnx_into_an_unknown_users_home_names_out(tmp_path):
    from studio.core.errors import SpecError

    model = ModelRegistry().resolve("emoji-vae")
    with pytest.raises(SpecError, match=r"^`out` ~no-such-studio-user/vae starts with ~no-such-studio-user,"):
        export.export_onnx(model, "~no-such-studio-user/vae")
