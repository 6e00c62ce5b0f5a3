"""WriteSession without a window: Continue streams the model's words into the document at the
cursor, Retry keeps the earlier sample, choosing an alternative rewrites from that token, Stop
ends the stream, only the newest context measurement answers, and a new document stops a run."""

from __future__ import annotations

import time

import pytest

from studio.core.story import MAX_SIDE_CHARS
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry
from studio.state.engine_thread import EngineThread
from studio.state.jobs import JobList, JobState
from studio.state.write_session import WriteSession
from studio.writing.document import Document

from fake_models import write_fake_model


@pytest.fixture
def jobs(fake_models):
    # Before the registry looks: a slow model to stop mid-stream, a fast one to batch.
    write_fake_model(fake_models / "slow-text", "text", step_seconds=0.03)
    write_fake_model(fake_models / "fast-text", "text", step_seconds=0.0005)
    engine = EngineThread(Runner(ModelRegistry()))
    engine.start()
    yield JobList(engine)
    engine.stop()


@pytest.fixture
def session(jobs):
    return WriteSession(jobs)


def run(qtbot, session, start, *args, tokens: int = 4):
    """Start a job with `start(*args)` and wait for its end; returns its handle."""
    session.document.sampler["max_new_tokens"] = tokens
    job = start(*args)
    assert job is not None and session.job is job and session.is_running()
    qtbot.waitUntil(lambda: not session.is_running(), timeout=10_000)
    assert job.state is JobState.FINISHED, job.message
    return job


def test_continue_streams_the_words_in_at_the_cursor_and_logs_each_token(qtbot, session):
    session.set_document(Document("Once upon a time. THE END"))
    running = []
    session.running_changed.connect(running.append)
    cursor = len("Once upon a time.")
    job = run(qtbot, session, session.continue_at, cursor, "fake-text", tokens=5)

    assert job.spec.story.text == "Once upon a time."  # the text before the cursor, nothing after
    text = session.document.text
    assert text.startswith("Once upon a time. ") and text.endswith(" THE END")
    written = text[cursor : -len(" THE END")]
    records = session.tokens.records(session.last_generation, 0)
    assert written == "".join(r.text for r in records) and len(written.split()) == 5
    assert [origin for *_, origin in session.document.spans()] == ["typed", "generated", "typed"]
    assert running == [True, False]
    assert session.last_context.prompt == "Once upon a time."  # what the model read, from the engine
    token = session.token_at(cursor + 1)  # the first word (a word may be one letter long)
    assert token is not None and token.start == cursor and token.record.alternatives[0][1] == 0.5


def test_one_generation_at_a_time(qtbot, session):
    session.document.sampler["max_new_tokens"] = 50
    first = session.continue_at(0, "slow-text")
    assert first is not None
    qtbot.waitUntil(lambda: first.state is JobState.RUNNING, timeout=10_000)
    assert session.continue_at(0, "slow-text") is None and session.retry(0, "slow-text") is None
    session.stop()
    qtbot.waitUntil(lambda: not session.is_running(), timeout=5_000)
    assert first.state is JobState.CANCELLED


def test_stop_keeps_what_streamed_and_nothing_arrives_after(qtbot, session):
    session.set_document(Document("The lantern"))
    session.document.sampler["max_new_tokens"] = 500
    job = session.continue_at(len("The lantern"), "slow-text")
    qtbot.waitUntil(lambda: len(session.document.text.split()) > 5, timeout=10_000)
    session.stop()
    qtbot.waitUntil(lambda: not session.is_running(), timeout=2_000)
    assert job.state is JobState.CANCELLED
    final = session.document.text
    qtbot.wait(150)
    assert session.document.text == final and final.startswith("The lantern ")
    records = session.tokens.records(session.last_generation, 0)
    assert "".join(r.text for r in records) == final[len("The lantern") :]  # every token went in


def test_retry_replaces_the_generation_and_keeps_the_first_sample(qtbot, session):
    session.set_document(Document("Rain fell"))
    run(qtbot, session, session.continue_at, len("Rain fell"), "fake-text")
    first = session.document.text
    assert session.samples_at(len(first)) == (0, 1)

    job = run(qtbot, session, session.retry, len(first), "fake-text")
    assert job.spec.story.text == "Rain fell"  # what the generation came after
    second = session.document.text
    assert second.startswith("Rain fell") and second != first  # a new seed, a new sample
    assert session.samples_at(len(second)) == (1, 2)
    assert session.step_alternative(len(second), +1) is False  # there is no third
    assert session.step_alternative(len(second), -1) is True
    assert session.document.text == first and session.samples_at(0) == (0, 2)


def test_choosing_an_alternative_rewrites_from_that_token_and_carries_on(qtbot, session):
    session.set_document(Document("Rain"))
    run(qtbot, session, session.continue_at, len("Rain"), "fake-text", tokens=6)
    original = session.document.text
    last = session.token_at(len(original) - 1)  # the last word the model wrote
    first_word = session.token_at(len("Rain") + 1)
    alternative = last.record.alternatives[2][0]

    assert session.choose_alternative(last.start, 3, "fake-text") is None  # there are only three
    job = run(qtbot, session, session.choose_alternative, last.start, 2, "fake-text")
    head = original[: last.start] + alternative
    assert job.spec.story.text == head  # the model reads on from the chosen word
    rewritten = session.document.text
    assert rewritten.startswith(head) and len(rewritten) > len(head) and rewritten != original
    assert session.token_at(last.start + 1).record.text == alternative
    assert session.token_at(len("Rain") + 1) == first_word  # the words before it are still the model's
    assert session.samples_at(len(rewritten)) == (1, 2)
    session.step_alternative(len(rewritten), -1)
    assert session.document.text == original


def test_bad_sampler_settings_say_so_and_start_nothing(session, jobs):
    session.document.sampler["top_p"] = 2.0
    assert session.continue_at(0, "fake-text") is None
    assert "top_p" in jobs.error.message and not session.is_running() and len(jobs) == 0


def test_only_the_newest_context_measurement_answers(qtbot, jobs, session):
    session.set_document(Document("First. Second."))
    measured, waiting = [], []
    session.context_measured.connect(measured.append)
    session.context_waiting.connect(lambda: waiting.append(1))
    older = session.measure_context(len("First."), "fake-text")
    assert older is not None
    # The engine measures it while this thread looks away: its answer is still on its way here
    # when the writer asks again (so the older one is not superseded in the queue, it comes back).
    deadline = time.monotonic() + 10
    while jobs.engine.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    newer = session.measure_context(len("First. Second."), "fake-text")
    assert newer is not None and waiting == [1, 1]
    qtbot.waitUntil(lambda: newer.is_done and older.is_done, timeout=10_000)
    assert older.state is JobState.FINISHED and newer.state is JobState.FINISHED
    assert [context.prompt for context in measured] == ["First. Second."]


def test_a_context_that_cannot_be_measured_is_named_without_a_job(session, jobs):
    problems = []
    session.context_problem.connect(problems.append)
    session.document.memory = "m" * (MAX_SIDE_CHARS + 1)
    assert session.measure_context(0, "fake-text") is None
    assert len(problems) == 1 and "memory" in problems[0] and len(jobs) == 0
    assert session.measure_context(0, "") is None and len(problems) == 1  # no model: nothing to measure


def test_a_new_document_stops_the_run_and_its_late_tokens_stay_out(qtbot, session):
    old = session.document
    replaced, running = [], []
    session.document_replaced.connect(replaced.append)
    session.running_changed.connect(running.append)
    session.document.sampler["max_new_tokens"] = 500
    job = session.continue_at(0, "slow-text")
    qtbot.waitUntil(lambda: len(old.text.split()) > 2, timeout=10_000)
    time.sleep(0.2)  # the old job sends more tokens meanwhile: they are on their way here
    new = Document("Fresh page")
    session.set_document(new)
    assert replaced == [new] and running == [True, False] and not session.is_running()
    assert session.last_generation is None and session.token_at(3) is None

    # A run on the new document starts before the old one's last tokens and end have come in:
    # they are the old job's, so they neither write here nor end this run.
    new.sampler["max_new_tokens"] = 20
    fresh = run(qtbot, session, session.continue_at, len("Fresh page"), "fast-text", tokens=20)
    assert job.is_done and fresh.is_done
    qtbot.wait(100)
    records = session.tokens.records(session.last_generation, 0)
    assert new.text == "Fresh page" + "".join(r.text for r in records) and len(new.text.split()) == 22
    assert running == [True, False, True, False]


def test_tokens_go_through_the_edits_in_batches(qtbot, session):
    """With an editor, the model's text goes through its bridge (shown, one undo step), a few
    flushes a second rather than an edit per token."""
    calls = []

    class Edits:
        def __getattr__(self, name):
            def edit(*args):
                calls.append(name)
                return getattr(session.document, name)(*args)

            return edit

    session.edits = Edits()
    run(qtbot, session, session.continue_at, 0, "fast-text", tokens=300)
    assert len(session.document.text.split()) == 300
    assert calls[0] == "add_generation" and set(calls[1:]) == {"append_generation"}
    assert len(calls) < 100  # one edit per ~33 ms flush, not one per token
