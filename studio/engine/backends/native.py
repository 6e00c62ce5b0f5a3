"""Calls into native code that Python cannot interrupt (an ONNX Runtime run, a tokenizer's encode),
made on a worker thread so the job's own thread stays in Python while they run.

While a native call holds the job's thread, nothing reaches it: not the job's Stop, not Ctrl-C
(Python runs signal handlers between bytecodes, on the main thread only) and not a time limit. So
the call runs on a worker thread (idle ones are reused: a text model makes one run per token), and
the job's thread waits for it in short slices,
checking the job's cancel flag and the deadline between them. Then the call is stopped where the
library allows it (`stop`: ONNX Runtime's RunOptions.terminate) or, where it does not, left
behind: the caller fails the job with a sentence saying so (errors.CANNOT_BE_INTERRUPTED), and
the engine process that holds the stuck thread is replaced after it.

The running job's cancel flag is found through `job_scope`, which the runner opens around every
job, so the backends' own signatures need no job context."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
import time
from typing import Any, Callable, Iterator, Optional

from studio.core.errors import (CANNOT_BE_INTERRUPTED, JobCancelled, ModelFileError, StudioError, check_unicode,
                                 first_line, is_native_panic)

POLL_S = 0.05  # how often the waiting thread looks at the cancel flag and the clock
STOP_GRACE_S = 10.0  # after asking a call to stop: this long for it to end before it is left behind
# A tokenizer reads a long prompt in well under a second; one that takes this long is stuck in a
# pattern of its tokenizer.json (a regex that backtracks without end on some texts).
TOKENIZE_LIMIT_S = 30.0

_cancel: contextvars.ContextVar[Optional[threading.Event]] = contextvars.ContextVar("studio_job_cancel",
                                                                                    default=None)


class TimeLimit(Exception):
    """A native call ran past its time limit. `stopped`: it ended when asked; False: it still runs
    on its thread, which nothing can stop."""

    def __init__(self, limit_s: float, stopped: bool):
        super().__init__(f"ran longer than {limit_s:g} s")
        self.limit_s = limit_s
        self.stopped = stopped


@contextlib.contextmanager
def job_scope(cancel: threading.Event) -> Iterator[None]:
    """Native calls made inside this block stop when `cancel` is set. Scopes nest: an interactive
    job run between a batch job's steps has its own flag while it runs."""
    token = _cancel.set(cancel)
    try:
        yield
    finally:
        _cancel.reset(token)


def current_cancel() -> Optional[threading.Event]:
    return _cancel.get()


class _Call:
    """One call: its result or exception, and whether it has ended."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread (a Rust panic included)
            self.error = exc
        finally:
            self.fn = None  # what it captured (a session, its inputs) must not outlive the call

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class _Worker:
    """A daemon thread that makes calls one after another. It is idle again before its caller
    hears that the call ended, so the next call finds it; one stuck in a call left behind is
    never handed another."""

    _idle: list["_Worker"] = []
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.calls: "queue.SimpleQueue[_Call]" = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="studio-native-call", daemon=True).start()

    @classmethod
    def start(cls, fn: Callable[[], Any]) -> _Call:
        call = _Call(fn)
        with cls._lock:
            worker = cls._idle.pop() if cls._idle else None
        (worker or cls()).calls.put(call)
        return call

    def _serve(self) -> None:
        while True:
            call = self.calls.get()
            call.run()
            with self._lock:
                self._idle.append(self)
            call.done.set()
            del call  # an idle worker holds no result: an evicted model's arrays are freed with it


def call_bounded(fn: Callable[[], Any], limit_s: float, stop: Optional[Callable[[], None]] = None) -> Any:
    """fn()'s result, from a worker thread. Raises JobCancelled when the job's cancel flag is set
    and TimeLimit after `limit_s` seconds; either way `stop` (when given) is called first and the
    call is given STOP_GRACE_S to end. Without `stop` the call is left running at once."""
    call, cancel = _Worker.start(fn), current_cancel()
    deadline = time.monotonic() + limit_s
    try:
        while not call.done.wait(POLL_S):
            if cancel is not None and cancel.is_set():
                if not _stop(call, stop):
                    # Stopped, but the call runs on: the process holding it must be replaced, which
                    # a plain cancellation would not do (errors.CANNOT_BE_INTERRUPTED).
                    raise StudioError(f"Stopped, but the model's native code {CANNOT_BE_INTERRUPTED} and is "
                                      "still running, so the engine starts afresh for the next job.")
                raise JobCancelled()
            if time.monotonic() > deadline:
                raise TimeLimit(limit_s, _stop(call, stop))
    except BaseException:
        if stop is not None and not call.done.is_set():
            stop()  # a second Ctrl-C (KeyboardInterrupt) must not leave the run going either
        raise
    return call.outcome()


def _stop(call: _Call, stop: Optional[Callable[[], None]]) -> bool:
    """Ask the call to stop and wait for it a little; whether it ended."""
    if stop is None:
        return False
    stop()
    return call.done.wait(STOP_GRACE_S)


# ---------------------------------------------------------------------------------------------
# Tokenizers: their Rust code cannot be interrupted, so a stuck encode is left behind.


def tokenize(tokenizer: Any, text: str, special: bool) -> list[int]:
    """The token ids of `text` (with the tokenizer's special tokens when `special`), within
    TOKENIZE_LIMIT_S and the job's Stop. Every failure is one sentence: a lone surrogate names the
    prompt; a tokenizer that panics or runs past the limit is a ModelFileError."""
    check_unicode("prompt", text)
    try:
        return call_bounded(lambda: tokenizer(text, add_special_tokens=special)["input_ids"], TOKENIZE_LIMIT_S)
    except TimeLimit:
        raise ModelFileError(
            f"The model's tokenizer took longer than {TOKENIZE_LIMIT_S:g} s on a {len(text):,}-character prompt "
            f"(a pattern in its tokenizer.json is too slow for this text) and {CANNOT_BE_INTERRUPTED}, so the job "
            "was stopped; shorten the prompt or fix the tokenizer."
        ) from None
    except BaseException as exc:
        if not is_native_panic(exc):
            raise
        raise ModelFileError(f"The model's tokenizer failed on this prompt ({first_line(exc)}); its tokenizer.json "
                             "may be damaged or use a pattern its library cannot run.") from None
