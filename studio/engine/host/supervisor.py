"""The window's side of the engine process: the engine thread's host when jobs run isolated.

`EngineProcess.serve(queue, emit)` has the same contract as `Runner.serve`: it takes jobs from the
queue until the queue closes and reports each through `emit`, ending every job in exactly one
terminal event. The jobs run in a child process (engine_main.py), so when native code crashes
there, the jobs it held fail with one sentence, a fresh engine process takes the next job, and
the window with its canvas and documents carries on untouched (docs/DESIGN.md §2)."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from studio.core.child_python import PACKAGE_ROOT, child_env, python_command, shareable_path
from studio.core.errors import ErrorKind, StudioError, first_line
from studio.core.events import TERMINAL_EVENTS, Cancelled, Event, Failed
from studio.core.jobs import Lane
from studio.engine.errors import poisons_device
from studio.engine.host.protocol import (
    Cancel,
    EventMessage,
    Fatal,
    FromEngine,
    Nested,
    NoNested,
    Poke,
    Quit,
    Ready,
    Refresh,
    Run,
    Setup,
    ToEngine,
    Want,
)
from studio.engine.queue import Job, JobQueue

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]

POLL_S = 0.01  # how often, while a job runs, the window's cancels and slider requests are passed on
START_TIMEOUT_S = 120.0  # a cold start imports numpy and the studio; torch comes later, per model
SHUTDOWN_GRACE_S = 10.0  # closing: this long for the running job to reach a step, then it is killed
QUIT_TIMEOUT_S = 5.0
CANCEL_GRACE_S = 20.0  # a cancelled job that has not stopped after this long is ended with its process
ENGINE_MAIN = "studio.engine.host.engine_main"  # the engine process's module, run with `python -m`


@dataclass(frozen=True)
class RunnerRecipe:
    """How the engine process builds its runner: picklable, so it crosses to the child."""

    registry: Any  # a ModelRegistry: the child gets a copy of the window's, scan included
    cache_bytes: int
    previews: bool = True

    def build(self):
        from studio.engine.cache import ModelCache
        from studio.engine.runner import Runner

        return Runner(self.registry, ModelCache(self.cache_bytes), previews=self.previews)


class EngineCrashed(Exception):
    """The engine process ended under a job; says how, in words."""


class StartAbandoned(Exception):
    """The job was cancelled, or the window began closing, while the engine process started."""


def describe_exit(code: Optional[int]) -> str:
    """What an exit code says about how a process ended, in words."""
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = {
            "SIGSEGV": "a crash in native code",
            "SIGABRT": "an abort in native code",
            "SIGKILL": "it was killed, perhaps by the system for lack of memory",
            "SIGBUS": "a crash in native code",
            "SIGFPE": "a crash in native code",
        }.get(name, "a signal")
        return f"{name}: {what}"
    return f"exit code {code}"


class EngineProcess:
    """Supervises one engine process: starts it, passes jobs in and events out, restarts it."""

    def __init__(
        self,
        recipe: RunnerRecipe,
        *,
        poll_s: float = POLL_S,
        start_timeout_s: float = START_TIMEOUT_S,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
        cancel_grace_s: float = CANCEL_GRACE_S,
    ):
        self.recipe = recipe
        self.cancel_grace_s = cancel_grace_s
        self.poll_s = poll_s
        self.start_timeout_s = start_timeout_s
        self.shutdown_grace_s = shutdown_grace_s
        self.starts = 0  # engine processes started so far (restarts = starts - 1)
        self._process: Optional[EngineChildProcess] = None
        self._conn: Any = None
        self._ready = False
        self._send_lock = threading.Lock()
        self._refreshes = 0  # refreshes asked for so far (under _send_lock): one asked during a start is not lost
        self._in_flight: dict[int, Job] = {}  # jobs the engine process holds: the one sent, and nested ones
        self._retiring = False  # its device broke or native work is stuck: it exits after the current job

    # Both may be asked from the GUI thread while the engine thread replaces the process: one read.
    @property
    def pid(self) -> Optional[int]:
        process = self._process
        return process.pid if process is not None else None

    def alive(self) -> bool:
        process = self._process
        return process is not None and process.is_alive()

    # -- the engine thread ------------------------------------------------------------------------

    def serve(self, queue: JobQueue, emit: Emit) -> None:
        """Run jobs from `queue` in the engine process until the queue is closed."""
        try:
            self._spawn()  # now, so the child's imports overlap the window's start
        except Exception:  # noqa: BLE001 - the first job will try again and say why
            log.exception("could not start the engine process")
        try:
            while (job := queue.take()) is not None:
                self._run(job, queue, emit)
        finally:
            self.stop()

    def refresh_models(self) -> None:
        """The window looked for models again: the engine process does too, before its next job.
        One asked while a process is being started reaches it right after its setup (_spawn)."""
        with self._send_lock:
            self._refreshes += 1
            if self._conn is not None and self.alive():
                try:
                    self._conn.send(Refresh())
                except (OSError, ValueError):
                    pass  # it is gone already; the next job finds out and starts a new one

    def stop(self) -> None:
        """Ask the engine process to exit; kill it if it does not. No child is left behind."""
        if self._process is not None:
            self._try_send(Quit())
            self._discard()

    # -- one job ----------------------------------------------------------------------------------

    def _run(self, job: Job, queue: JobQueue, emit: Emit) -> None:
        if job.cancel.is_set():
            _report(emit, Cancelled(job.job_id))
            return
        message = Run(job.job_id, job.spec, job.lane is Lane.BATCH)
        self._in_flight = {job.job_id: job}
        try:
            self._ensure_ready(job, queue)
            try:
                self._send(message)
            except EngineCrashed:  # it died while idle, before this job reached it: a new one takes it
                self._discard()
                self._ensure_ready(job, queue)
                self._send(message)
            self._follow(job, queue, emit)
            if self._retiring:  # wait for it to go, so the next job does not meet it on its way out
                self._retiring = False
                self._discard()
        except EngineCrashed as crash:
            self._drain(emit)  # what it managed to send before it died still counts
            self._end_in_flight(
                emit,
                f"The engine process stopped while running this job ({crash}); a new one "
                "takes the next job, and everything in the window is kept.",
            )
            self._discard()
        except StartAbandoned:  # cancelled, or the window is closing, while the engine process started
            self._in_flight = {}
            _report(emit, Cancelled(job.job_id))
        except StudioError as exc:  # the engine process could not start
            self._in_flight = {}
            _report(emit, Failed(job.job_id, exc.kind.value, exc.message))
        except Exception as exc:  # noqa: BLE001 - e.g. a spec or an event that will not cross the pipe
            log.exception("relaying job %d failed", job.job_id)
            self._kill()  # its state is unknown now; the next job gets a fresh one
            self._end_in_flight(
                emit,
                f"The engine could not run this job ({type(exc).__name__}: "
                f"{first_line(exc)}); the next job starts a new engine process.",
                kind=ErrorKind.RUNTIME,
            )

    def _follow(self, job: Job, queue: JobQueue, emit: Emit) -> None:
        """Relay events until every job this one brought along (interactive requests run between
        its steps) has ended."""
        told_cancel: dict[int, float] = {}  # job id -> when the engine process was told
        poked = False
        deadline: Optional[float] = None
        while self._in_flight:
            now = time.monotonic()
            for other in list(self._in_flight.values()):
                if other.cancel.is_set() and other.job_id not in told_cancel:
                    self._send(Cancel(other.job_id))
                    told_cancel[other.job_id] = now
            if job.lane is Lane.BATCH and not poked and queue.has_interactive():
                self._send(Poke())
                poked = True
            if queue.closed:
                deadline = deadline or now + self.shutdown_grace_s
            stuck = any(now - told > self.cancel_grace_s for told in told_cancel.values())
            if (deadline is not None and now > deadline) or stuck:
                # Native code that never reaches a step boundary (a hung driver, a long load): the
                # process goes, and the jobs with it, so the queue moves on.
                log.warning("engine process did not stop its job; killing it")
                self._kill()
                self._end_in_flight(
                    emit,
                    "The engine process did not stop this job, so it was ended; a new one takes the next job.",
                    cancelled=True,
                )
                return
            match self._receive():
                case EventMessage(event):
                    self._relay(event, emit)
                case Want():
                    poked = False
                    waiting = queue.take_interactive()
                    if waiting is None:
                        self._send(NoNested())
                    else:
                        self._in_flight[waiting.job_id] = waiting
                        self._send(Nested(waiting.job_id, waiting.spec))
                case None:
                    pass  # nothing within the poll interval
                case other:
                    log.warning("the engine process sent %r while running a job; ignored", other)

    def _relay(self, event: Event, emit: Emit) -> None:
        if isinstance(event, TERMINAL_EVENTS):
            self._in_flight.pop(event.job_id, None)
            if isinstance(event, Failed) and poisons_device(event.message):
                self._retiring = True  # the engine process exits after this job, as it knows too
        _report(emit, event)

    def _drain(self, emit: Emit) -> None:
        """Pass on the events a dead engine process left in the pipe."""
        try:
            while self._conn is not None and self._conn.poll(0):
                message = self._conn.recv()
                if isinstance(message, EventMessage):
                    self._relay(message.event, emit)
        except (EOFError, OSError):
            pass

    def _end_in_flight(
        self, emit: Emit, message: str, kind: ErrorKind = ErrorKind.ENGINE_CRASH, cancelled: bool = False
    ) -> None:
        """Every job the engine process held ends: Cancelled if the person had asked for that (or
        `cancelled`), else Failed with `message`. The next job starts a new engine process."""
        jobs, self._in_flight = self._in_flight, {}
        log.error("engine process: %d job(s) ended: %s", len(jobs), message)
        for held in jobs.values():
            if cancelled or held.cancel.is_set():
                _report(emit, Cancelled(held.job_id))
            else:
                _report(emit, Failed(held.job_id, kind.value, message))

    # -- the process and its pipe -----------------------------------------------------------------

    def _spawn(self) -> None:
        with self._send_lock:
            refreshes = self._refreshes
        setup = Setup(tuple(shareable_path(sys.path)), pickle.dumps(self.recipe))  # before a process exists
        parent_end, child_fd = _socket_pair()
        try:
            process = EngineChildProcess(child_fd)
        finally:
            os.close(child_fd)  # the child has its own copy; ours closed, its death reads as EOF here
        # Published and sent under the send lock: another thread's message (a refresh from the
        # window) must never reach the new process before its setup.
        with self._send_lock:
            self._process, self._conn, self._ready = process, parent_end, False
            try:
                parent_end.send(setup)
                if self._refreshes != refreshes:  # asked for after the recipe was pickled
                    parent_end.send(Refresh())
            except OSError:  # it died at once; the caller hears it when it next reads the pipe
                log.warning("engine process %d closed its pipe before its setup", process.pid)
        self.starts += 1
        log.info("engine process %d started", process.pid)

    def _ensure_ready(self, job: Optional[Job] = None, queue: Optional[JobQueue] = None) -> None:
        """A running engine process that has said Ready; started (again) if there is none.
        StartAbandoned if `job` is cancelled or `queue` closes meanwhile (the start goes on)."""
        process = self._process
        if process is None or not process.is_alive():
            if process is not None:
                log.warning(
                    "engine process %s had ended (%s); starting a new one", process.pid, describe_exit(process.exitcode)
                )
                self._discard()
            try:
                self._spawn()
            except Exception as exc:  # noqa: BLE001 - e.g. out of processes or memory: one sentence
                log.exception("could not start the engine process")
                self._discard()
                raise StudioError(f"The engine could not start ({type(exc).__name__}: {first_line(exc)}).") from None
        deadline = time.monotonic() + self.start_timeout_s
        while not self._ready:
            if (job is not None and job.cancel.is_set()) or (queue is not None and queue.closed):
                raise StartAbandoned()
            if time.monotonic() > deadline:
                self._kill()
                raise StudioError(f"The engine did not start within {self.start_timeout_s:.0f} s.")
            try:
                message = self._receive()
            except EngineCrashed as crash:
                self._discard()
                raise StudioError(f"The engine could not start ({crash}).") from None
            match message:
                case Ready():
                    self._ready = True
                case Fatal(sentence):
                    self._discard()
                    raise StudioError(sentence)

    def _receive(self) -> Optional[FromEngine]:
        """The next message, None if none came within the poll interval; EngineCrashed if the
        process is gone (the caller discards it, after reading what it left in the pipe)."""
        try:
            if self._conn.poll(self.poll_s):
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        else:
            if self.alive():
                return None
        raise EngineCrashed(self._exit_reason())

    def _send(self, message: ToEngine) -> None:
        """Send, or EngineCrashed if the pipe is broken. A message that cannot be pickled raises
        as it is: nothing was written, and only that job fails."""
        try:
            with self._send_lock:
                self._conn.send(message)
        except OSError:  # a broken pipe: the process died since we last heard from it
            raise EngineCrashed(self._exit_reason()) from None

    def _try_send(self, message: ToEngine) -> None:
        try:
            with self._send_lock:
                if self._conn is not None:
                    self._conn.send(message)
        except (OSError, ValueError):
            pass  # it is gone already; the next job finds out and starts a new one

    def _exit_reason(self) -> str:
        process = self._process
        if process is None:
            return "it was not running"
        process.join(2.0)  # it has closed its pipe; give it a moment to be reaped
        return describe_exit(process.exitcode)

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
        self._discard()

    def _discard(self) -> None:
        """Forget the current process, reaped: it was told to Quit, said Fatal, crashed or was
        killed, so it is exiting anyway; one that does not within QUIT_TIMEOUT_S is killed."""
        process, self._process = self._process, None
        if process is not None:
            process.join(QUIT_TIMEOUT_S)
            if process.is_alive():
                log.warning("engine process %s did not exit; killing it", process.pid)
                process.kill()
                process.join()
        self._close_pipe()

    def _close_pipe(self) -> None:
        with self._send_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._ready = False


class EngineChildProcess:
    """The Popen of one engine process, `python -P -m studio.engine.host.engine_main FD`, with the
    few methods of multiprocessing.Process the supervisor uses (pid, exitcode, is_alive, join, kill).

    Started as a fresh interpreter rather than with multiprocessing's spawn, which would import the
    parent's __main__ script again in the child (a script without a main guard would open a second
    window there)."""

    def __init__(self, fd: int):
        # -P, a PYTHONPATH of absolute entries and the package's own folder as the working folder:
        # nothing in the folder the window was started from is imported here (child_python).
        self._popen = subprocess.Popen(
            python_command(ENGINE_MAIN, str(fd)),
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            env=child_env(),
            cwd=PACKAGE_ROOT,
        )
        self.pid = self._popen.pid

    @property
    def exitcode(self) -> Optional[int]:
        """None while it runs; -N when signal N ended it."""
        return self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def join(self, timeout: Optional[float] = None) -> None:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        if self.is_alive():
            self._popen.kill()


def _socket_pair() -> tuple[Any, int]:
    """A duplex pipe: our end as a multiprocessing Connection, the child's as a bare descriptor.
    (A socketpair, not a connected socket: nothing here goes near the network.)"""
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    return Connection(ours.detach()), theirs.detach()


def _report(emit: Emit, event: Event) -> None:
    try:
        emit(event)
    except Exception:  # noqa: BLE001 - the host failed to take the news; the engine carries on
        log.exception("reporting %s for job %d failed", type(event).__name__, event.job_id)
