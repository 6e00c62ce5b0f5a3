"""Morphs of diffusion models on a tiny random Stable Diffusion pipeline: seed travel (slerped
initial noise), prompt travel (lerped text embeddings), frames at keyframes equal to the image
jobs of those seeds and prompts, deterministic samplers forced, cancel within one denoising step,
bad fields as one sentence naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from studio.bench.tiny_models import build_tiny_diffusers
from studio.core.errors import SpecError
from studio.core.events import Cancelled, Failed, Finished, Progress
from studio.core.jobs import ImageJob, MorphJob, spec_from_json
from studio.engine.morph.diffusion_morph import morph_sampler
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from fake_models import write_fake_model
from run_jobs import run

SIZE, STEPS = 32, 2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("morph-models")
    build_tiny_diffusers(root / "tiny-sd")
    write_fake_model(root / "fake-latent", "latent", step_seconds=0.0, latent_dim=8, image_size=16)
    write_fake_model(root / "fake-text", "text", step_seconds=0.0)
    return root


@pytest.fixture(scope="module")
def runner(models):
    return Runner(ModelRegistry([(models, "user")]))


def morph(**kw) -> MorphJob:
    base = dict(model="tiny-sd", steps=STEPS, width=SIZE, height=SIZE, spacing="uniform")
    return MorphJob(**{**base, **kw})


def image(runner, **kw) -> np.ndarray:
    base = dict(model="tiny-sd", steps=STEPS, width=SIZE, height=SIZE)
    events = run(runner, ImageJob(**{**base, **kw}))
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].result.images[0]


def result_of(events):
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].result


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture
def inputs(runner, monkeypatch):
    """Every (noise, embeddings) a morph hands to the pipeline, in order."""
    backend = runner.backend_for(morph(seeds=(1, 2)))[0]
    seen = []
    real = backend.generate_from

    def spy(noise, embeddings, **kw):
        seen.append((noise.copy(), {k: v.copy() for k, v in embeddings.items()}))
        return real(noise, embeddings, **kw)

    monkeypatch.setattr(backend, "generate_from", spy)
    return seen


def test_seed_travel_passes_through_the_image_of_every_seed(runner):
    result = result_of(run(runner, morph(seeds=(1, 2, 3), prompt="a red cat", frames=7)))
    frames = np.stack(result.images)
    assert frames.shape == (7, SIZE, SIZE, 3)
    keys = [image(runner, prompt="a red cat", seed=s) for s in (1, 2, 3)]
    for index, key in zip((0, 3, 6), keys):
        assert np.array_equal(frames[index], key)
    for index in (1, 2, 4, 5):  # between keyframes: pictures of their own
        assert differ(frames[index], keys[index // 3]) > 1.0 and differ(frames[index], keys[index // 3 + 1]) > 1.0
    assert list(result.info.keyframes) == ["seed 1", "seed 2", "seed 3"]
    assert np.allclose(result.info.positions, np.linspace(0, 1, 7), atol=1e-6)


def test_the_noise_between_seeds_keeps_its_norm(runner, inputs):
    backend = runner.backend_for(morph(seeds=(1, 2)))[0]
    result_of(run(runner, morph(seeds=(4, 5), prompt="a red cat", frames=3)))
    noises = [noise for noise, _ in inputs]
    assert np.array_equal(noises[0], backend.initial_noise(4, SIZE, SIZE))
    assert np.array_equal(noises[2], backend.initial_noise(5, SIZE, SIZE))
    ends = [float(np.linalg.norm(n)) for n in (noises[0], noises[2])]
    middle = float(np.linalg.norm(noises[1]))
    assert abs(middle - sum(ends) / 2) < 0.01 * middle  # slerp: on the shell
    assert middle > 1.2 * float(np.linalg.norm((noises[0] + noises[2]) / 2))  # lerp's midpoint: ~0.71 of the norm
    cos = float(np.sum(noises[0] * noises[1]) / (ends[0] * middle))
    assert 0.5 < cos < 0.9  # half-way round the great circle (independent noises are ~90 degrees apart)


def test_prompt_travel_lerps_the_prompt_and_keeps_the_negative(runner, inputs):
    prompts = ("a red cat", "a photo of a green apple")
    result = result_of(run(runner, morph(prompts=prompts, seed=9, negative_prompt="blurry", frames=3)))
    frames = np.stack(result.images)
    keys = [image(runner, prompt=p, seed=9, negative_prompt="blurry") for p in prompts]
    assert np.array_equal(frames[0], keys[0]) and np.array_equal(frames[2], keys[1])
    assert differ(frames[1], keys[0]) > 1.0 and differ(frames[1], keys[1]) > 1.0
    (n0, e0), (n1, e1), (n2, e2) = inputs
    assert np.array_equal(n0, n1) and np.array_equal(n1, n2)  # one seed: one noise
    assert np.allclose(e1["prompt_embeds"], (e0["prompt_embeds"] + e2["prompt_embeds"]) / 2, atol=1e-6)
    assert not np.allclose(e0["prompt_embeds"], e2["prompt_embeds"])
    assert np.array_equal(e0["negative_prompt_embeds"], e1["negative_prompt_embeds"])
    assert result.info.seed == 9 and result.info.keyframes[1].startswith("prompt 2: a photo")


def test_prompt_travel_with_a_seed_per_prompt_moves_the_noise_too(runner, inputs):
    result_of(run(runner, morph(prompts=("a red cat", "a photo"), seeds=(3, 4), frames=3)))
    noises = [noise for noise, _ in inputs]
    assert not np.array_equal(noises[0], noises[2]) and not np.array_equal(noises[1], noises[0])
    frames = result_of(run(runner, morph(prompts=("a red cat", "a photo"), seeds=(3, 4), frames=2))).images
    assert np.array_equal(frames[1], image(runner, prompt="a photo", seed=4))


def test_even_spacing_probes_at_most_frames_generations_and_counts_them(runner, inputs):
    events = run(runner, morph(seeds=(1, 2), prompt="a red cat", frames=6, spacing="even"))
    result = result_of(events)
    progress = [e for e in events if isinstance(e, Progress)]
    assert {e.total for e in progress} == {(6 + 6) * STEPS}
    assert progress[-1].step == progress[-1].total
    assert [e.step for e in progress] == sorted(e.step for e in progress)
    assert len(inputs) == result.info.generations <= 6 + 6 - 2  # both ends are probed once, reused
    positions = list(result.info.positions)
    assert positions[0] == 0.0 and positions[-1] == 1.0 and positions == sorted(positions)
    assert np.array_equal(result.images[0], image(runner, prompt="a red cat", seed=1))
    assert np.array_equal(result.images[-1], image(runner, prompt="a red cat", seed=2))


def test_an_ancestral_sampler_is_swapped_and_the_result_says_so(runner):
    result = result_of(run(runner, morph(seeds=(1, 2), prompt="a red cat", frames=2, scheduler="Euler a")))
    assert result.info.scheduler == "Euler"
    assert "Euler a" in result.info.scheduler_note and "Euler instead" in result.info.scheduler_note
    assert np.array_equal(result.images[1], image(runner, prompt="a red cat", seed=2, scheduler="Euler"))
    plain = result_of(run(runner, morph(seeds=(1, 2), prompt="a red cat", frames=2, scheduler="DDIM")))
    assert plain.info.scheduler == "DDIM" and "scheduler_note" not in plain.info.to_dict()


def test_the_deterministic_counterparts():
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    assert morph_sampler("DPM++ 2M SDE", EulerDiscreteScheduler())[0] == "DPM++ 2M"
    assert morph_sampler("Heun", EulerAncestralDiscreteScheduler()) == ("Heun", "")
    assert morph_sampler("", EulerDiscreteScheduler()) == ("", "")
    chosen, note = morph_sampler("", EulerAncestralDiscreteScheduler())  # the model's own sampler
    assert chosen == "Euler" and note.startswith("Euler a draws fresh noise")
    sde = DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", use_karras_sigmas=True)
    assert morph_sampler("", sde)[0] == "DPM++ 2M Karras"


def test_cancel_stops_within_one_denoising_step(runner, monkeypatch):
    backend = runner.backend_for(morph(seeds=(1, 2)))[0]
    calls = []
    real_unet = backend.pipe.unet.forward
    monkeypatch.setattr(backend.pipe.unet, "forward", lambda *a, **k: calls.append(1) or real_unet(*a, **k))
    at_cancel = []

    def cancel_at_3(job, event):
        if isinstance(event, Progress) and event.step == 3:
            job.cancel.set()
            at_cancel.append(len(calls))

    events = run(runner, morph(seeds=(1, 2), prompt="a red cat", frames=8, steps=4), cancel_at_3)
    assert isinstance(events[-1], Cancelled)
    assert max(e.step for e in events if isinstance(e, Progress)) == 3
    assert len(calls) - at_cancel[0] <= 1  # the step already under way, no more


@pytest.mark.parametrize(
    "fields, name",
    [
        (dict(prompts=("a cat",)), "prompts"),
        (dict(prompts=("a cat", "  ")), "prompts"),
        (dict(prompts=("a cat", "a dog"), seeds=(1, 2, 3)), "seeds"),
        (dict(prompts=("a cat", "a dog"), prompt="a bird"), "prompt"),
        (dict(prompts=("a cat", "a dog"), latents=((1.0,), (2.0,))), "prompts"),
        (dict(seeds=(1, 2), latents=((1.0,), (2.0,))), "seeds"),
        (dict(seeds=(1, 2), steps=0), "steps"),
        (dict(seeds=(1, 2), width=30), "width"),
        (dict(seeds=(1, 2), guidance_scale=-1.0), "guidance_scale"),
        (dict(seeds=(1, 2), scheduler="Bogus"), "scheduler"),
        (dict(seeds=(1, 2), negative_prompt=3), "negative_prompt"),
        (dict(prompts=tuple(f"p{i}" for i in range(300))), "prompts"),
    ],
)
def test_bad_fields_are_one_sentence_naming_the_field(fields, name):
    with pytest.raises(SpecError) as error:
        MorphJob(model="m", **fields).validate()
    assert error.value.field == name and "\n" not in str(error.value) and f"`{name}`" in str(error.value)


def test_a_diffusion_morph_round_trips_through_json():
    job = MorphJob(
        model="emoji-sd",
        prompts=("a cat", "a dog"),
        seeds=(1, 2),
        negative_prompt="blurry",
        steps=4,
        guidance_scale=5.5,
        width=64,
        height=48,
        scheduler="DDIM",
        frames=12,
    )
    assert spec_from_json(job.to_json()) == job
    latent = MorphJob(model="emoji-vae", seeds=(1, 2))
    assert spec_from_json(latent.to_json()) == latent


@pytest.mark.parametrize(
    "model, fields, words",
    [
        ("fake-latent", dict(prompts=("a cat", "a dog")), ["`prompts`", "diffusion"]),
        ("fake-latent", dict(seeds=(1, 2), prompt="a cat"), ["`prompt`", "diffusion"]),
        ("tiny-sd", dict(latents=((1.0, 2.0), (3.0, 4.0))), ["`latents`", "`seeds` or `prompts`"]),
        ("fake-text", dict(seeds=(1, 2)), ["fake-text is a text model", "a latent or an image model"]),
    ],
)
def test_a_morph_the_model_cannot_take_fails_with_one_sentence(runner, model, fields, words):
    events = run(runner, MorphJob(model=model, frames=4, **fields))
    assert isinstance(events[-1], Failed) and events[-1].kind == "bad input", events[-1]
    assert "\n" not in events[-1].message
    for word in words:
        assert word in events[-1].message
    assert not any(isinstance(e, Progress) for e in events)


def test_two_evenly_spaced_frames_are_the_two_ends_without_probing(runner, inputs):
    result = result_of(run(runner, morph(seeds=(1, 2, 3), prompt="a red cat", frames=2, spacing="even")))
    assert list(result.info.positions) == [0.0, 1.0] and len(inputs) == 2
    assert np.array_equal(result.images[1], image(runner, prompt="a red cat", seed=3))
