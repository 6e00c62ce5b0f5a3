"""Calls into native code that Python cannot interrupt (an ONNX Runtime run, a tokenizer's encode),
bounded by the job's Stop and a time limit.

While a native call holds the job's thread, nothing in that thread can react to the job's Stop or
a deadline. Two cases:
- A call the library can stop from another thread (`stop`: ONNX Runtime's RunOptions.terminate)
  runs on the job's own thread, where it costs nothing extra (a text model makes one per token);
  one watchdog thread looks at the cancel flags and deadlines of the calls running and stops
  those whose job was cancelled or whose time is up (`call_stoppable`).
- A call nothing can stop (a tokenizer's encode) runs on a worker thread while the job's thread
  waits in short slices; when the job is cancelled or its time is up the call is left behind and
  the job fails with a sentence saying so (errors.CANNOT_BE_INTERRUPTED), so the engine process
  that holds the stuck thread is replaced after it (`call_bounded`).
Ctrl-C in the `studio` command reaches both because the CLI runs the job off its main thread,
which stays in Python to take the signal (cli.run_job).

The running job's cancel flag is found through `job_scope`, which the runner opens around every
job, so the backends' own signatures need no job context."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
import time
from typing import Any, Callable, Iterator, Optional

from studio.core.errors import (
    CANNOT_BE_INTERRUPTED,
    JobCancelled,
    ModelFileError,
    StudioError,
    check_unicode,
    first_line,
    is_native_panic,
)

POLL_S = 0.05  # how often the waiting thread looks at the cancel flag and the clock
STOP_GRACE_S = 10.0  # after asking a call to stop: this long for it to end before it is left behind
# A tokenizer reads a long prompt in well under a second; one that takes this long is stuck in a
# pattern of its tokenizer.json (a regex that backtracks without end on some texts).
TOKENIZE_LIMIT_S = 30.0

_cancel: contextvars.ContextVar[Optional[threading.Event]] = contextvars.ContextVar("studio_job_cancel", default=None)


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
        self.fn: Optional[Callable[[], Any]] = fn  # None once run
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            if self.fn is None:
                raise RuntimeError("A native call runs once; start another for the same work.")
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
                    raise StudioError(
                        f"Stopped, but the model's native code {CANNOT_BE_INTERRUPTED} and is "
                        "still running, so the engine starts afresh for the next job."
                    )
                raise JobCancelled()
            if time.monotonic() > deadline:
                raise TimeLimit(limit_s, _stop(call, stop))
    except BaseException:
        if stop is not None and not call.done.is_set():
            stop()  # a second Ctrl-C (KeyboardInterrupt) must not leave the run going either
        raise
    return call.outcome()


class _Watch:
    """One stoppable call running on its job's thread: what the watchdog looks at, and why it
    stopped the call ("cancel" or "time"; None while it has not)."""

    def __init__(self, cancel: Optional[threading.Event], deadline: float, stop: Callable[[], None]):
        self.cancel, self.deadline, self.stop = cancel, deadline, stop
        self.reason: Optional[str] = None

    def look(self, now: float) -> None:
        if self.reason is None:
            if self.cancel is not None and self.cancel.is_set():
                self.reason = "cancel"
            elif now > self.deadline:
                self.reason = "time"
            else:
                return
            self.stop()


class _Watchdog:
    """The one thread that stops stoppable calls; it sleeps while none is running."""

    _watches: set[_Watch] = set()
    _changed = threading.Condition()
    _started = False

    @classmethod
    def add(cls, watch: _Watch) -> None:
        with cls._changed:
            cls._watches.add(watch)
            if not cls._started:
                threading.Thread(target=cls._serve, name="studio-native-watchdog", daemon=True).start()
                cls._started = True
            cls._changed.notify()

    @classmethod
    def remove(cls, watch: _Watch) -> None:
        with cls._changed:
            cls._watches.discard(watch)

    @classmethod
    def _serve(cls) -> None:
        while True:
            with cls._changed:
                while not cls._watches:
                    cls._changed.wait()
                watches = list(cls._watches)
            now = time.monotonic()
            for watch in watches:
                watch.look(now)  # stopping a call that has just ended is harmless (its own options)
            time.sleep(POLL_S)


def call_stoppable(fn: Callable[[], Any], limit_s: float, stop: Callable[[], None]) -> Any:
    """fn()'s result, run on this very thread; `stop` (callable from any thread) is called when the
    job's cancel flag is set or `limit_s` passes, after which this raises JobCancelled or
    TimeLimit (whatever fn then returned or raised)."""
    watch = _Watch(current_cancel(), time.monotonic() + limit_s, stop)
    _Watchdog.add(watch)
    try:
        result = fn()
    except Exception:
        if watch.reason is None:
            raise
        result = None  # the library's own "terminated" error: said below as ours
    finally:
        _Watchdog.remove(watch)
    if watch.reason == "cancel":
        raise JobCancelled()
    if watch.reason == "time":
        raise TimeLimit(limit_s, stopped=True)
    return result


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
        raise ModelFileError(
            f"The model's tokenizer failed on this prompt ({first_line(exc)}); its tokenizer.json "
            "may be damaged or use a pattern its library cannot run."
        ) from None
