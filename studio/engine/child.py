"""The engine process: runs the window's jobs, so that a crash in native code (an abort in a
library, a segfault in a driver, the kernel's out-of-memory killer) ends this process and not the
window. engine/process.py starts it as `python -m studio.engine.child FD`, a fresh interpreter
(never a fork: the window has threads and Qt state a forked child must not inherit).

It speaks plain tuples over the socket FD (DESIGN §2: specs and events are picklable data).
  in:  ("setup", sys_path, recipe)     first: the window's import path, and how to build the runner
       ("run", job_id, spec, batch)   run a job; a batch job asks for interactive ones between steps
       ("nested", job_id, spec)        the answer to "want": an interactive job to run now
       ("nested", None)                ... or nothing is waiting any more
       ("cancel", job_id)              set that job's cancel flag (it stops at its next step)
       ("poke",)                       an interactive request is waiting in the window
       ("refresh",)                    the window looked for models again; so do we, between jobs
       ("quit",)                       finish up and exit
  out: ("ready", pid) | ("fatal", sentence) | ("event", core.events.Event) | ("want",)

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
from studio.engine.queue import Job
from studio.engine.runner import poisons_device

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
        conn.send(("fatal", f"The engine could not start ({type(exc).__name__}: {first_line(exc)})."))
        return
    log.info("engine process %d ready", os.getpid())
    ChildEngine(conn, runner).serve()
    log.info("engine process %d exiting", os.getpid())


def _recipe(conn: Any) -> Any:
    """The first message, ("setup", sys_path, recipe bytes), from the window over our private
    socketpair. The recipe is unpickled only once the window's import path is ours: it may name
    a class from any module the window could import."""
    import sys

    _, sys_path, recipe = conn.recv()
    # Only absolute entries: an empty or relative one would mean this process's working folder.
    sys.path[:] = [p for p in sys_path if p and os.path.isabs(p)] + [p for p in sys.path if p not in sys_path]
    return pickle.loads(recipe)


class ChildEngine:
    """The child's side of the pipe: a runner, a reader thread and the cancel flags of its jobs."""

    def __init__(self, conn: Any, runner: Any):
        self.conn = conn
        self.runner = runner
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._cancels: dict[int, threading.Event] = {}
        self._inbox: "queue.SimpleQueue[Any]" = queue.SimpleQueue()  # jobs and refreshes, in order
        self._answers: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()  # replies to "want"
        self._poked = threading.Event()
        self._poisoned = False  # a job hit a CUDA error that no later job in this process survives

    def serve(self) -> None:
        threading.Thread(target=self._read, name="engine-control", daemon=True).start()
        self.send(("ready", os.getpid()))
        while (item := self._inbox.get()) is not None:
            if item == "refresh":
                self.runner.registry.refresh()
                continue
            job, batch = item
            self._run(job, self._run_waiting if batch else None)
            if self._poisoned:
                # A CUDA error broke the GPU context for good, or native work that cannot be
                # interrupted is still running on a thread: a new engine process takes the next job.
                log.error("the last job left this process unusable (a broken device or stuck native work); "
                          "the engine process exits")
                return

    def send(self, message: tuple) -> None:
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
            self.send(("want",))
            job = self._answers.get()
            if job is None:
                return
            self._run(job, None)

    def _emit(self, event: Event) -> None:
        try:
            self.send(("event", event))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            if not isinstance(event, TERMINAL_EVENTS):
                raise  # the job fails, and says why
            # A result that cannot cross the pipe must still end its job, or the window waits forever.
            log.exception("job %d: its result could not be sent", event.job_id)
            self.send(("event", Failed(event.job_id, ErrorKind.RUNTIME.value,
                                       f"The engine could not send this job's result back ({type(exc).__name__}).")))

    # -- the reader thread ------------------------------------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self._orphaned()
                return
            tag = message[0]
            if tag == "run":
                _, job_id, spec, batch = message
                self._inbox.put((self._job(job_id, spec, Lane.BATCH if batch else Lane.INTERACTIVE), batch))
            elif tag == "nested":
                self._answers.put(None if message[1] is None else self._job(message[1], message[2], Lane.INTERACTIVE))
            elif tag == "cancel":
                # The window sends a cancel only after the job's "run" or "nested", so an unknown
                # id is a job that has already ended.
                with self._lock:
                    flag = self._cancels.get(message[1])
                if flag is not None:
                    flag.set()
            elif tag == "poke":
                self._poked.set()
            elif tag == "refresh":
                self._inbox.put("refresh")
            elif tag == "quit":
                self._inbox.put(None)
                return

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
