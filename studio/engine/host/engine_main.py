"""The engine process: runs the window's jobs, so that a crash in native code (an abort in a
library, a segfault in a driver, the kernel's out-of-memory killer) ends this process and not the
window. supervisor.py starts it as `python -P -m studio.engine.host.engine_main FD`, a fresh
interpreter (never a fork: the window has threads and Qt state a forked child must not inherit),
and speaks to it over the socket FD in the messages of protocol.py.

A reader thread takes control messages while the main thread runs a job, so cancel lands
within one step; jobs themselves only ever run on the main thread."""

from __future__ import annotations

import faulthandler
import logging
import os
import pickle
import queue
import threading
from typing import Any, Callable, Optional

from studio.core.errors import ErrorKind, first_line
from studio.core.events import TERMINAL_EVENTS, Event, Failed
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
    Want,
)
from studio.engine.queue import Job

log = logging.getLogger(__name__)

ORPHAN_GRACE_S = 10.0  # the window is gone: this long to let the running job stop, then exit anyway


def harden_environment() -> None:
    """Before any ML library is imported: offline, no credentials, and torch.load can only ever
    read weights, even if the user's environment asks torch for the unsafe default."""
    from studio.models.paths import offline

    offline()
    for name in ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        os.environ.pop(name, None)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"


def main(conn: Any) -> None:
    """The engine process's entry point: take the setup, build the runner, then serve."""
    harden_environment()
    from studio.core.logs import configure_logging
    from studio.models import paths

    log_dir = paths.log_dir()
    configure_logging(log_dir, name="engine.log")
    # A native crash writes every thread's Python stack here before the process dies.
    crash_log = open(log_dir / "engine-crash.log", "a", encoding="utf-8")  # noqa: SIM115 - lives as long as we do
    faulthandler.enable(file=crash_log)
    try:
        runner = _recipe(conn).build()
    except Exception as exc:  # noqa: BLE001 - whatever it is, the window must hear one sentence
        log.exception("the engine process could not start")
        conn.send(Fatal(f"The engine could not start ({type(exc).__name__}: {first_line(exc)})."))
        return
    log.info("engine process %d ready", os.getpid())
    EngineServer(conn, runner).serve()
    log.info("engine process %d exiting", os.getpid())


def _recipe(conn: Any) -> Any:
    """The first message, a Setup, from the window over our private socketpair. The recipe is
    unpickled only once the window's import path is ours: it may name a class from any module the
    window could import."""
    import sys

    setup = conn.recv()
    if not isinstance(setup, Setup):
        raise TypeError(f"the first message was a {type(setup).__name__}, not a Setup")
    sys_path, recipe = setup.sys_path, setup.recipe
    # Only absolute entries: an empty or relative one would mean this process's working folder.
    sys.path[:] = [p for p in sys_path if p and os.path.isabs(p)] + [p for p in sys.path if p not in sys_path]
    return pickle.loads(recipe)


class EngineServer:
    """The engine process's side of the pipe: a runner, a reader thread and the cancel flags of its jobs."""

    def __init__(self, conn: Any, runner: Any):
        self.conn = conn
        self.runner = runner
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._cancels: dict[int, threading.Event] = {}
        # (job, batch) to run and Refresh, in order; None: the window is gone or said Quit.
        self._inbox: "queue.SimpleQueue[Optional[tuple[Job, bool] | Refresh]]" = queue.SimpleQueue()
        self._answers: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()  # replies to Want
        self._poked = threading.Event()
        self._poisoned = False  # a job hit a CUDA error that no later job in this process survives

    def serve(self) -> None:
        threading.Thread(target=self._read, name="engine-control", daemon=True).start()
        self.send(Ready(os.getpid()))
        while (item := self._inbox.get()) is not None:
            if isinstance(item, Refresh):
                self.runner.registry.refresh()
                continue
            job, batch = item
            self._run(job, self._run_waiting if batch else None)
            if self._poisoned:
                # A CUDA error broke the GPU context for good, or native work that cannot be
                # interrupted is still running on a thread: a new engine process takes the next job.
                log.error(
                    "the last job left this process unusable (a broken device or stuck native work); "
                    "the engine process exits"
                )
                return

    def send(self, message: FromEngine) -> None:
        with self._send_lock:
            self.conn.send(message)

    # -- the main thread --------------------------------------------------------------------------

    def _run(self, job: Job, between_steps: Optional[Callable[[], None]]) -> None:
        try:
            end = self.runner.run(job, self._emit, between_steps=between_steps)
            self._poisoned = self._poisoned or (isinstance(end, Failed) and poisons_device(end.message))
        finally:
            with self._lock:
                self._cancels.pop(job.job_id, None)

    def _run_waiting(self) -> None:
        """Between a batch job's steps: run the window's waiting interactive request, if any."""
        while self._poked.is_set():
            self._poked.clear()
            self.send(Want())
            job = self._answers.get()
            if job is None:
                return
            self._run(job, None)

    def _emit(self, event: Event) -> None:
        try:
            self.send(EventMessage(event))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            if not isinstance(event, TERMINAL_EVENTS):
                raise  # the job fails, and says why
            # A result that cannot cross the pipe must still end its job, or the window waits forever.
            log.exception("job %d: its result could not be sent", event.job_id)
            self.send(
                EventMessage(
                    Failed(
                        event.job_id,
                        ErrorKind.RUNTIME.value,
                        f"The engine could not send this job's result back ({type(exc).__name__}).",
                    )
                )
            )

    # -- the reader thread ------------------------------------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self._orphaned()
                return
            match message:
                case Run(job_id, spec, batch):
                    self._inbox.put((self._job(job_id, spec, Lane.BATCH if batch else Lane.INTERACTIVE), batch))
                case Nested(job_id, spec):
                    self._answers.put(self._job(job_id, spec, Lane.INTERACTIVE))
                case NoNested():
                    self._answers.put(None)
                case Cancel(job_id):
                    # Sent only after the job's Run or Nested: an unknown id is a job that has ended.
                    with self._lock:
                        flag = self._cancels.get(job_id)
                    if flag is not None:
                        flag.set()
                case Poke():
                    self._poked.set()
                case Refresh():
                    self._inbox.put(message)
                case Quit():
                    self._inbox.put(None)
                    return
                case _:
                    log.warning("the window sent a message this engine process does not know: %r", message)

    def _job(self, job_id: int, spec: Any, lane: Lane) -> Job:
        """A job with its cancel flag, registered before the main thread can see it."""
        flag = threading.Event()
        with self._lock:
            self._cancels[job_id] = flag
        return Job(job_id, spec, lane, flag)

    def _orphaned(self) -> None:
        """The window's end of the pipe is gone (it exited or died): stop everything and leave."""
        log.warning("the window is gone; the engine process stops")
        with self._lock:
            flags = list(self._cancels.values())
        for flag in flags:
            flag.set()
        self._answers.put(None)
        self._inbox.put(None)
        timer = threading.Timer(ORPHAN_GRACE_S, os._exit, args=(0,))  # a model load cannot be cut short
        timer.daemon = True
        timer.start()


if __name__ == "__main__":
    import sys
    from multiprocessing.connection import Connection

    main(Connection(int(sys.argv[1])))
