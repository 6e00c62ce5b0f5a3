"""Run one job through a Runner and collect its events: what most engine tests need."""

from __future__ import annotations


def run(runner, spec, on_event=None):
    """All events of `spec` run on `runner`; `on_event(job, event)` may act mid-run (e.g. cancel)."""
    from studio.engine.queue import JobQueue

    job = JobQueue().make_job(spec)
    events = []

    def emit(event):
        events.append(event)
        if on_event:
            on_event(job, event)

    runner.run(job, emit)
    return events
