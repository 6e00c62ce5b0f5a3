"""The window's side of the engine process: the engine thread's host when jobs run isolated.

`EngineProcess.serve(queue, emit)` has the same contract as `Runner.serve`: it takes jobs from the
queue until the queue closes and reports each through `emit`, ending every job in exactly one
terminal event. The jobs run in a child process (engine/child.py), so when native code crashes
there, the jobs it held fail with one sentence, a fresh engine process takes the next job, and
the window with its canvas and documents carries on untouched (DESIGN §2)."""

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
from pathlib import Path
from typing import Any, Callable, Optional

from studio.core.errors import ErrorKind, StudioError, first_line
from studio.core.events import TERMINAL_EVENTS, Cancelled, Event, Failed
from studio.core.jobs import Lane
from studio.engine.queue import Job, JobQueue

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]

POLL_S = 0.01  # how often, while a job runs, the window's cancels and slider requests are passed on
START_TIMEOUT_S = 120.0  # a cold start imports numpy and the studio; torch comes later, per model
SHUTDOWN_GRACE_S = 10.0  # closing: this long for the running job to reach a step, then it is killed
QUIT_TIMEOUT_S = 5.0


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
    """The engine process ended under a job; carries the sentence the jobs fail with."""


def describe_exit(code: Optional[int]) -> str:
    """What an exit code says about how a process ended, in words."""
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = {"SIGSEGV": "a crash in native code", "SIGABRT": "an abort in native code",
                "SIGKILL": "it was killed, perhaps by the system for lack of memory",
                "SIGBUS": "a crash in native code", "SIGFPE": "a crash in native code"}.get(name, "a signal")
        return f"{name}: {what}"
    return f"exit code {code}"


class EngineProcess:
    """Supervises one engine process: starts it, passes jobs in and events out, restarts it."""

    def __init__(self, recipe: RunnerRecipe, *, poll_s: float = POLL_S, start_timeout_s: float = START_TIMEOUT_S,
                 shutdown_grace_s: float = SHUTDOWN_GRACE_S):
        self.recipe = recipe
        self.poll_s = poll_s
        self.start_timeout_s = start_timeout_s
        self.shutdown_grace_s = shutdown_grace_s
        self.starts = 0  # engine processes started so far (restarts = starts - 1)
        self._process: Optional[Child] = None
        self._conn: Any = None
        self._ready = False
        self._send_lock = threading.Lock()
        self._in_flight: dict[int, Job] = {}  # jobs the engine process holds: the one sent, and nested ones

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

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
        """The window looked for models again: the engine process does too, before its next job."""
        if self.alive():
            self._try_send(("refresh",))

    def stop(self) -> None:
        """Ask the engine process to exit; kill it if it does not. No child is left behind."""
        process, self._process = self._process, None
        if process is None:
            return
        self._try_send(("quit",))
        process.join(QUIT_TIMEOUT_S)
        if process.is_alive():
            log.warning("engine process %s did not exit; killing it", process.pid)
            process.kill()
            process.join()
        self._close_pipe()

    # -- one job ----------------------------------------------------------------------------------

    def _run(self, job: Job, queue: JobQueue, emit: Emit) -> None:
        if job.cancel.is_set():
            _report(emit, Cancelled(job.job_id))
            return
        message = ("run", job.job_id, job.spec, job.lane is Lane.BATCH)
        self._in_flight = {job.job_id: job}
        try:
            self._ensure_ready()
            try:
                self._send(message)
            except EngineCrashed:  # it died while idle, before this job reached it: a new one takes it
                self._ensure_ready()
                self._send(message)
            self._follow(job, queue, emit)
        except EngineCrashed as crash:
            self._report_crash(str(crash), emit)
        except StudioError as exc:  # the engine process could not start
            self._in_flight = {}
            _report(emit, Failed(job.job_id, exc.kind.value, exc.message))

    def _follow(self, job: Job, queue: JobQueue, emit: Emit) -> None:
        """Relay events until every job this one brought along (interactive requests run between
        its steps) has ended."""
        told_cancel: set[int] = set()
        poked = False
        deadline: Optional[float] = None
        while self._in_flight:
            for other in list(self._in_flight.values()):
                if other.cancel.is_set() and other.job_id not in told_cancel:
                    self._send(("cancel", other.job_id))
                    told_cancel.add(other.job_id)
            if job.lane is Lane.BATCH and not poked and queue.has_interactive():
                self._send(("poke",))
                poked = True
            if queue.closed:
                deadline = deadline or time.monotonic() + self.shutdown_grace_s
                if time.monotonic() > deadline:  # closing, and the job will not stop: it goes with the process
                    log.warning("engine process busy past the closing grace; killing it")
                    self._kill()
                    for stuck in self._in_flight.values():
                        _report(emit, Cancelled(stuck.job_id))
                    self._in_flight = {}
                    return
            message = self._receive()
            if message is None:
                continue
            if message[0] == "event":
                event = message[1]
                if isinstance(event, TERMINAL_EVENTS):
                    self._in_flight.pop(event.job_id, None)
                _report(emit, event)
            elif message[0] == "want":
                poked = False
                waiting = queue.take_interactive()
                if waiting is None:
                    self._send(("nested", None))
                else:
                    self._in_flight[waiting.job_id] = waiting
                    self._send(("nested", waiting.job_id, waiting.spec))

    def _report_crash(self, why: str, emit: Emit) -> None:
        """Every job the dead process held fails with the same sentence; the next job restarts it."""
        jobs, self._in_flight = self._in_flight, {}
        message = (f"The engine process stopped while running this job ({why}); a new one takes the next "
                   "job, and everything in the window is kept.")
        log.error("engine process crashed (%s); %d job(s) failed", why, len(jobs))
        for crashed in jobs.values():
            _report(emit, Failed(crashed.job_id, ErrorKind.ENGINE_CRASH.value, message))

    # -- the process and its pipe -----------------------------------------------------------------

    def _spawn(self) -> None:
        parent_end, child_fd = _socket_pair()
        try:
            process = Child(child_fd)
        finally:
            os.close(child_fd)  # the child has its own copy; ours closed, its death reads as EOF here
        self._process, self._conn, self._ready = process, parent_end, False
        self.starts += 1
        log.info("engine process %d started", process.pid)
        self._send(("setup", list(sys.path), pickle.dumps(self.recipe)))

    def _ensure_ready(self) -> None:
        """A running engine process that has said "ready"; started (again) if there is none."""
        if self._process is None or not self._process.is_alive():
            if self._process is not None:
                log.warning("engine process %s had ended (%s); starting a new one", self._process.pid,
                            describe_exit(self._process.exitcode))
                self._discard()
            try:
                self._spawn()
            except Exception as exc:  # noqa: BLE001 - e.g. out of processes or memory: one sentence
                log.exception("could not start the engine process")
                raise StudioError(f"The engine could not start ({type(exc).__name__}: {first_line(exc)}).") from None
        if self._ready:
            return
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                message = self._receive()
            except EngineCrashed as crash:
                self._discard()
                raise StudioError(f"The engine could not start ({crash}).") from None
            if message is None:
                continue
            if message[0] == "ready":
                self._ready = True
                return
            if message[0] == "fatal":
                self._discard()
                raise StudioError(message[1])
        self._kill()
        raise StudioError(f"The engine did not start within {self.start_timeout_s:.0f} s.")

    def _receive(self) -> Optional[tuple]:
        """The next message, None if none came within the poll interval; EngineCrashed if the
        process is gone."""
        try:
            if self._conn.poll(self.poll_s):
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        else:
            if self._process is not None and self._process.is_alive():
                return None
        why = self._exit_reason()
        self._discard()
        raise EngineCrashed(why)

    def _send(self, message: tuple) -> None:
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, ValueError):  # a broken pipe: the process died since we last heard it
            why = self._exit_reason()
            self._discard()
            raise EngineCrashed(why) from None

    def _try_send(self, message: tuple) -> None:
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
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._discard()

    def _discard(self) -> None:
        """Forget the current process, reaped: one that said "fatal" or crashed is exiting anyway."""
        process, self._process = self._process, None
        if process is not None:
            process.join(QUIT_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
        self._close_pipe()

    def _close_pipe(self) -> None:
        with self._send_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._ready = False


class Child:
    """The engine process: `python -m studio.engine.child FD`, talking over the socket FD.

    Started as a fresh interpreter rather than with multiprocessing's spawn, which would import the
    parent's __main__ script again in the child (a script without a main guard would open a second
    window there). Offers the few Process methods the supervisor uses."""

    def __init__(self, fd: int):
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self._popen = subprocess.Popen([sys.executable, "-m", "studio.engine.child", str(fd)], pass_fds=(fd,),
                                       stdin=subprocess.DEVNULL, env=env)
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
