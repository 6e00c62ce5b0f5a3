"""The JobContext: a backend's handle on its job, through which it reports steps, previews and
tokens. Every step or token calls it, which is where cancel is checked (it raises JobCancelled),
previews are throttled and interactive requests run between a batch job's steps."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from studio.core.errors import JobCancelled
from studio.core.events import ContextUsed, Event, Preview, Progress, Token

if TYPE_CHECKING:
    import threading

    from studio.core.events import ContextResult

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
