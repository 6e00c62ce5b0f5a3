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


def finished(events):
    """The result of a job that must have finished (its last event)."""
    from studio.core.events import Finished

    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].result


def tokens(events):
    """The Token events among a text job's events."""
    from studio.core.events import Token

    return [e for e in events if isinstance(e, Token)]


def one_sentence_failure(events, kind, words):
    """The Failed event a job must have ended with: of `kind`, one line, no traceback, and naming
    every one of `words`."""
    from studio.core.events import Failed

    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == kind, failed
    assert "\n" not in failed.message and "Traceback" not in failed.message
    for word in words:
        assert word in failed.message, (word, failed.message)
    return failed
