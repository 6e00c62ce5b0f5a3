"""The one long-lived QThread that hosts the engine and turns its events into Qt signals.

The host is either a Runner, running jobs on this thread (tests, benchmarks of the bare engine),
or an EngineProcess, relaying them to a supervised child process (the window: a crash in native
code there cannot take the window down). Both serve the same queue with the same events.

Control goes GUI -> engine through thread-safe Python objects (the JobQueue and each job's cancel
Event), never through queued slot calls: while a job runs, this thread's event loop is busy, so such
calls could not be delivered anyway. Data goes engine -> GUI through signals, which Qt queues onto
the receiver's (GUI) thread. Only QtCore is imported here (a contract enforces it): previews travel
as numpy arrays, and the widgets that paint them make QImages (studio/ui/images.py)."""

from __future__ import annotations

import logging
import threading
from typing import Optional, Union

from PySide6.QtCore import QThread, Signal

from studio.core.errors import StudioError
from studio.core.events import Cancelled, ContextUsed, Event, Failed, Finished, Preview, Progress, Started, Token
from studio.core.jobs import JobSpec, Lane
from studio.engine.host.supervisor import EngineProcess
from studio.engine.queue import Job, JobQueue
from studio.engine.runner import Runner

log = logging.getLogger(__name__)

WAIT_LOG_MS = 5_000  # while stopping, say in the log this often that the engine is still busy


class EngineThread(QThread):
    """Runs jobs one at a time on its own thread; survives any job's failure."""

    job_queued = Signal(int, object)  # job id, JobSpec
    job_started = Signal(int)
    job_progress = Signal(int, int, int)  # job id, step, total
    job_preview = Signal(int, object)  # job id, H x W x 3 uint8 array
    job_token = Signal(int, object)  # job id, core.events.Token
    job_context = Signal(int, object)  # job id, core.events.ContextResult (a text job's prompt)
    job_finished = Signal(int, object)  # job id, core.events.ImageResult | TextResult
    job_failed = Signal(int, str, str)  # job id, kind, message
    job_cancelled = Signal(int, str)  # job id, reason ("cancelled" | "superseded")

    def __init__(self, host: Union[Runner, EngineProcess], parent=None):
        super().__init__(parent)
        self.setObjectName("studio-engine")
        self.host = host
        self._queue = JobQueue()
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}  # jobs queued or running

    # -- called from the GUI thread -------------------------------------------------------------

    def submit(self, spec: JobSpec, lane: Optional[Lane] = None) -> int:
        """Validate and queue a job; raises SpecError (naming the field) and queues nothing if bad."""
        job = self._queue.make_job(spec, lane)
        with self._lock:
            # Recorded before it is queued: the engine may take and finish it at once.
            self._jobs[job.job_id] = job
        try:
            dropped = self._queue.put(job)
        except RuntimeError:
            with self._lock:
                del self._jobs[job.job_id]
            raise StudioError("The engine has shut down; restart the studio to run more jobs.") from None
        self.job_queued.emit(job.job_id, spec)
        for old in dropped:
            self._emit(Cancelled(old.job_id, "superseded"))
        return job.job_id

    def cancel(self, job_id: int) -> None:
        """A queued job leaves without running; a running one stops at its next step or token."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return
        job.cancel.set()
        if self._queue.remove(job_id) is not None:
            self._emit(Cancelled(job_id))

    def cancel_all(self) -> None:
        with self._lock:
            ids = list(self._jobs)
        for job_id in ids:
            self.cancel(job_id)

    @property
    def runner(self) -> Optional[Runner]:
        """The runner, when jobs run on this thread; None when they run in the engine process."""
        return self.host if isinstance(self.host, Runner) else None

    def refresh_models(self) -> None:
        """The window looked for models again (an in-thread runner shares its registry)."""
        if isinstance(self.host, EngineProcess):
            self.host.refresh_models()

    def pending(self) -> int:
        with self._lock:
            return len(self._jobs)

    def stop(self, timeout_ms: Optional[int] = None) -> bool:
        """Cancel everything, let the running job reach its next step, and wait for the thread.

        With no timeout, wait however long it takes (logging while it does): a QThread still
        running when Qt exits aborts the process, terminate() could kill it holding a lock, and a
        model being loaded cannot be cut short. Returns whether the thread has ended."""
        for job in self._queue.close():
            job.cancel.set()
            self._emit(Cancelled(job.job_id))
        self.cancel_all()
        if timeout_ms is not None:
            return self.wait(timeout_ms)
        while not self.wait(WAIT_LOG_MS):
            log.info("waiting for the engine to finish its current step…")
        return True

    # -- the engine thread ----------------------------------------------------------------------

    def run(self) -> None:
        log.info("engine thread started")
        self.host.serve(self._queue, self._emit)
        log.info("engine thread stopped")

    def _emit(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.job_progress.emit(event.job_id, event.step, event.total)
        elif isinstance(event, Preview):
            self.job_preview.emit(event.job_id, event.image)
        elif isinstance(event, Token):
            self.job_token.emit(event.job_id, event)
        elif isinstance(event, ContextUsed):
            self.job_context.emit(event.job_id, event.context)
        elif isinstance(event, Started):
            self.job_started.emit(event.job_id)
        else:
            with self._lock:
                self._jobs.pop(event.job_id, None)
            if isinstance(event, Finished):
                self.job_finished.emit(event.job_id, event.result)
            elif isinstance(event, Failed):
                self.job_failed.emit(event.job_id, event.kind, event.message)
            elif isinstance(event, Cancelled):
                self.job_cancelled.emit(event.job_id, event.reason)
