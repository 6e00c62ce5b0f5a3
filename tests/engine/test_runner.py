"""The runner's contract, on the fake backend: event order, cancel, failures, lanes."""

import logging
import threading

import numpy as np
import pytest

from studio.core.events import (
    TERMINAL_EVENTS,
    Cancelled,
    Failed,
    Finished,
    ImageResult,
    Preview,
    Progress,
    Started,
    Token,
)
from studio.core.jobs import ImageJob, LatentDecodeJob, TextJob
from studio.engine.queue import JobQueue
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from fake_models import write_fake_model
from run_jobs import run


@pytest.fixture
def runner(fake_models):
    write_fake_model(fake_models / "broken-image", "image", fail_at_step=2)
    return Runner(ModelRegistry())


def test_events_arrive_in_order_and_end_once(runner):
    events = run(runner, ImageJob(model="fake-image", steps=5, width=32, height=32))
    assert isinstance(events[0], Started)
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3, 4, 5]
    assert any(isinstance(e, Preview) for e in events)
    assert sum(isinstance(e, TERMINAL_EVENTS) for e in events) == 1
    final = events[-1]
    assert isinstance(final, Finished) and isinstance(final.result, ImageResult)
    assert final.result.images[0].shape == (32, 32, 3) and final.result.images[0].dtype == np.uint8


def test_same_seed_same_pixels_other_seed_other_pixels(runner):
    def image(seed):
        return run(runner, ImageJob(model="fake-image", steps=2, seed=seed, width=16, height=16))[-1].result.images[0]

    assert np.array_equal(image(1), image(1))
    assert not np.array_equal(image(1), image(2))


def test_a_job_cancelled_while_queued_never_starts(runner):
    job = JobQueue().make_job(ImageJob(model="fake-image", steps=3))
    job.cancel.set()
    events = []
    runner.run(job, events.append)
    assert events == [Cancelled(job.job_id)]


@pytest.mark.parametrize("k", [1, 3])
def test_cancel_at_step_k_stops_before_step_k_plus_2(runner, k):
    def cancel_at_k(job, event):
        if isinstance(event, Progress) and event.step == k:
            job.cancel.set()

    events = run(runner, ImageJob(model="fake-image", steps=10, width=16, height=16), cancel_at_k)
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert max(steps) < k + 2
    assert isinstance(events[-1], Cancelled)
    assert not any(isinstance(e, (Finished, Failed)) for e in events)


def test_text_streams_tokens_and_cancel_lands_within_one_token(runner):
    events = run(runner, TextJob(model="fake-text", max_new_tokens=6, seed=4))
    tokens = [e for e in events if isinstance(e, Token)]
    assert len(tokens) == 6 and "".join(t.text for t in tokens) == events[-1].result.text

    def stop_after_two(job, event):
        if isinstance(event, Token) and sum(isinstance(e, Token) for e in seen) == 2:
            job.cancel.set()

    seen = []
    events = run(
        runner, TextJob(model="fake-text", max_new_tokens=50), lambda j, e: (seen.append(e), stop_after_two(j, e))
    )
    assert sum(isinstance(e, Token) for e in events) == 2
    assert isinstance(events[-1], Cancelled)


def test_a_failure_has_a_kind_a_sentence_and_a_logged_traceback(runner, caplog):
    with caplog.at_level(logging.ERROR):
        events = run(runner, ImageJob(model="broken-image", steps=4, width=16, height=16))
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "runtime"
    assert "simulated failure at step 2" in failed.message and "\n" not in failed.message
    assert any(r.exc_info for r in caplog.records), "the traceback goes to the log"
    # The runner is still good for the next job.
    assert isinstance(run(runner, ImageJob(model="fake-image", steps=2, width=16, height=16))[-1], Finished)


def test_unknown_model_and_wrong_capability_are_bad_input(runner):
    missing = run(runner, ImageJob(model="no-such-model"))[-1]
    assert isinstance(missing, Failed) and missing.kind == "bad input" and "studio models" in missing.message
    wrong = run(runner, ImageJob(model="fake-text", steps=1))[-1]
    assert isinstance(wrong, Failed) and wrong.kind == "bad input" and "text model" in wrong.message


def test_a_model_is_loaded_once_and_cached(runner):
    run(runner, ImageJob(model="fake-image", steps=1, width=16, height=16))
    run(runner, ImageJob(model="fake-image", steps=1, width=16, height=16, seed=5))
    assert len([k for k in runner.cache.keys() if k[0] == "fake-image"]) == 1


def test_interactive_requests_run_between_batch_steps_and_stale_ones_are_dropped(runner):
    queue = JobQueue()
    events = []
    batch = queue.make_job(ImageJob(model="fake-image", steps=6, width=16, height=16))
    queue.put(batch)
    dropped = []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 2:
            # A burst of slider moves arrives mid-render: only the newest may run.
            for v in range(5):
                dropped.extend(queue.put(queue.make_job(LatentDecodeJob(model="fake-latent", latent=(float(v),) * 8))))
        if isinstance(event, Finished) and event.job_id == batch.job_id:
            queue.close()

    safety_net = threading.Timer(10, queue.close)  # if the test is broken, do not hang
    safety_net.daemon = True
    safety_net.start()
    runner.serve(queue, emit)
    safety_net.cancel()
    finished = [e for e in events if isinstance(e, Finished)]
    assert len(dropped) == 4
    assert [f.job_id for f in finished][0] != batch.job_id, "the interactive job ran before the render ended"
    assert len(finished) == 2
    progress_after = [
        e.step for e in events[events.index(finished[0]) :] if isinstance(e, Progress) and e.job_id == batch.job_id
    ]
    assert progress_after == [3, 4, 5, 6]


@pytest.mark.parametrize("raise_on", [Started, Progress, Finished])
def test_a_host_whose_emit_raises_still_gets_exactly_one_end_and_the_queue_goes_on(runner, raise_on):
    queue = JobQueue()
    first = queue.make_job(ImageJob(model="fake-image", steps=2, width=16, height=16))
    second = queue.make_job(ImageJob(model="fake-image", steps=2, width=16, height=16, seed=1))
    queue.put(first), queue.put(second)
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, raise_on) and event.job_id == first.job_id:
            raise OSError("the window went away")
        if isinstance(event, TERMINAL_EVENTS) and event.job_id == second.job_id:
            queue.close()

    runner.serve(queue, emit)
    ends = [e for e in events if isinstance(e, TERMINAL_EVENTS)]
    assert [e.job_id for e in ends] == [first.job_id, second.job_id]
    assert isinstance(ends[1], Finished)


def test_a_backend_without_the_capability_a_job_needs_is_bad_input_naming_the_model(runner, monkeypatch):
    """The runner checks a loaded backend against the Protocol the job needs (backends/base.py)
    before handing it the job: one sentence naming the model, not an AttributeError mid-job."""
    from studio.engine.backends.fake import FakeBackend

    class TextOnly(FakeBackend):
        generate_image = None  # this backend makes no images

    monkeypatch.setattr(
        FakeBackend, "load", classmethod(lambda cls, model, device, dtype: TextOnly("image", 0.0, 8, 16))
    )
    failed = run(runner, ImageJob(model="fake-image", steps=1, width=16, height=16))[-1]
    assert isinstance(failed, Failed) and failed.kind == "bad input"
    assert failed.message.startswith("`model` is fake-image") and "cannot run an image job" in failed.message
