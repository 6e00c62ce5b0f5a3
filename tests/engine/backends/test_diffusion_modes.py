"""img2img, inpainting, samplers, batches, x0 previews, LoRAs and model hashes on a real (tiny,
random) Stable Diffusion pipeline, through the Runner."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from studio.bench.tiny_models import build_tiny_diffusers
from studio.core.events import Failed, Finished, Preview, Progress
from studio.core.jobs import SCHEDULERS, ImageJob
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import run


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion-modes")
    build_tiny_diffusers(root / "tiny-sd")
    return root


@pytest.fixture(scope="module")
def runner(models):
    return Runner(ModelRegistry([(models, "user")]))


def spec(**kw):
    base = dict(model="tiny-sd", prompt="a photo of a red cat", steps=4, width=64, height=64, seed=3)
    return ImageJob(**{**base, **kw})


def finished(events):
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].result


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_sampler_runs_and_is_reported_by_its_a1111_name(runner, name):
    result = finished(run(runner, spec(scheduler=name, steps=3)))
    assert result.images[0].shape == (64, 64, 3)
    assert result.info.scheduler == name


def test_samplers_differ_and_the_models_own_is_named(runner):
    euler = finished(run(runner, spec(scheduler="Euler"))).images[0]
    ancestral = finished(run(runner, spec(scheduler="Euler a"))).images[0]
    assert not np.array_equal(euler, ancestral)
    assert finished(run(runner, spec())).info.scheduler == "Euler"  # the tiny model ships Euler


def test_img2img_runs_strength_times_steps_and_follows_the_init_image(runner, pictures):
    events = run(runner, spec(init_image=str(pictures["a"]), strength=0.5, steps=4))
    assert [e.total for e in events if isinstance(e, Progress)] == [2, 2]
    from_a = finished(events).images[0]
    from_b = finished(run(runner, spec(init_image=str(pictures["b"]), strength=0.5, steps=4))).images[0]
    assert not np.array_equal(from_a, from_b)


def test_inpainting_keeps_every_pixel_outside_the_mask(runner, pictures):
    original = np.asarray(Image.open(pictures["a"]).convert("RGB"))
    result = finished(run(runner, spec(init_image=str(pictures["a"]), mask=str(pictures["mask"]), strength=1.0)))
    out = result.images[0]
    assert np.array_equal(out[:, 32:], original[:, 32:]), "outside the mask the pixels stay as they were"
    assert np.abs(out[:, :32].astype(int) - original[:, :32]).mean() > 10, "inside the mask they are repainted"


def test_an_init_image_of_another_size_is_fitted_to_the_job(runner, tmp_path):
    Image.new("RGB", (100, 30), (200, 40, 40)).save(tmp_path / "wide.png")
    out = finished(run(runner, spec(init_image=str(tmp_path / "wide.png"), strength=0.3))).images[0]
    assert out.shape == (64, 64, 3)


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(init_image="/no/such/picture.png"), ["`init_image`", "does not exist"]),
        (dict(init_image="{a}", mask="{empty}"), ["`mask`", "is empty"]),
        (dict(init_image="{text}"), ["`init_image`", "not an image"]),
    ],
)
def test_bad_input_pictures_fail_with_a_sentence_naming_the_field(runner, pictures, tmp_path, fields, words):
    Image.new("L", (64, 64), 0).save(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not a picture")
    names = {"a": pictures["a"], "empty": tmp_path / "empty.png", "text": tmp_path / "text.png"}
    fields = {k: v.format(**names) for k, v in fields.items()}
    failed = run(runner, spec(**fields))[-1]
    assert isinstance(failed, Failed) and failed.kind == "bad input"
    for word in words:
        assert word in failed.message


def test_a_batch_is_one_image_per_seed_each_reproducible_alone(runner):
    events = run(runner, spec(count=3, seed=10, steps=2))
    images = finished(events).images
    assert len(images) == 3
    assert [e.step for e in events if isinstance(e, Progress)] == list(range(1, 7))
    assert {e.total for e in events if isinstance(e, Progress)} == {6}
    alone = finished(run(runner, spec(seed=11, steps=2))).images[0]
    assert np.array_equal(images[1], alone)
    assert not np.array_equal(images[0], images[1])


def test_previews_show_the_predicted_clean_image(runner, monkeypatch):
    from studio.engine.backends.diffusion import previews as diffusion_previews
    from studio.engine.backends.job_context import JobContext

    monkeypatch.setattr(JobContext, "preview_due", lambda self: True)  # a preview after every step
    events = run(runner, spec(scheduler="Euler", steps=6))
    previews = {e.step: e.image.astype(int) for e in events if isinstance(e, Preview)}
    final = finished(events).images[0].astype(int)
    assert sorted(previews) == [1, 2, 3, 4, 5], "every step but the last, which the image itself follows"
    # x0 converges on the final picture; the noisy latent itself would still be mostly noise.
    gaps = [np.abs(previews[k] - final).mean() for k in sorted(previews)]
    assert gaps[-1] < gaps[0] and gaps[-1] < 12
    monkeypatch.setattr(diffusion_previews, "FULL_DECODE_MAX_PARAMS", 0)
    latent_res = [e for e in run(runner, spec(scheduler="Euler", steps=3)) if isinstance(e, Preview)]
    assert latent_res and latent_res[0].image.shape == (8, 8, 3)  # big VAEs: the cheap projection


def test_nobody_looking_means_no_previews(models):
    events = run(Runner(ModelRegistry([(models, "user")]), previews=False), spec(steps=3))
    assert isinstance(events[-1], Finished) and not any(isinstance(e, Preview) for e in events)


def test_the_model_hash_is_the_sha256_of_its_unet_weights(runner, models):
    info = finished(run(runner, spec(steps=1))).info
    weights = models / "tiny-sd" / "unet" / "diffusion_pytorch_model.safetensors"
    assert info.model_hash == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info.model_name == "tiny-sd"


# -- LoRA ------------------------------------------------------------------------------------------


def _write_lora(runner, path, seed, kohya=False):
    """A random LoRA for the tiny UNet's attention, saved the way trainers save them."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    unet = runner.backend_for(spec())[0].pipe.unet
    torch.manual_seed(seed)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False),
        adapter_name="maker",
    )
    state = get_peft_model_state_dict(unet, adapter_name="maker")
    unet.delete_adapters("maker")
    state = {k: v * 3 for k, v in state.items()}  # strong enough to see in a 4-step image
    if kohya:
        state = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in state.items()})
        state = {k.replace("lora_te_unet_", "lora_unet_"): v for k, v in state.items()}
    else:
        state = {f"unet.{k}": v for k, v in convert_state_dict_to_diffusers(state).items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_loras_change_the_image_by_their_weight_and_several_work_at_once(runner, tmp_path):
    style = _write_lora(runner, tmp_path / "style.safetensors", seed=1)
    kohya = _write_lora(runner, tmp_path / "kohya.safetensors", seed=2, kohya=True)
    plain = finished(run(runner, spec())).images[0]
    off = finished(run(runner, spec(loras=((str(style), 0.0),)))).images[0]
    on = finished(run(runner, spec(loras=((str(style), 1.0),))))
    both = finished(run(runner, spec(loras=((str(style), 1.0), (str(kohya), 0.8)))))
    assert np.array_equal(plain, off), "weight 0 is no LoRA at all"
    assert not np.array_equal(plain, on.images[0])
    assert not np.array_equal(on.images[0], both.images[0])
    assert set(both.info.lora_hash_map()) == {"style", "kohya"}
    assert all(len(h) == 12 for h in both.info.lora_hash_map().values())
    again = finished(run(runner, spec())).images[0]
    assert np.array_equal(plain, again), "a job without LoRAs runs without them"


def test_a_lora_for_another_model_fails_with_one_sentence(runner, tmp_path):
    from safetensors.torch import save_file

    plain = finished(run(runner, spec(steps=1))).images[0]
    _write_lora(runner, tmp_path / "good.safetensors", seed=3)
    finished(run(runner, spec(steps=1, loras=((str(tmp_path / "good.safetensors"), 1.0),))))
    assert np.array_equal(finished(run(runner, spec(steps=1))).images[0], plain)

    save_file(
        {
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 999),
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(999, 4),
        },
        str(tmp_path / "other.safetensors"),
    )
    failed = run(runner, spec(loras=((str(tmp_path / "other.safetensors"), 1.0),)))[-1]
    assert isinstance(failed, Failed) and failed.kind == "model file"
    assert "other.safetensors is not a LoRA this model can use" in failed.message
    after = finished(run(runner, spec(steps=1))).images[0]
    assert np.array_equal(after, plain), "a failed LoRA leaves no adapter switched on"


@pytest.mark.parametrize("name", ["Euler a", "DPM++ 2M SDE"])
def test_ancestral_samplers_draw_their_noise_from_the_jobs_seed(runner, name):
    first = finished(run(runner, spec(scheduler=name))).images[0]
    torch.manual_seed(999)  # the global RNG must not matter
    again = finished(run(runner, spec(scheduler=name))).images[0]
    assert np.array_equal(first, again)


def test_a_named_sampler_takes_only_the_models_schedule_not_its_options():
    from diffusers import DPMSolverMultistepScheduler

    from studio.engine.backends.diffusion.schedulers import make_scheduler, sampler_name

    base = DPMSolverMultistepScheduler(use_karras_sigmas=True, solver_type="heun", prediction_type="v_prediction")
    euler = make_scheduler("Euler", base)
    assert not euler.config.get("use_karras_sigmas") and euler.config.prediction_type == "v_prediction"
    assert sampler_name(euler) == "Euler"
    plain = make_scheduler("DPM++ 2M", base)
    assert plain.config.solver_type == "midpoint" and sampler_name(plain) == "DPM++ 2M"
    assert sampler_name(base) == "DPM++ 2M Karras"
    assert sampler_name(make_scheduler("", base)) == "DPM++ 2M Karras"  # the model's own, as it is


def test_pndm_previews_come_from_the_predicted_clean_image():
    from diffusers import PNDMScheduler

    from studio.engine.backends.diffusion.previews import X0Tap
    from studio.engine.backends.diffusion.schedulers import sampler_name

    scheduler = PNDMScheduler(skip_prk_steps=True)
    scheduler.set_timesteps(10)
    tap = X0Tap(scheduler)
    x0 = torch.randn(1, 4, 8, 8)
    eps = torch.randn(1, 4, 8, 8)
    t = scheduler.timesteps[0]
    a = scheduler.alphas_cumprod[int(t)]
    sample = a.sqrt() * x0 + (1 - a).sqrt() * eps
    scheduler.step(eps, t, sample)
    assert torch.allclose(tap.x0, x0, atol=1e-4)
    assert sampler_name(scheduler) == "PLMS"


def test_too_little_strength_for_the_steps_is_refused_before_it_is_queued(pictures):
    from studio.core.errors import SpecError

    with pytest.raises(SpecError, match=r"^`strength` 0.1 of 4 steps leaves no step to run"):
        spec(init_image=str(pictures["a"]), strength=0.1, steps=4).validate()
    spec(init_image=str(pictures["a"]), strength=0.25, steps=4).validate()  # one step: fine
