"""Latent models beyond a single decode: pictures encoded to latents (image keyframes), and
morph jobs: keyframes joined by slerp (or lerp), decoded frame by frame.

With "even" spacing the path is first probed (studio.latent.even_spacing: single decodes, at most
twice the frame count) to find where the picture changes fast, and the frames are placed so that
neighbours differ about equally. Every decode goes through the job context, so a morph reports
progress and stops at the next decode after Cancel. Whether the frames fit in memory is checked
before (budget.py)."""

from __future__ import annotations

import numpy as np

from studio.core.errors import SpecError
from studio.core.events import ImageResult, LatentResult
from studio.core.jobs import LatentEncodeJob, MorphJob
from studio.engine.backends.base import LatentBackend, PictureEncoder
from studio.engine.backends.image_inputs import load_picture
from studio.engine.backends.job_context import JobContext
from studio.latent import Keyframe, Timeline, even_spacing

BATCH = 16  # frames decoded at once in the final pass


def seeded_latent(seed: int, dim: int) -> np.ndarray:
    """The keyframe a seed stands for: a standard normal latent (the models' latents are in
    units of σ along their principal directions), the same on every machine."""
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def timeline_of(spec: MorphJob, dim: int) -> Timeline:
    if spec.latents:
        if len(spec.latents[0]) != dim:
            raise SpecError("latents", f"have {len(spec.latents[0])} numbers each; this model takes {dim}.")
        keys = [np.asarray(row, np.float32) for row in spec.latents]
        names = [f"latent {i + 1}" for i in range(len(keys))]
    else:
        keys = [seeded_latent(seed, dim) for seed in spec.seeds]
        names = [
            f"seed {seed}" if list(spec.seeds).count(seed) == 1 else f"seed {seed} ({i + 1})"
            for i, seed in enumerate(spec.seeds)
        ]
    return Timeline([Keyframe(name, key) for name, key in zip(names, keys)])


def image_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How different two frames look: mean absolute difference of their pixels, 0 to 255."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def run_latent_morph(spec: MorphJob, backend: LatentBackend, ctx: JobContext) -> ImageResult:
    """A morph of a latent model (diffusion models: diffusion_morph)."""
    if spec.diffusion_fields:
        raise SpecError(
            spec.diffusion_fields[0],
            "is for diffusion image models; a latent model morphs between `seeds` or `latents`.",
        )
    timeline = timeline_of(spec, backend.latent_dim)
    probes = 2 * spec.frames if spec.spacing == "even" else 0
    total = probes + spec.frames
    done = 0

    def decode(latents: np.ndarray) -> np.ndarray:
        nonlocal done
        images = backend.decode(np.ascontiguousarray(latents, dtype=np.float32))
        done += len(images)
        ctx.step(min(done, total), total)  # progress, and where Cancel lands
        return images

    if spec.spacing == "even":
        positions = even_spacing(
            lambda u: decode(timeline.at(u, spec.method)[None])[0], image_distance, spec.frames, max_renders=probes
        )
        done = probes  # refinement may stop early; the bar goes on from the final pass
    else:
        positions = timeline.frame_positions(spec.frames)
    latents = timeline.at(positions, spec.method)
    frames = [image for start in range(0, len(latents), BATCH) for image in decode(latents[start : start + BATCH])]
    info = backend.info.replace(positions=[round(float(u), 6) for u in positions], keyframes=timeline.names)
    return ImageResult(tuple(frames), info)


def encode_picture(spec: LatentEncodeJob, backend: LatentBackend, ctx: JobContext) -> LatentResult:
    """The picture, brought to the model's square size (transparency on white, as the shipped
    models were trained), through the model's encoder."""
    if not isinstance(backend, PictureEncoder):
        raise SpecError(
            "runtime",
            f"is {backend.info.runtime or 'this runtime'}, which cannot encode pictures yet; choose the torch runtime.",
        )
    size = backend.image_size
    picture = np.asarray(load_picture(spec.image, size, size))
    ctx.check_cancelled()
    latent = backend.encode(picture[None])[0]
    return LatentResult((tuple(float(v) for v in latent),), backend.info)
