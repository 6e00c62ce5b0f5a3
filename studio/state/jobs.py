"""The jobs list: one handle per job the engine was given, kept in step with the engine's signals.

`JobList.submit()` returns a `JobHandle`: that job's own state, progress, previews, tokens and end,
as signals of its own, and `cancel()`. Whoever submitted a job follows its handle, so nobody
filters a broadcast by job id; the list's own signals (`job_added`, `busy_changed`...) are for
views of every job, such as the jobs panel and the status bar. All engine bookkeeping (and the
error shown to the person) lives here, never in widgets."""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import time
from typing import Callable, Iterator, Optional

from PySide6.QtCore import QObject, Signal, Slot

from studio.core.errors import StudioError, first_line
from studio.core.events import RunInfo
from studio.core.jobs import ExportJob, JobSpec, Lane
from studio.state.engine_thread import EngineThread

HISTORY = 100  # finished batch jobs kept in the list
INTERACTIVE_HISTORY = 10  # slider previews come by the hundred; keep only the last few


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


class JobHandle(QObject):
    """One job, as whoever submitted it follows it. Mutated only by its JobList, on the GUI thread.

    Every job emits `changed` on each state or progress change, any number of `preview` / `token` /
    `context_used`, then exactly one of `finished`, `failed` or `cancelled`, then `ended`."""

    changed = Signal()  # state, step, total or message changed
    preview = Signal(object)  # H x W x 3 uint8 array: the picture so far
    token = Signal(object)  # core.events.Token
    context_used = Signal(object)  # core.events.ContextResult: what a text job's model read
    finished = Signal(object)  # its result: ImageResult | TextResult | LatentResult | ...
    failed = Signal(str)  # one sentence
    cancelled = Signal(str)  # "cancelled" or "superseded"
    ended = Signal()  # after whichever of the three came
    removed = Signal()  # dropped from the list's bounded history

    def __init__(self, job_id: int, spec: JobSpec, lane: Lane, cancel: Callable[[int], None]):
        super().__init__()  # no parent: it lives as long as its list or its holder keeps it
        self.id = job_id
        self.spec = spec
        self.lane = lane
        self.kind = spec.kind
        self.title = " ".join(spec.title.split())  # one line: text prompts end in newlines
        self.state = JobState.QUEUED
        self.step = 0
        self.total = 0
        self.message = ""  # why it failed or was cancelled; empty otherwise
        self.queued_at = time.monotonic()
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        # The engine's cancel, not the JobList: a handle must not hold its list, which holds it
        # (docs/DESIGN.md §9: no QObject in a reference cycle).
        self._cancel = cancel

    @property
    def seconds(self) -> Optional[float]:
        """How long it ran, once it has ended (None before)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def is_done(self) -> bool:
        return self.state.is_terminal

    def cancel(self) -> None:
        """A queued job leaves without running; a running one stops at its next step or token."""
        if not self.state.is_terminal:
            self._cancel(self.id)

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.kind} {self.state.value}>"


class ErrorState(QObject):
    """The one failure the window is showing, in one sentence; empty when there is none."""

    error_changed = Signal(str)

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._message = ""

    @property
    def message(self) -> str:
        return self._message

    @Slot(str)
    def show(self, message: str) -> None:
        if message != self._message:
            self._message = message
            self.error_changed.emit(message)

    @Slot()
    def clear(self) -> None:
        self.show("")


class JobList(QObject):
    """Handles of the engine's jobs, kept in step with the engine thread's signals."""

    job_added = Signal(object)  # JobHandle
    job_changed = Signal(object)  # JobHandle: its state or progress changed
    job_removed = Signal(object)  # JobHandle, dropped from the bounded history
    finished = Signal(object, object)  # JobHandle, its result (for views of every job)
    busy_changed = Signal(bool)  # whether any job is queued or running
    models_changed = Signal()  # an export ended: the models (and their runtimes) should be looked at again

    def __init__(self, engine: EngineThread, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.engine = engine
        self.error = ErrorState(self)
        self.last_info = RunInfo()  # `info` of the newest finished result: device, runtime, seconds
        # The runtime picked per model in the window ("torch" / "onnx"); a model not in here runs
        # on its own runtime ("auto"). Applied to every job the window submits for that model.
        self.runtimes: dict[str, str] = {}
        self.exports: dict[str, JobHandle] = {}  # model id -> its ONNX export, while that runs
        self._handles: collections.OrderedDict[int, JobHandle] = collections.OrderedDict()
        self._busy = False
        engine.job_queued.connect(self._on_queued)
        engine.job_started.connect(self._on_started)
        engine.job_progress.connect(self._on_progress)
        engine.job_preview.connect(lambda job_id, image: self._relay(job_id, "preview", image))
        engine.job_token.connect(lambda job_id, token: self._relay(job_id, "token", token))
        engine.job_context.connect(lambda job_id, context: self._relay(job_id, "context_used", context))
        engine.job_finished.connect(self._on_finished)
        engine.job_failed.connect(self._on_failed)
        engine.job_cancelled.connect(self._on_cancelled)

    # -- commands ---------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobHandle:
        """Queue a job and return its handle. A bad spec raises SpecError (naming the field) and
        queues nothing. A spec that leaves the runtime to the studio gets the one picked for its model."""
        picked = self.runtimes.get(spec.model, "auto")
        if spec.runtime == "auto" and picked != "auto":
            spec = dataclasses.replace(spec, runtime=picked)
        # The engine announces the job (job_queued, on this thread) before submit returns, so its
        # handle exists by now; a job superseded at once has even ended already.
        return self._handles[self.engine.submit(spec)]

    def submit_or_report(self, spec: JobSpec) -> Optional[JobHandle]:
        """Queue a job, or show why it cannot be queued on the error bar and return None."""
        try:
            job = self.submit(spec)
        except StudioError as exc:  # a bad field (SpecError), or the engine has shut down
            self.error.show(_sentence(exc.message))
            return None
        if spec.lane is Lane.BATCH:
            self.error.clear()  # a new attempt: the old failure is no longer news
        return job

    def set_runtime(self, model_id: str, runtime: str) -> None:
        """Run `model_id`'s jobs on `runtime` from now on ("auto": the model's own)."""
        if runtime == "auto":
            self.runtimes.pop(model_id, None)
        else:
            self.runtimes[model_id] = runtime

    def export_to_onnx(self, model_id: str) -> Optional[JobHandle]:
        """Export a model to ONNX (once, however often it is asked while that runs) and run its
        jobs on ONNX Runtime once the export is in place; until then they run as before. Returns
        the export job, None when it could not be queued (the error bar says why)."""
        if model_id in self.exports:
            return self.exports[model_id]
        job = self.submit_or_report(ExportJob(model=model_id))
        if job is not None and not job.is_done:
            self.exports[model_id] = job
            # Named by its model, not captured: a slot that holds its own sender keeps it alive.
            job.ended.connect(functools.partial(self._on_export_ended, model_id))
        return job

    def cancel_all(self) -> None:
        self.engine.cancel_all()

    def refresh_models(self) -> None:
        """The window looked for models again: so does the engine, before its next job."""
        self.engine.refresh_models()

    def shutdown(self) -> None:
        """Cancel everything and wait for the engine thread to end, however long it takes."""
        self.engine.stop()

    # -- queries ----------------------------------------------------------------------------------

    def get(self, job_id: int) -> Optional[JobHandle]:
        return self._handles.get(job_id)

    def __iter__(self) -> Iterator[JobHandle]:
        return iter(list(self._handles.values()))

    def __len__(self) -> int:
        return len(self._handles)

    def active(self) -> list[JobHandle]:
        return [job for job in self._handles.values() if not job.state.is_terminal]

    def last_ended(self) -> Optional[JobHandle]:
        ended = [job for job in self._handles.values() if job.ended_at is not None and job.lane is Lane.BATCH]
        return max(ended, key=lambda job: job.ended_at or 0.0) if ended else None

    # -- engine signals ---------------------------------------------------------------------------

    @Slot(int, object)
    def _on_queued(self, job_id: int, spec: JobSpec) -> None:
        job = JobHandle(job_id, spec, spec.lane, self.engine.cancel)
        self._handles[job_id] = job
        self.job_added.emit(job)
        self._update_busy()

    @Slot(int)
    def _on_started(self, job_id: int) -> None:
        self._update(job_id, state=JobState.RUNNING, started_at=time.monotonic())

    @Slot(int, int, int)
    def _on_progress(self, job_id: int, step: int, total: int) -> None:
        self._update(job_id, step=step, total=total)

    def _relay(self, job_id: int, signal: str, value: object) -> None:
        job = self._handles.get(job_id)
        if job is not None:
            getattr(job, signal).emit(value)

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        info = getattr(result, "info", None)
        self.last_info = info if isinstance(info, RunInfo) else RunInfo()
        job = self._end(job_id, JobState.FINISHED, "")
        if self.last_info.degraded:  # it ran out of memory and got through with less: say so
            self.error.show(_sentence(self.last_info.degraded))
        if job is not None:
            job.finished.emit(result)
            self.finished.emit(job, result)
            job.ended.emit()

    @Slot(int, str, str)
    def _on_failed(self, job_id: int, kind: str, message: str) -> None:
        job = self._end(job_id, JobState.FAILED, message)
        if job is not None:
            job.failed.emit(message)
            job.ended.emit()
        # Last, so that what its end set off (an export's models refresh) cannot hide why it failed.
        self.error.show(_sentence(message))

    @Slot(int, str)
    def _on_cancelled(self, job_id: int, reason: str) -> None:
        job = self._end(job_id, JobState.CANCELLED, reason)
        if job is not None:
            job.cancelled.emit(reason)
            job.ended.emit()

    def _on_export_ended(self, model_id: str) -> None:
        job = self.exports.pop(model_id, None)
        if job is not None and job.state is JobState.FINISHED:
            self.runtimes[model_id] = "onnx"  # what the person picked, now that it exists
        self.models_changed.emit()

    # -- bookkeeping ------------------------------------------------------------------------------

    def _update(self, job_id: int, **changes) -> Optional[JobHandle]:
        job = self._handles.get(job_id)
        if job is None:  # already dropped from the history
            return None
        for name, value in changes.items():
            setattr(job, name, value)
        job.changed.emit()
        self.job_changed.emit(job)
        return job

    def _end(self, job_id: int, state: JobState, message: str) -> Optional[JobHandle]:
        now = time.monotonic()
        job = self._handles.get(job_id)
        started = job.started_at if job and job.started_at is not None else now
        self._update(job_id, state=state, message=message, ended_at=now, started_at=started)
        self._trim(keep=job)
        self._update_busy()
        return job

    def _trim(self, keep: Optional[JobHandle]) -> None:
        """Drop the oldest ended jobs beyond each lane's history (never the one ending now: its
        end signals are still to come)."""
        for lane, most in ((Lane.BATCH, HISTORY), (Lane.INTERACTIVE, INTERACTIVE_HISTORY)):
            ended = [j for j in self._handles.values() if j.lane is lane and j.state.is_terminal and j is not keep]
            for job in ended[: max(0, len(ended) + (keep is not None and keep.lane is lane) - most)]:
                del self._handles[job.id]
                self.job_removed.emit(job)
                job.removed.emit()

    def _update_busy(self) -> None:
        busy = bool(self.active())
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)


def _sentence(message: str) -> str:
    """The first line of a message, ending in a full stop: the error bar shows one sentence."""
    text = first_line(message or "") or "Something went wrong."
    return text if text.endswith((".", "!", "?")) else text + "."
