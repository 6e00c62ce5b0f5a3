"""Events: what the runner tells its host about a job. Plain, picklable data.

Every job emits Started (unless cancelled while queued), any number of Progress / Preview /
Token events, and then exactly one of Finished, Failed or Cancelled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

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
class ImageResult:
    images: tuple[np.ndarray, ...]  # uint8, H x W x 3 each
    info: dict[str, Any] = field(default_factory=dict)  # device, runtime, provider, seconds...


@dataclass(frozen=True)
class TextResult:
    text: str  # only the generated text, not the prompt
    token_ids: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LatentResult:
    """Latent vectors, one per input image: what a latent model's encoder made of them."""

    latents: tuple[tuple[float, ...], ...]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportResult:
    """An ONNX export that passed its parity check: where it was written, and the check's lines."""

    path: str
    parity: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


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
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContextUsed:
    """A text job's prompt, as assembled on the engine, sent before its first token."""

    job_id: int
    context: ContextResult


Result = Union[ImageResult, TextResult, ContextResult, LatentResult]


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
