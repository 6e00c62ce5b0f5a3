"""The diffusers image backend on a real (tiny, random) Stable Diffusion pipeline, through the Runner:
events in order, previews, seeds, cancel between steps, broken folders as one clear sentence."""

import json
import shutil

import numpy as np
import pytest
import torch

from studio.bench.tiny_models import build_tiny_diffusers
from studio.core.events import TERMINAL_EVENTS, Cancelled, Failed, Finished, Preview, Progress, Started
from studio.core.jobs import ImageJob
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import one_sentence_failure, run


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers-models")
    good = build_tiny_diffusers(root / "tiny-sd")
    # Half a UNet: what an interrupted copy or download leaves behind.
    shutil.copytree(good, root / "truncated-sd")
    weights = root / "truncated-sd" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    # A component that model_index.json lists but whose folder is gone.
    shutil.copytree(good, root / "no-vae-sd")
    shutil.rmtree(root / "no-vae-sd" / "vae")
    # A stray Python file deep in the folder: refused before diffusers could import it.
    shutil.copytree(good, root / "stray-py-sd")
    (root / "stray-py-sd" / "scheduler" / "evil.py").write_text("raise SystemExit('ran model code')\n")
    # model_index.json without a pipeline class name.
    shutil.copytree(good, root / "no-class-sd")
    index = json.loads((root / "no-class-sd" / "model_index.json").read_text())
    del index["_class_name"]
    (root / "no-class-sd" / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="module")
def runner(models):
    return Runner(ModelRegistry([(models, "user")]))


def spec(**kw):
    base = dict(model="tiny-sd", prompt="a photo of a red cat", steps=3, width=64, height=64, seed=1)
    return ImageJob(**{**base, **kw})


def image_of(events):
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].result.images[0]


def test_txt2img_reports_every_step_previews_and_one_image(runner):
    events = run(runner, spec(steps=4, width=64, height=48))
    assert isinstance(events[0], Started)
    assert [(e.step, e.total) for e in events if isinstance(e, Progress)] == [(i, 4) for i in range(1, 5)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews, "at least the last step previews"
    for p in previews:  # the tiny VAE is cheap enough to decode x0 in full, uint8 RGB
        assert p.image.dtype == np.uint8 and p.image.shape == (48, 64, 3)
    assert sum(isinstance(e, TERMINAL_EVENTS) for e in events) == 1
    image = image_of(events)
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
    info = events[-1].result.info
    assert info.runtime == "torch" and info.device == "cpu" and info.dtype == "float32"


def test_same_seed_same_pixels_other_seed_other_pixels(runner):
    first = image_of(run(runner, spec(seed=7)))
    torch.manual_seed(12345)  # global RNG state must not matter: the job seeds its own generator
    again = image_of(run(runner, spec(seed=7)))
    other = image_of(run(runner, spec(seed=8)))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_64_bit_seed_makes_its_own_image_again(runner):
    """ComfyUI and Fooocus draw 64-bit seeds; torch's generator takes them, so their images remake."""
    biggest = 2**64 - 1
    first = image_of(run(runner, spec(seed=biggest)))
    assert np.array_equal(first, image_of(run(runner, spec(seed=biggest))))
    assert not np.array_equal(first, image_of(run(runner, spec(seed=biggest - 1))))


def test_cancel_lands_at_the_next_step_without_decoding(runner, monkeypatch):
    from studio.engine.backends.diffusion import previews as diffusion_previews

    monkeypatch.setattr(diffusion_previews, "FULL_DECODE_MAX_PARAMS", 0)  # previews by projection only
    backend = runner.backend_for(spec())[0]
    decodes = []
    real_decode = backend.pipe.vae.decode
    monkeypatch.setattr(backend.pipe.vae, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))

    def cancel_at_2(job, event):
        if isinstance(event, Progress) and event.step == 2:
            job.cancel.set()

    events = run(runner, spec(steps=4), cancel_at_2)
    assert isinstance(events[-1], Cancelled)
    assert max(e.step for e in events if isinstance(e, Progress)) == 2
    assert not any(isinstance(e, (Finished, Failed)) for e in events)
    assert decodes == [], "a cancelled job must not spend a VAE decode"
    assert image_of(run(runner, spec())).shape == (64, 64, 3) and decodes == [1]


@pytest.mark.parametrize(
    "model, words",
    [
        ("truncated-sd", ["incomplete", "unet", "copy it again"]),
        ("no-vae-sd", ["no-vae-sd", "'vae'"]),
        ("stray-py-sd", ["contains Python code (scheduler/evil.py); the studio never runs code from model folders."]),
        ("no-class-sd", ["model_index.json in", "has no pipeline class name: copy the folder again."]),
    ],
)
def test_a_broken_folder_fails_with_one_sentence_and_the_runner_carries_on(runner, model, words):
    events = run(runner, spec(model=model))
    one_sentence_failure(events, "model file", words)
    assert not any(isinstance(e, Progress) for e in events)
    assert image_of(run(runner, spec())).shape == (64, 64, 3)


def test_latent_preview_projects_four_channels_and_stretches_others():
    from studio.engine.backends.diffusion.previews import linear_preview as latent_preview

    four = latent_preview(torch.zeros(2, 4, 5, 7))
    assert four.shape == (5, 7, 3) and four.dtype == np.uint8
    assert np.all(four == 128)  # zero latents sit in the middle of the display range
    sixteen = latent_preview(torch.randn(1, 16, 4, 4))
    assert sixteen.shape == (4, 4, 3) and sixteen.min() == 0 and sixteen.max() == 255
    assert latent_preview(torch.zeros(1, 64, 16)) is None  # packed latents (Flux): no cheap view


def test_diffusers_is_told_never_to_trust_remote_code(models, monkeypatch):
    import diffusers

    from studio.engine.backends.diffusion.diffusers_image import DiffusersImageBackend

    seen = []
    real = diffusers.DiffusionPipeline.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", spy)
    model = ModelRegistry([(models, "user")]).resolve("tiny-sd")
    DiffusersImageBackend.load(model, "cpu", "float32").close()
    assert len(seen) == 1 and seen[0]["trust_remote_code"] is False and seen[0]["local_files_only"] is True
