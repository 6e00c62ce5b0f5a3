"""JobList: each job's handle follows the engine's events; failures set the error; the history is bounded."""

from __future__ import annotations

import pytest

from studio.core.errors import SpecError
from studio.core.jobs import ImageJob, LatentDecodeJob, TextJob
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry
from studio.state import jobs as jobs_module
from studio.state.engine_thread import EngineThread
from studio.state.jobs import JobList, JobState

from fake_models import write_fake_model


@pytest.fixture
def jobs(fake_models):
    engine = EngineThread(Runner(ModelRegistry()))
    engine.start()
    yield JobList(engine)
    engine.stop()


def small_image(**kw) -> ImageJob:
    return ImageJob(**{"model": "fake-image", "steps": 3, "width": 64, "height": 64, **kw})


def test_record_goes_queued_running_finished(qtbot, jobs):
    states, added = [], []
    jobs.job_added.connect(added.append)
    jobs.job_changed.connect(lambda job: states.append((job.state, job.step)))
    with qtbot.waitSignal(jobs.finished, timeout=10_000) as done:
        job = jobs.submit(small_image(prompt="a kite"))
        assert added == [job]
        assert (job.state, job.title, job.kind) == (JobState.QUEUED, "image · a kite", "image")
        assert job.total == 0
    assert done.args[0] == job and done.args[1].images[0].shape == (64, 64, 3)
    order = [s for s, _ in states]
    assert order[0] is JobState.RUNNING and order[-1] is JobState.FINISHED
    assert order.index(JobState.FINISHED) == len(order) - 1
    assert [step for s, step in states if s is JobState.RUNNING][-1] == 3
    assert (job.step, job.total, job.message) == (3, 3, "")
    assert job.seconds is not None and job.seconds >= 0
    assert jobs.active() == [] and jobs.last_info.device == "cpu"


def test_previews_tokens_and_the_end_arrive_on_the_jobs_own_handle(qtbot, jobs):
    previews, tokens, ends = [], [], []
    with qtbot.waitSignal(jobs.finished, timeout=10_000):
        image = jobs.submit(small_image())
        other = jobs.submit(small_image(width=32, height=32))
        image.preview.connect(lambda picture: previews.append((image, picture.shape[1])))
        image.finished.connect(lambda result: ends.append("finished"))
        image.ended.connect(lambda: ends.append("ended"))
    qtbot.waitUntil(lambda: other.is_done, timeout=10_000)
    assert previews and all(p == (image, 64) for p in previews)  # none of the other job's 32-wide ones
    assert ends == ["finished", "ended"]
    with qtbot.waitSignal(jobs.finished, timeout=10_000) as done:
        text = jobs.submit(TextJob(model="fake-text", max_new_tokens=6))
        text.token.connect(lambda token: tokens.append(token.text))
    assert "".join(tokens) == done.args[1].text and len(tokens) == 6 and done.args[0] is text


def test_failed_job_sets_the_error_and_the_next_job_still_runs(qtbot, jobs):
    errors = []
    jobs.error.error_changed.connect(errors.append)
    with qtbot.waitSignal(jobs.job_changed, timeout=10_000, check_params_cb=lambda i: i.state.is_terminal):
        bad = jobs.submit(small_image(model="fake-text"))  # an image job on a text model
    assert bad.state is JobState.FAILED and "text model" in bad.message
    assert errors == [jobs.error.message] and jobs.error.message.startswith("`model` fake-text is a text model")
    assert jobs.error.message.endswith(".") and "\n" not in jobs.error.message

    with qtbot.waitSignal(jobs.finished, timeout=10_000):
        good = jobs.submit(small_image())
    assert good.state is JobState.FINISHED
    jobs.error.clear()
    assert jobs.error.message == "" and errors[-1] == ""


def test_a_backend_failure_mid_job_is_one_sentence(qtbot, jobs, fake_models):
    write_fake_model(fake_models / "broken", "image", fail_at_step=2)
    jobs.engine.runner.registry.refresh()
    with qtbot.waitSignal(jobs.error.error_changed, timeout=10_000):
        job = jobs.submit(small_image(model="broken"))
    qtbot.waitUntil(lambda: job.state is JobState.FAILED, timeout=5_000)
    assert job.step == 1  # it stopped where it failed
    assert jobs.error.message == "RuntimeError: simulated failure at step 2."


def test_a_bad_spec_raises_from_submit_and_queues_nothing(qtbot, jobs):
    with pytest.raises(SpecError) as info:
        jobs.submit(small_image(width=100))
    assert info.value.field == "width"
    assert len(jobs) == 0 and jobs.engine.pending() == 0
    assert jobs.submit_or_report(small_image(steps=0)) is None
    assert jobs.error.message.startswith("`steps` must be between 1 and")
    assert len(jobs) == 0


def test_cancel_a_queued_job(qtbot, jobs, fake_models):
    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.05)
    jobs.engine.runner.registry.refresh()
    running = jobs.submit(small_image(model="slow-image", steps=40))
    waiting = jobs.submit(small_image())
    waiting.cancel()
    assert waiting.state is JobState.CANCELLED and waiting.started_at == waiting.ended_at
    running.cancel()
    qtbot.waitUntil(lambda: running.state is JobState.CANCELLED, timeout=5_000)
    assert running.message == "cancelled" and running.step < 40


def test_history_is_bounded_and_superseded_previews_are_recorded(qtbot, jobs, monkeypatch):
    monkeypatch.setattr(jobs_module, "HISTORY", 3)
    removed = []
    jobs.job_removed.connect(removed.append)
    ids = [jobs.submit(small_image(steps=1)) for _ in range(5)]
    qtbot.waitUntil(lambda: not jobs.active(), timeout=10_000)
    assert list(jobs) == ids[2:] and removed == ids[:2]

    latent_ids = [jobs.submit(LatentDecodeJob(model="fake-latent", latent=(float(i),) * 8)) for i in range(30)]
    qtbot.waitUntil(lambda: not jobs.active(), timeout=10_000)
    kept = [r for r in jobs if r.kind == "latent-decode"]
    assert len(kept) == jobs_module.INTERACTIVE_HISTORY and kept[-1] is latent_ids[-1]
    assert kept[-1].state is JobState.FINISHED
    assert any(r.message == "superseded" for r in kept)
