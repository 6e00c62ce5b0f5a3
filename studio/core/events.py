"""Events: what the runner tells its host about a job. Plain, picklable data.

Every job emits Started (unless cancelled while queued), any number of Progress / Preview /
Token events, and then exactly one of Finished, Failed or Cancelled."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np


@dataclass(frozen=True)
class Started:
    job_id: int


@dataclass(frozen=True)
class Progress:
    job_id: int
    step: int  # 1-based: `step` of `total` steps are done
    total: int


@dataclass(frozen=True)
class Preview:
    job_id: int
    image: np.ndarray  # uint8, H x W x 3
    step: int = 0


@dataclass(frozen=True)
class Token:
    job_id: int
    text: str  # the text this token adds (may be "" while a multi-byte character is incomplete)
    token_id: int
    # The top alternatives the sampler saw for this position: (token text, probability), best first.
    alternatives: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class RunInfo:
    """What a result says about its run: backends fill where it ran, the runner adds the model,
    memory saving and time. Unset fields are empty ("", None, ()); `to_dict` leaves them out."""

    model: str = ""  # the model's id in the registry
    model_name: str = ""  # the weights' file stem or folder name, as A1111 names the model
    model_hash: str = ""  # A1111's model hash: the full SHA-256 hex of the weights
    device: str = ""  # where it ran: "cpu", "cuda", ...
    runtime: str = ""  # the library that ran it: "torch", "onnx", "fake"
    provider: str = ""  # ONNX Runtime's execution provider, short ("CPU", "CUDA")
    dtype: str = ""  # the weights' dtype: "float32", "float16", ...
    seconds: Optional[float] = None  # the job's time on the engine, model load included
    scheduler: str = ""  # the A1111 name of the sampler that ran
    scheduler_note: str = ""  # a sentence when the asked-for sampler was swapped for another
    lora_hashes: tuple[tuple[str, str], ...] = ()  # (LoRA name, its 12-hex A1111 hash), in order
    memory_saving: str = ""  # the memory saving that was on, in words
    degraded: str = ""  # a sentence when it ran out of memory and got through with less
    tokens: Optional[int] = None  # tokens a text job generated
    seed: Optional[int] = None  # the one seed of every frame of a morph
    positions: tuple[float, ...] = ()  # a morph's frames, as positions from 0 to 1 along it
    keyframes: tuple[str, ...] = ()  # a morph's keyframes, by name
    generations: Optional[int] = None  # the generations an adaptive morph ran

    def lora_hash_map(self) -> dict[str, str]:
        """The LoRA hashes by name."""
        return dict(self.lora_hashes)

    def replace(self, **changes: Any) -> RunInfo:
        """A copy with `changes`: lora_hashes may be given as a mapping, sequences as lists."""
        if isinstance(changes.get("lora_hashes"), Mapping):
            changes["lora_hashes"] = tuple(changes["lora_hashes"].items())
        for name in ("positions", "keyframes"):
            if name in changes:
                changes[name] = tuple(changes[name])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as plain JSON values: what goes under "info" in an image's
        `studio` chunk (the same JSON the results' info dicts made before RunInfo)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or value == "" or value == ():
                continue
            if f.name == "lora_hashes":
                value = {str(n): str(h) for n, h in value}
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, str):
                value = str(value)  # a StrEnum (Device, Runtime) as its plain value
            out[f.name] = value
        return out


@dataclass(frozen=True)
class ImageResult:
    images: tuple[np.ndarray, ...]  # uint8, H x W x 3 each
    info: RunInfo = field(default_factory=RunInfo)


@dataclass(frozen=True)
class TextResult:
    text: str  # only the generated text, not the prompt
    token_ids: tuple[int, ...]
    info: RunInfo = field(default_factory=RunInfo)


@dataclass(frozen=True)
class LatentResult:
    """Latent vectors, one per input image: what a latent model's encoder made of them."""

    latents: tuple[tuple[float, ...], ...]
    info: RunInfo = field(default_factory=RunInfo)


@dataclass(frozen=True)
class ExportResult:
    """An ONNX export that passed its parity check: where it was written, and the check's lines."""

    path: str
    parity: tuple[str, ...]
    info: RunInfo = field(default_factory=RunInfo)


# The parts of an assembled prompt, for the context viewer to colour (studio.writing.prompt's
# roles, and "template" for what a chat template adds around them).
CONTEXT_ROLES = ("memory", "world_info", "story", "authors_note", "template")


@dataclass(frozen=True)
class ContextResult:
    """What a text model reads for a job: the prompt exactly as sent, measured by its tokenizer."""

    prompt: str
    parts: tuple[tuple[str, int, int], ...]  # (role, start, end), in order, tiling `prompt`
    tokens: int  # the prompt's tokens, as the model receives them
    context_length: int  # the model's window
    max_new_tokens: int  # room kept for the continuation
    trimmed_chars: int = 0  # characters of the story left out from its beginning
    world_info: tuple[int, ...] = ()  # the world info entries that were triggered
    info: RunInfo = field(default_factory=RunInfo)


@dataclass(frozen=True)
class ContextUsed:
    """A text job's prompt, as assembled on the engine, sent before its first token."""

    job_id: int
    context: ContextResult


Result = Union[ImageResult, TextResult, ContextResult, LatentResult, ExportResult]


@dataclass(frozen=True)
class Finished:
    job_id: int
    result: Result


@dataclass(frozen=True)
class Failed:
    job_id: int
    kind: str  # an ErrorKind value
    message: str  # one sentence a person can act on


@dataclass(frozen=True)
class Cancelled:
    job_id: int
    reason: str = "cancelled"  # "cancelled" or "superseded" (a newer interactive request won)


Event = Union[Started, Progress, Preview, Token, ContextUsed, Finished, Failed, Cancelled]
TERMINAL_EVENTS = (Finished, Failed, Cancelled)
