"""The job queue: a FIFO batch lane and an interactive lane where the newest request wins.

Pure Python and thread-safe: the GUI thread puts and cancels, the engine thread takes."""

from __future__ import annotations

import collections
import itertools
import threading
from dataclasses import dataclass, field
from typing import Optional

from studio.core.jobs import JobSpec, Lane


@dataclass
class Job:
    """A spec on its way through the engine: its id, lane and cancel flag."""

    job_id: int
    spec: JobSpec
    lane: Lane
    cancel: threading.Event = field(default_factory=threading.Event)


class JobQueue:
    """Two lanes. `take()` serves the interactive lane first. The interactive lane holds one
    request: a new one replaces the waiting one (whichever workspace sent it), which is returned
    as superseded and never runs — only the newest view of what the person is dragging matters."""

    def __init__(self):
        self._lock = threading.Condition()
        self._batch: collections.deque[Job] = collections.deque()
        self._interactive: Optional[Job] = None
        self._ids = itertools.count(1)
        self._closed = False

    def make_job(self, spec: JobSpec, lane: Optional[Lane] = None) -> Job:
        """Validate `spec` (SpecError names the bad field) and wrap it in a Job with a new id."""
        spec.validate()
        return Job(next(self._ids), spec, lane or spec.lane)

    def put(self, job: Job) -> list[Job]:
        """Queue a job; returns the interactive jobs it superseded (the caller reports them)."""
        dropped: list[Job] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is shut down")
            if job.lane is Lane.INTERACTIVE:
                if self._interactive is not None:
                    dropped.append(self._interactive)
                self._interactive = job
            else:
                self._batch.append(job)
            self._lock.notify_all()
        return dropped

    def take(self, timeout: Optional[float] = None) -> Optional[Job]:
        """The next job to run (interactive first), or None when closed or after `timeout`."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._closed or self._pending(), timeout):
                return None
            if self._closed:
                return None
            return self._pop()

    def take_interactive(self) -> Optional[Job]:
        """The waiting interactive request, if any, without blocking (used between batch steps)."""
        with self._lock:
            job, self._interactive = self._interactive, None
            return job

    def remove(self, job_id: int) -> Optional[Job]:
        """Take a queued job out so it never runs; None if it is not waiting."""
        with self._lock:
            if self._interactive is not None and self._interactive.job_id == job_id:
                job, self._interactive = self._interactive, None
                return job
            for job in self._batch:
                if job.job_id == job_id:
                    self._batch.remove(job)
                    return job
            return None

    def close(self) -> list[Job]:
        """Stop serving; returns the jobs that were still waiting."""
        with self._lock:
            self._closed = True
            waiting = list(self._batch) + ([self._interactive] if self._interactive else [])
            self._batch.clear()
            self._interactive = None
            self._lock.notify_all()
            return waiting

    def has_interactive(self) -> bool:
        """Whether an interactive request is waiting (the engine process asks between steps)."""
        with self._lock:
            return self._interactive is not None

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def __len__(self) -> int:
        with self._lock:
            return len(self._batch) + (self._interactive is not None)

    def _pending(self) -> bool:
        return bool(self._batch) or self._interactive is not None

    def _pop(self) -> Job:
        if self._interactive is not None:
            job, self._interactive = self._interactive, None
            return job
        return self._batch.popleft()
