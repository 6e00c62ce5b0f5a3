"""What a morph's frames will cost in memory, checked before the first one is rendered.

A morph holds every frame it renders until it ends, so before the first one the memory they will
take is checked against what the machine has free: a morph too large is one sentence at once,
not a MemoryError after every frame was rendered. `studio morph` adds what its file writer needs."""

from __future__ import annotations

from studio.core import memory
from studio.core.errors import SpecError
from studio.core.jobs import MorphJob
from studio.core.kinds import ModelKind


def renders_kept(spec: MorphJob, model_kind: str) -> int:
    """Renders a morph holds when it ends: its frames, and the probes "even" spacing keeps until
    then (up to two per frame on a latent model, one on a diffusion model)."""
    if spec.spacing != "even":
        return spec.frames
    return spec.frames * (2 if model_kind == ModelKind.IMAGE else 3)


def frames_bytes(spec: MorphJob, model_kind: str, width: int, height: int) -> int:
    """Memory the morph's renders take, as uint8 RGB frames of width x height."""
    return renders_kept(spec, model_kind) * width * height * 3


def too_large(need: int, what: str, advice: str) -> str:
    """The sentence refusing a morph of `need` bytes when the machine has less free; "" when it fits."""
    free = memory.free_when_short(need)
    if free is None:
        return ""
    return (
        f"{what} would need about {memory.size_words(need)} of memory; this machine has "
        f"{memory.size_words(free)} free; {advice}."
    )


def check_morph_memory(spec: MorphJob, model_kind: str, width: int, height: int) -> None:
    """SpecError naming `frames` when the morph's renders of width x height would not fit in the
    memory free now (a diffusion model's frames have the spec's size; a latent model's, its own)."""
    sentence = too_large(
        frames_bytes(spec, model_kind, width, height),
        f"({spec.frames} frames of {width}×{height} pixels)",
        "use fewer frames or a smaller size",
    )
    if sentence:
        raise SpecError("frames", sentence)
