"""Latent models beyond a single decode: pictures encoded to latents (image keyframes), and
morph jobs: keyframes joined by slerp (or lerp), decoded frame by frame.

With "even" spacing the path is first probed (studio.latent.even_spacing: single decodes, at most
twice the frame count) to find where the picture changes fast, and the frames are placed so that
neighbours differ about equally. Every decode goes through the job context, so a morph reports
progress and stops at the next decode after Cancel.

A morph holds every frame it renders until it ends, so before the first one the memory they will
take is checked against what the machine has free: a morph too large is one sentence at once,
not a MemoryError after every frame was rendered."""

from __future__ import annotations

from typing import Any

import numpy as np

from studio.core import memory
from studio.core.errors import SpecError
from studio.core.events import ImageResult, LatentResult
from studio.core.jobs import LatentEncodeJob, MorphJob
from studio.engine.backends.base import JobContext
from studio.engine.backends.image_inputs import load_picture
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
        names = [f"seed {seed}" if list(spec.seeds).count(seed) == 1 else f"seed {seed} ({i + 1})"
                 for i, seed in enumerate(spec.seeds)]
    return Timeline([Keyframe(name, key) for name, key in zip(names, keys)])


def renders_kept(spec: MorphJob, model_kind: str) -> int:
    """Renders a morph holds when it ends: its frames, and the probes "even" spacing keeps until
    then (up to two per frame on a latent model, one on a diffusion model)."""
    if spec.spacing != "even":
        return spec.frames
    return spec.frames * (2 if model_kind == "image" else 3)


def frames_bytes(spec: MorphJob, model_kind: str, width: int, height: int) -> int:
    """Memory the morph's renders take, as uint8 RGB frames of width x height."""
    return renders_kept(spec, model_kind) * width * height * 3


def too_large(need: int, what: str, advice: str) -> str:
    """The sentence refusing a morph of `need` bytes when the machine has less free; "" when it fits."""
    free = memory.free_when_short(need)
    if free is None:
        return ""
    return (f"{what} would need about {memory.size_words(need)} of memory; this machine has "
            f"{memory.size_words(free)} free; {advice}.")


def check_morph_memory(spec: MorphJob, backend: Any, model_kind: str) -> None:
    """SpecError naming `frames` when the morph's renders would not fit in the memory free now.
    A diffusion model's frames have the spec's size; a latent model's, the model's own."""
    if model_kind == "image":
        width, height = spec.width, spec.height
    else:
        width = height = int(getattr(backend, "image_size", 0) or 0)
    sentence = too_large(frames_bytes(spec, model_kind, width, height),
                         f"({spec.frames} frames of {width}×{height} pixels)", "use fewer frames or a smaller size")
    if sentence:
        raise SpecError("frames", sentence)


def image_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How different two frames look: mean absolute difference of their pixels, 0 to 255."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def run_morph(spec: MorphJob, backend: Any, ctx: JobContext) -> ImageResult:
    """A morph of a latent model (diffusion models: studio.engine.diffusion_morph)."""
    if spec.diffusion_fields:
        raise SpecError(spec.diffusion_fields[0], "is for diffusion image models; a latent model morphs between "
                                                  "`seeds` or `latents`.")
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
        positions = even_spacing(lambda u: decode(timeline.at(u, spec.method)[None])[0], image_distance,
                                 spec.frames, max_renders=probes)
        done = probes  # refinement may stop early; the bar goes on from the final pass
    else:
        positions = timeline.frame_positions(spec.frames)
    latents = timeline.at(positions, spec.method)
    frames = [image for start in range(0, len(latents), BATCH) for image in decode(latents[start:start + BATCH])]
    info = dict(getattr(backend, "info", {}))
    info.update(positions=[round(float(u), 6) for u in positions], keyframes=timeline.names)
    return ImageResult(tuple(frames), info)


def encode_picture(spec: LatentEncodeJob, backend: Any, ctx: JobContext) -> LatentResult:
    """The picture, brought to the model's square size (transparency on white, as the shipped
    models were trained), through the model's encoder."""
    if not hasattr(backend, "encode"):
        raise SpecError("runtime", f"is {backend.info.get('runtime', 'this runtime')}, which cannot encode pictures "
                                   "yet; choose the torch runtime.")
    size = backend.image_size
    picture = np.asarray(load_picture(spec.image, size, size))
    ctx.check_cancelled()
    latent = backend.encode(picture[None])[0]
    return LatentResult((tuple(float(v) for v in latent),), dict(getattr(backend, "info", {})))
