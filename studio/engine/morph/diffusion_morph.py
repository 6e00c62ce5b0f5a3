"""Morphs of diffusion image models: seed travel and prompt travel (reference §2.6, §2.7).

A diffusion image is fixed by its initial noise (drawn from the seed) and its prompt's text
embeddings, so a morph interpolates those two and runs a full generation per frame:
  - seed travel: keyframes are seeds; each frame starts from the slerp of the keyframes' noises
    (slerp keeps the noise on the shell the model was trained on; a lerp midpoint has ~0.71 of
    the norm and comes out washed out), with one prompt;
  - prompt travel: keyframes are prompts; the cond embeddings are lerped (a learned space, where
    lerp is right), the uncond stays the negative prompt's; the seed is fixed, or one per prompt
    (then the noise slerps too).
The noise and embeddings at a keyframe are exactly an image job's, so a frame at a keyframe is
that image job's picture, pixel for pixel.

The sampler must be deterministic: an ancestral or SDE sampler draws fresh noise at every step
from the main seed, so "noise of A slerped fully to B" is not "seed B" and the video jumps at
every keyframe (seed_travel issue #28). Such a sampler is swapped for its deterministic
counterpart and the result says so.

Progress counts denoising steps over every generation, probes included; each step is where
Cancel lands."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from studio.core.errors import SpecError
from studio.core.events import ImageResult
from studio.core.jobs import MorphJob
from studio.engine.backends.base import MorphableImageBackend
from studio.engine.backends.diffusion.schedulers import ANCESTRAL, sampler_name
from studio.engine.backends.job_context import JobContext
from studio.engine.morph.latent_morph import image_distance
from studio.latent import Keyframe, Timeline, even_spacing

# The deterministic sampler that walks the same ODE as a stochastic one.
COUNTERPART = {"Euler a": "Euler", "DPM++ 2M SDE": "DPM++ 2M"}
# Scheduler classes that add noise at every step whatever their name says.
STOCHASTIC_CLASSES = frozenset({"DDPMScheduler", "LCMScheduler", "TCDScheduler", "DDPMWuerstchenScheduler"})


def is_stochastic(scheduler: Any) -> bool:
    """Whether a scheduler object draws fresh noise at each step (ancestral, SDE, DDPM-like)."""
    name = type(scheduler).__name__
    algorithm = str(getattr(scheduler, "config", {}).get("algorithm_type", ""))
    return "Ancestral" in name or "SDE" in name or name in STOCHASTIC_CLASSES or algorithm.startswith("sde")


def morph_sampler(requested: str, base: Any) -> tuple[str, str]:
    """(the sampler a morph runs with, "" = the model's own; a note when it is not the one asked for)."""
    if requested:
        if requested not in ANCESTRAL:
            return requested, ""
        shown, chosen = requested, COUNTERPART.get(requested, "Euler")
    else:
        if not is_stochastic(base):
            return "", ""
        shown = sampler_name(base) or type(base).__name__
        chosen = COUNTERPART.get(shown, "Euler")
        if type(base).__name__ == "DPMSolverMultistepScheduler":  # the model's own SDE solver, less its noise
            chosen = "DPM++ 2M Karras" if base.config.get("use_karras_sigmas") else "DPM++ 2M"
    return chosen, (
        f"{shown} draws fresh noise at every step, which makes a morph jump at every keyframe, "
        f"so the morph ran with {chosen} instead."
    )


def _line(names: list[str], keys: list[np.ndarray]) -> Optional[Timeline]:
    """The path through the keyframes, or None when one value serves every frame."""
    if len(keys) < 2:
        return None
    return Timeline([Keyframe(name, key) for name, key in zip(names, keys)])


def _key_names(spec: MorphJob) -> list[str]:
    if spec.prompts:
        return [f"prompt {i + 1}: {text.strip()[:40]}" for i, text in enumerate(spec.prompts)]
    return [
        f"seed {seed}" if spec.seeds.count(seed) == 1 else f"seed {seed} ({i + 1})" for i, seed in enumerate(spec.seeds)
    ]


def run_diffusion_morph(spec: MorphJob, backend: object, ctx: JobContext) -> ImageResult:
    # 1. What a diffusion morph cannot take, checked before anything is computed.
    if spec.latents:
        raise SpecError(
            "latents", "are keyframes of latent models; a diffusion model morphs between `seeds` or `prompts`."
        )
    if not isinstance(backend, MorphableImageBackend):
        raise SpecError("model", "runs on a backend that cannot morph; morphs run on Stable Diffusion models.")
    backend.check_morphable()
    sampler, note = morph_sampler(spec.scheduler, backend.base_scheduler)
    size = dict(width=spec.width, height=spec.height)

    # 2. Keyframes: the initial noise of each seed (or of the one seed), the embeddings of each
    #    prompt (or of the one prompt). Encoding costs a text-encoder pass each: cancel points.
    names = _key_names(spec)
    noises = []
    for seed in spec.seeds or (spec.seed,):
        noises.append(backend.initial_noise(seed, **size))
        ctx.check_cancelled()
    embeddings = []
    for prompt in spec.prompts or (spec.prompt,):
        embeddings.append(backend.prompt_embeddings(prompt, spec.negative_prompt, spec.guidance_scale))
        ctx.check_cancelled()
    noise_line = _line(names, noises)
    # Only the prompt's own embeddings travel; the negative prompt's stay as they are.
    travelling = [k for k in embeddings[0] if not k.startswith("negative_")]
    embed_lines = {k: _line(names, [e[k] for e in embeddings]) for k in travelling}

    def inputs_at(u: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        noise = noise_line.at(u, spec.method) if noise_line else noises[0]
        embeds = dict(embeddings[0])
        for k, line in embed_lines.items():
            if line is not None:
                embeds[k] = line.at(u, "lerp")
        return noise, embeds

    # 3. Renders: every one a full generation, every denoising step a progress and cancel point.
    #    "even" probes the path first, at most `frames` generations (fewer when it stops early),
    #    and a probe at a position the frames land on again (both ends, at least) is reused.
    probes = spec.frames if spec.spacing == "even" and spec.frames > 2 else 0
    total = (probes + spec.frames) * spec.steps
    done = 0  # generations counted so far, reused ones included
    generated = 0
    rendered: dict[float, np.ndarray] = {}

    def render(u: float) -> np.ndarray:
        nonlocal done, generated
        if u not in rendered:
            start = done * spec.steps

            def on_step(i: int, per_image: int) -> None:  # second-order samplers take more steps
                ctx.step(start + min(spec.steps, (i + 1) * spec.steps // per_image), total)

            noise, embeds = inputs_at(u)
            rendered[u] = backend.generate_from(
                noise,
                embeds,
                scheduler=sampler,
                steps=spec.steps,
                guidance_scale=spec.guidance_scale,
                seed=spec.seed,
                on_step=on_step,
                **size,
            )
            generated += 1
        else:
            ctx.step((done + 1) * spec.steps, total)  # a reused render: the bar moves on, Cancel still lands
        done += 1
        return rendered[u]

    if probes:
        positions = even_spacing(render, image_distance, spec.frames, max_renders=probes)
        done = probes  # refinement may stop early; the bar goes on from the final pass
    elif spec.spacing == "even":  # two frames: the two ends, whatever lies between
        positions = np.array([0.0, 1.0])
    else:
        line = noise_line or next(line for line in embed_lines.values() if line is not None)
        positions = line.frame_positions(spec.frames)
    frames = tuple(render(float(u)) for u in positions)

    info = backend.info.replace(
        positions=[round(float(u), 6) for u in positions],
        keyframes=names,
        generations=generated,
        scheduler=sampler or sampler_name(backend.base_scheduler),
        scheduler_note=note or "",
    )
    if spec.prompts and not spec.seeds:
        info = info.replace(seed=spec.seed)  # the one seed of every frame
    return ImageResult(frames, info)
