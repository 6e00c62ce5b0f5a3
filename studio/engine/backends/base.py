"""What a backend is, and the JobContext through which it reports steps, previews and tokens.

A backend is one loaded model on one runtime and device. It implements one capability:
  - image:  `generate_image(spec: ImageJob, ctx) -> ImageResult` (txt2img, img2img or inpainting,
            as the spec says; a backend that cannot do one raises SpecError naming the field)
  - text:   `generate(spec: TextJob, ctx) -> TextResult` (its prompt reported first, with
            `ctx.context_used`) and `context(spec: ContextJob) -> ContextResult` (that prompt alone)
  - latent: `latent_dim: int` and `decode(latents: float32 array (N, D)) -> uint8 array (N, H, W, 3)`
Every backend class has `load(model, device, dtype)`, `choose_device(requested) -> (device, dtype)`
and a `memory_bytes` estimate that the model cache budgets with. Every step or token calls the
context, which is where cancel is checked (it raises JobCancelled) and previews are throttled."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, runtime_checkable

import numpy as np

from studio.core.errors import JobCancelled, SpecError
from studio.core.events import ContextUsed, Event, Preview, Progress, Token

if TYPE_CHECKING:
    import threading

    from studio.core.events import ContextResult, ImageResult, TextResult
    from studio.core.jobs import ContextJob, ImageJob, TextJob
    from studio.models.registry import ModelInfo

PREVIEW_INTERVAL_S = 0.1  # at most ~10 previews a second: more is invisible and costs decode time
PREVIEW_COST_SHARE = 10  # wait at least this many times a preview's own cost before the next


class JobContext:
    """A backend's handle on its job: progress and cancel points, throttled previews, tokens."""

    def __init__(
        self,
        job_id: int,
        cancel: "threading.Event",
        emit: Callable[[Event], None],
        *,
        between_steps: Optional[Callable[[], None]] = None,
        preview_interval: float = PREVIEW_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        previews: bool = True,
    ):
        self.previews = previews  # False where nobody looks at them (the CLI): no decode is spent
        self.job_id = job_id
        self._cancel = cancel
        self._emit = emit
        self._between_steps = between_steps
        self._preview_interval = preview_interval
        self._clock = clock
        self._last_preview = -float("inf")
        self._preview_cost = 0.0

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    def preview_due(self) -> bool:
        # At most ~10 a second, and never more than about 1/PREVIEW_COST_SHARE of the job's time:
        # a preview that takes 9 ms (emoji-sd's full VAE decode on a CPU) waits ~90 ms for the next.
        wait = max(self._preview_interval, self._preview_cost * PREVIEW_COST_SHARE)
        return self._clock() - self._last_preview >= wait

    def step(self, step: int, total: int, preview: Optional[Callable[[], Optional[np.ndarray]]] = None) -> None:
        """Call after each finished step (1-based). Raises JobCancelled if the job was cancelled.

        `preview` is called only when a preview is due, so its cost is paid at most ~10x a second."""
        self.check_cancelled()
        self._emit(Progress(self.job_id, step, total))
        if preview is not None and self.previews and (step == total or self.preview_due()):
            started = self._clock()
            image = preview()
            if image is not None:
                self._last_preview = self._clock()
                self._preview_cost = self._last_preview - started
                self._emit(Preview(self.job_id, image, step))
        if self._between_steps is not None:
            # Interactive requests (slider drags) run here, so they stay live during long renders.
            self._between_steps()

    def checkpoint(self) -> None:
        """A pause point in a job that has no steps to count (an export's stages): Stop lands here
        (it raises JobCancelled) and interactive requests run, as between steps."""
        self.check_cancelled()
        if self._between_steps is not None:
            self._between_steps()

    def context_used(self, context: "ContextResult") -> None:
        """Call once a text job's prompt is assembled, before its first token (the context viewer)."""
        self.check_cancelled()
        self._emit(ContextUsed(self.job_id, context))

    def token(self, text: str, token_id: int, alternatives: tuple[tuple[str, float], ...] = ()) -> None:
        """Call for each generated token before it is kept. Raises JobCancelled if cancelled,
        so a token produced after Stop is never shown (cancel lands within one token)."""
        self.check_cancelled()
        self._emit(Token(self.job_id, text, token_id, alternatives))
        if self._between_steps is not None:
            self._between_steps()


@runtime_checkable
class ImageBackend(Protocol):
    def generate_image(self, spec: "ImageJob", ctx: JobContext) -> "ImageResult": ...


@runtime_checkable
class TextBackend(Protocol):
    def generate(self, spec: "TextJob", ctx: JobContext) -> "TextResult": ...

    def context(self, spec: "ContextJob") -> "ContextResult": ...


@runtime_checkable
class LatentBackend(Protocol):
    latent_dim: int

    def decode(self, latents: np.ndarray) -> np.ndarray: ...


class BackendClass(Protocol):
    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]: ...

    @classmethod
    def load(cls, model: "ModelInfo", device: str, dtype: str) -> Any: ...


class OneAtATime:
    """A latent decoder's memory saving: after running out of memory it decodes one latent at a
    time (a 9 x 9 map becomes 81 small runs instead of one large one)."""

    memory_saving: tuple[str, ...] = ()  # until the retry turns it on (then a list of what)

    def use_less_memory(self) -> list[str]:
        """The runner's out-of-memory retry: what was turned on ([] when it already is)."""
        if self.memory_saving:
            return []
        self.memory_saving = ["one picture at a time"]
        return list(self.memory_saving)

    def in_batches(self, run: Callable[[np.ndarray], np.ndarray], latents: np.ndarray) -> np.ndarray:
        if not self.memory_saving or len(latents) <= 1:
            return run(latents)
        return np.concatenate([run(latents[i:i + 1]) for i in range(len(latents))])


def no_cuda() -> SpecError:
    """The error for asking for CUDA on a machine without a usable GPU, whatever the runtime."""
    return SpecError("device", "is cuda but no CUDA GPU is available; choose cpu or auto.")


def torch_device(requested: str) -> tuple[str, str]:
    """(device, dtype) for a torch backend: CUDA in half precision when asked for or available.

    SpecError (bad input, naming `device`) when cuda is asked for on a machine without a GPU."""
    import torch

    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise no_cuda()
        return "cuda", "float16"
    return "cpu", "float32"


def torch_dtype(dtype: str) -> Any:
    """The torch dtype for a dtype name ("float16", "bfloat16", "float32")."""
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


def to_uint8_image(array: np.ndarray) -> np.ndarray:
    """float image(s) in [0, 1], channels last -> uint8, contiguous."""
    return np.ascontiguousarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def check_latents(latents: np.ndarray, latent_dim: int) -> np.ndarray:
    """latents as a contiguous float32 (N, latent_dim) array, or SpecError naming `latent`."""
    array = np.ascontiguousarray(latents, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != latent_dim or array.shape[0] == 0:
        raise SpecError("latent", f"has shape {tuple(array.shape)}; this model takes (N, {latent_dim}).")
    if not np.isfinite(array).all():
        raise SpecError("latent", "must hold only finite numbers.")
    return array


def param_bytes(module: Any) -> int:
    """Memory held by a torch module's parameters and buffers, for the cache budget."""
    total = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        total += tensor.numel() * tensor.element_size()
    return total


