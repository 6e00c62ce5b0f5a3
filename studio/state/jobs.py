"""The jobs list: one record per job the engine was given, kept in step with the engine's signals.

Widgets read records and listen to `job_added` / `job_changed`; they never talk to the engine
thread themselves, so all engine bookkeeping (and the error shown to the person) lives here."""

from __future__ import annotations

import collections
import dataclasses
import enum
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from studio.core.errors import StudioError, first_line
from studio.core.jobs import ExportJob, JobSpec, Lane
from studio.engine.thread import EngineThread

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


@dataclass
class JobRecord:
    """What the person sees of one job. Mutated only by JobList, on the GUI thread."""

    id: int
    title: str
    kind: str
    lane: Lane
    spec: JobSpec
    state: JobState = JobState.QUEUED
    step: int = 0
    total: int = 0
    message: str = ""  # why it failed or was cancelled; empty otherwise
    queued_at: float = 0.0
    started_at: Optional[float] = None
    ended_at: Optional[float] = None

    @property
    def seconds(self) -> Optional[float]:
        """How long it ran, once it has ended (None before)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


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
    """Records of the engine's jobs, with the engine's per-job signals re-emitted for widgets."""

    job_added = Signal(int)
    job_changed = Signal(int)
    job_removed = Signal(int)  # dropped from the bounded history
    preview = Signal(int, QImage)
    token = Signal(int, object)  # job id, core.events.Token
    context_used = Signal(int, object)  # job id, core.events.ContextResult: what a text job's model read
    finished = Signal(int, object)  # job id, ImageResult | TextResult
    busy_changed = Signal(bool)  # whether any job is queued or running
    models_changed = Signal()  # an export ended: the models (and their runtimes) should be looked at again

    def __init__(self, engine: EngineThread, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.engine = engine
        self.error = ErrorState(self)
        self.last_info: dict = {}  # `info` of the newest finished result: device, runtime, seconds
        # The runtime picked per model in the window ("torch" / "onnx"); a model not in here runs
        # on its own runtime ("auto"). Applied to every job the window submits for that model.
        self.runtimes: dict[str, str] = {}
        self.exports: dict[str, int] = {}  # model id -> its ONNX export job, while that runs
        self._records: collections.OrderedDict[int, JobRecord] = collections.OrderedDict()
        self._busy = False
        engine.job_queued.connect(self._on_queued)
        engine.job_started.connect(self._on_started)
        engine.job_progress.connect(self._on_progress)
        engine.job_preview.connect(self.preview)
        engine.job_token.connect(self.token)
        engine.job_context.connect(self.context_used)
        engine.job_finished.connect(self._on_finished)
        engine.job_failed.connect(self._on_failed)
        engine.job_cancelled.connect(self._on_cancelled)

    # -- commands ---------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> int:
        """Queue a job and return its id. A bad spec raises SpecError (naming the field), queues nothing.

        A spec that leaves the runtime to the studio gets the one picked for its model."""
        picked = self.runtimes.get(spec.model, "auto")
        if spec.runtime == "auto" and picked != "auto":
            spec = dataclasses.replace(spec, runtime=picked)
        return self.engine.submit(spec)

    def set_runtime(self, model_id: str, runtime: str) -> None:
        """Run `model_id`'s jobs on `runtime` from now on ("auto": the model's own)."""
        if runtime == "auto":
            self.runtimes.pop(model_id, None)
        else:
            self.runtimes[model_id] = runtime

    def export_to_onnx(self, model_id: str) -> Optional[int]:
        """Export a model to ONNX (once, however often it is asked while that runs) and run its
        jobs on ONNX Runtime once the export is in place; until then they run as before. Returns
        the export job's id, None when it could not be queued (the error bar says why)."""
        if model_id in self.exports:
            return self.exports[model_id]
        job_id = self.submit_or_report(ExportJob(model=model_id))
        if job_id is not None:
            self.exports[model_id] = job_id
        return job_id

    def submit_or_report(self, spec: JobSpec) -> Optional[int]:
        """Queue a job, or show why it cannot be queued on the error bar and return None."""
        try:
            job_id = self.submit(spec)
        except StudioError as exc:  # a bad field (SpecError), or the engine has shut down
            self.error.show(_sentence(exc.message))
            return None
        if spec.lane is Lane.BATCH:
            self.error.clear()  # a new attempt: the old failure is no longer news
        return job_id

    def cancel(self, job_id: int) -> None:
        self.engine.cancel(job_id)

    def cancel_all(self) -> None:
        self.engine.cancel_all()

    def refresh_models(self) -> None:
        """The window looked for models again: so does the engine, before its next job."""
        self.engine.refresh_models()

    def shutdown(self) -> None:
        """Cancel everything and wait for the engine thread to end, however long it takes."""
        self.engine.stop()

    # -- queries ----------------------------------------------------------------------------------

    def get(self, job_id: int) -> Optional[JobRecord]:
        return self._records.get(job_id)

    def __iter__(self) -> Iterator[JobRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def active(self) -> list[JobRecord]:
        return [r for r in self._records.values() if not r.state.is_terminal]

    def last_ended(self) -> Optional[JobRecord]:
        ended = [r for r in self._records.values() if r.ended_at is not None and r.lane is Lane.BATCH]
        return max(ended, key=lambda r: r.ended_at) if ended else None

    # -- engine signals ---------------------------------------------------------------------------

    @Slot(int, object)
    def _on_queued(self, job_id: int, spec: JobSpec) -> None:
        title = " ".join(spec.title.split())  # one line: text prompts end in newlines
        self._records[job_id] = JobRecord(job_id, title, spec.kind, spec.lane, spec, queued_at=time.monotonic())
        self.job_added.emit(job_id)
        self._update_busy()

    @Slot(int)
    def _on_started(self, job_id: int) -> None:
        self._update(job_id, state=JobState.RUNNING, started_at=time.monotonic())

    @Slot(int, int, int)
    def _on_progress(self, job_id: int, step: int, total: int) -> None:
        self._update(job_id, step=step, total=total)

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        self.last_info = dict(getattr(result, "info", {}) or {})
        self._end(job_id, JobState.FINISHED, "")
        if self.last_info.get("degraded"):  # it ran out of memory and got through with less: say so
            self.error.show(_sentence(str(self.last_info["degraded"])))
        self.finished.emit(job_id, result)

    @Slot(int, str, str)
    def _on_failed(self, job_id: int, kind: str, message: str) -> None:
        self._end(job_id, JobState.FAILED, message)
        self.error.show(_sentence(message))

    @Slot(int, str)
    def _on_cancelled(self, job_id: int, reason: str) -> None:
        self._end(job_id, JobState.CANCELLED, reason)

    # -- bookkeeping ------------------------------------------------------------------------------

    def _update(self, job_id: int, **changes) -> Optional[JobRecord]:
        record = self._records.get(job_id)
        if record is None:  # already dropped from the history
            return None
        for name, value in changes.items():
            setattr(record, name, value)
        self.job_changed.emit(job_id)
        return record

    def _end(self, job_id: int, state: JobState, message: str) -> None:
        now = time.monotonic()
        record = self._records.get(job_id)
        started = record.started_at if record and record.started_at is not None else now
        exported = next((model for model, export in self.exports.items() if export == job_id), None)
        if exported is not None:
            del self.exports[exported]
            if state is JobState.FINISHED:
                self.runtimes[exported] = "onnx"  # what the person picked, now that it exists
        self._update(job_id, state=state, message=message, ended_at=now, started_at=started)
        self._trim()
        self._update_busy()
        if exported is not None:
            self.models_changed.emit()

    def _trim(self) -> None:
        for lane, keep in ((Lane.BATCH, HISTORY), (Lane.INTERACTIVE, INTERACTIVE_HISTORY)):
            ended = [r.id for r in self._records.values() if r.lane is lane and r.state.is_terminal]
            for job_id in ended[: max(0, len(ended) - keep)]:
                del self._records[job_id]
                self.job_removed.emit(job_id)

    def _update_busy(self) -> None:
        busy = bool(self.active())
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)


def _sentence(message: str) -> str:
    """The first line of a message, ending in a full stop: the error bar shows one sentence."""
    text = first_line(message or "") or "Something went wrong."
    return text if text.endswith((".", "!", "?")) else text + "."
