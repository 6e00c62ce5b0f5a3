"""A tiny random Stable Diffusion pipeline exported to ONNX (Optimum's layout) and run on ONNX
Runtime through the Runner: steps, previews, seeds, the torch image of the same seed, img2img,
inpainting, every sampler, morphs, cancel without a VAE decode, and one sentence for what an
ONNX model cannot do or a broken export folder."""

import shutil

import numpy as np
import pytest
from PIL import Image

from studio.bench.tiny_models import build_tiny_diffusers
from studio.core.events import Cancelled, Failed, Finished, Preview, Progress
from studio.core.jobs import SCHEDULERS, ImageJob, MorphJob
from studio.engine.export.onnx_export import export_onnx
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import run

ONNX, TORCH = "tiny-sd-onnx", "tiny-sd"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-diffusion")
    build_tiny_diffusers(root / TORCH)
    parity = export_onnx(ModelRegistry([(root, "user")]).resolve(TORCH), root / ONNX, say=lambda line: None)
    assert parity.ok, parity.lines
    return root


@pytest.fixture(scope="module")
def runner(models):
    return Runner(ModelRegistry([(models, "user")]))


def spec(**kw):
    base = dict(model=ONNX, runtime="onnx", prompt="a photo of a red cat", steps=4, width=64, height=64, seed=3)
    return ImageJob(**{**base, **kw})


def finished(events):
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].result


def image(runner, **kw):
    return finished(run(runner, spec(**kw))).images[0]


def largest_difference(a, b) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_txt2img_reports_every_step_previews_and_where_it_ran(runner):
    events = run(runner, spec())
    result = finished(events)
    assert [(e.step, e.total) for e in events if isinstance(e, Progress)] == [(i, 4) for i in range(1, 5)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews and previews[0].image.shape == (64, 64, 3)  # the tiny VAE decodes x0 in full
    assert len(result.images) == 1 and result.images[0].shape == (64, 64, 3) and result.images[0].dtype == np.uint8
    info = result.info
    assert (info.runtime, info.provider, info.device, info.dtype) == ("onnx", "CPU", "cpu", "float32")
    assert info.scheduler == "Euler" and info.model_name == ONNX


def test_a_seed_gives_the_same_pixels_and_another_seed_others(runner):
    first = image(runner, seed=5)
    assert np.array_equal(first, image(runner, seed=5))
    assert largest_difference(first, image(runner, seed=6)) > 10


@pytest.mark.parametrize("fields", [{}, dict(scheduler="DPM++ 2M Karras", negative_prompt="blue sky", count=2)])
def test_the_onnx_image_is_the_torch_image_of_the_same_seed(runner, fields):
    onnx = finished(run(runner, spec(**fields))).images
    torch = finished(run(runner, spec(model=TORCH, runtime="torch", **fields))).images
    assert len(onnx) == len(torch) == fields.get("count", 1)
    for ours, theirs in zip(onnx, torch):
        assert largest_difference(ours, theirs) <= 1


def test_the_source_model_runs_its_export_on_onnx(runner):
    result = finished(run(runner, spec(model=TORCH)))
    assert result.info.runtime == "onnx" and result.info.model_name == ONNX
    assert np.array_equal(result.images[0], image(runner))


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_sampler_runs_from_the_models_scheduler_config(runner, name):
    result = finished(run(runner, spec(scheduler=name, steps=3)))
    assert result.info.scheduler == name and result.images[0].shape == (64, 64, 3)


def test_img2img_follows_the_init_image_as_on_torch(runner, pictures):
    events = run(runner, spec(init_image=str(pictures["a"]), strength=0.5))
    assert [e.total for e in events if isinstance(e, Progress)] == [2, 2]  # strength x steps
    from_a = finished(events).images[0]
    assert largest_difference(from_a, image(runner, init_image=str(pictures["b"]), strength=0.5)) > 10
    on_torch = image(runner, model=TORCH, runtime="torch", init_image=str(pictures["a"]), strength=0.5)
    assert largest_difference(from_a, on_torch) <= 1


def test_inpainting_keeps_every_pixel_outside_the_mask(runner, pictures):
    original = np.asarray(Image.open(pictures["a"]).convert("RGB"))
    fields = dict(init_image=str(pictures["a"]), mask=str(pictures["mask"]), strength=1.0)
    out = image(runner, **fields)
    assert np.array_equal(out[:, 32:], original[:, 32:]), "outside the mask the pixels stay as they were"
    assert np.abs(out[:, :32].astype(int) - original[:, :32]).mean() > 10, "inside the mask they are repainted"
    assert largest_difference(out, image(runner, model=TORCH, runtime="torch", **fields)) <= 1


def test_cancel_after_the_first_step_ends_the_job_without_a_vae_decode(models):
    quiet = Runner(ModelRegistry([(models, "user")]), previews=False)  # previews decode too
    backend = quiet.backend_for(spec())[0]
    decoder = backend.sessions["vae_decoder"]
    decodes = []
    real_run = decoder.run
    decoder.run = lambda *args, **kw: decodes.append(1) or real_run(*args, **kw)

    def cancel_after_first_step(job, event):
        if isinstance(event, Progress) and event.step == 1:
            job.cancel.set()

    try:
        events = run(quiet, spec(steps=6), on_event=cancel_after_first_step)
        assert isinstance(events[-1], Cancelled)
        assert [e.step for e in events if isinstance(e, Progress)] == [1]
        assert decodes == []
        assert len(finished(run(quiet, spec(steps=2))).images) == 1 and decodes == [1]  # uncancelled, it decodes
    finally:
        del decoder.run


def test_a_seed_morph_has_the_image_jobs_at_its_keyframes(runner):
    morph = MorphJob(
        model=ONNX,
        runtime="onnx",
        seeds=(3, 4),
        frames=3,
        spacing="uniform",
        steps=2,
        width=64,
        height=64,
        prompt="a photo of a red cat",
    )
    frames = finished(run(runner, morph)).images
    assert len(frames) == 3
    assert np.array_equal(frames[0], image(runner, steps=2, seed=3))
    assert np.array_equal(frames[-1], image(runner, steps=2, seed=4))


def test_loras_fail_with_a_sentence_naming_loras(runner, tmp_path):
    failed = run(runner, spec(loras=((str(tmp_path / "style.safetensors"), 0.8),)))[-1]
    assert isinstance(failed, Failed) and failed.kind == "bad input"
    assert failed.message.startswith("`loras`") and "torch" in failed.message


def test_memory_is_the_size_of_the_networks(runner, models):
    backend = runner.backend_for(spec())[0]
    files = sorted((models / ONNX).glob("*/model.onnx"))
    assert len(files) == 4 and backend.memory_bytes == sum(f.stat().st_size for f in files)
    assert set(backend.sessions) == {"text_encoder", "unet", "vae_encoder", "vae_decoder"}


@pytest.mark.parametrize(
    "damage, words",
    [
        ("truncate unet", ["unet/model.onnx in", "broken-onnx", "copy it again"]),
        ("remove vae_decoder", ["vae_decoder/model.onnx is missing from", "broken-onnx"]),
        ("break the scheduler", ["scheduler_config.json", "not valid JSON"]),
    ],
)
def test_a_broken_export_folder_fails_with_one_sentence(models, tmp_path, damage, words):
    broken = tmp_path / "models" / "broken-onnx"
    shutil.copytree(models / ONNX, broken)
    if damage == "truncate unet":
        unet = broken / "unet" / "model.onnx"
        unet.write_bytes(unet.read_bytes()[: unet.stat().st_size // 3])
    elif damage == "remove vae_decoder":
        shutil.rmtree(broken / "vae_decoder")
    else:
        (broken / "scheduler" / "scheduler_config.json").write_text("{ not json")
    failed = run(Runner(ModelRegistry([(tmp_path / "models", "user")])), spec(model="broken-onnx"))[-1]
    assert isinstance(failed, Failed) and failed.kind == "model file", failed
    assert "\n" not in failed.message and failed.message.endswith(".")
    for word in words:
        assert word in failed.message
