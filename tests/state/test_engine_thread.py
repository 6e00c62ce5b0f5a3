"""The QThread host: signals in order, cancel queued and running, survival, clean stop."""

import numpy as np
import pytest

from studio.core.errors import SpecError
from studio.core.jobs import ImageJob, LatentDecodeJob
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry
from studio.state.engine_thread import EngineThread

from fake_models import write_fake_model


@pytest.fixture
def engine(qtbot, fake_models):
    write_fake_model(fake_models / "broken-image", "image", fail_at_step=1)
    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.05)
    thread = EngineThread(Runner(ModelRegistry()))
    thread.start()
    yield thread
    assert thread.stop()
    assert not thread.isRunning()


def small(model="fake-image", **kw):
    return ImageJob(model=model, width=16, height=16, **kw)


def test_signals_arrive_in_order_on_the_gui_thread(qtbot, engine):
    previews = []
    engine.job_preview.connect(lambda jid, img: previews.append(img))
    with qtbot.waitSignals(
        [engine.job_started, engine.job_progress, engine.job_progress, engine.job_progress, engine.job_finished],
        order="strict",
        timeout=10_000,
    ):
        engine.submit(small(steps=3))
    assert previews and isinstance(previews[0], np.ndarray) and previews[0].shape == (16, 16, 3)


def test_a_failing_job_leaves_the_thread_alive_and_the_next_job_runs(qtbot, engine):
    with qtbot.waitSignal(engine.job_failed, timeout=10_000) as failed:
        engine.submit(small("broken-image", steps=2))
    job_id, kind, message = failed.args
    assert kind == "runtime" and "simulated failure" in message
    assert engine.isRunning()
    with qtbot.waitSignal(engine.job_finished, timeout=10_000):
        engine.submit(small(steps=1))


def test_cancel_a_queued_job_and_a_running_one(qtbot, engine):
    started, cancelled, steps = [], [], []
    engine.job_started.connect(started.append)
    engine.job_cancelled.connect(lambda jid, reason: cancelled.append(jid))
    engine.job_progress.connect(lambda jid, step, total: steps.append((jid, step)))
    running = engine.submit(small("slow-image", steps=40))
    queued = engine.submit(small("slow-image", steps=40))
    qtbot.waitUntil(lambda: (running, 2) in steps, timeout=10_000)
    engine.cancel(queued)
    engine.cancel(running)
    qtbot.waitUntil(lambda: set(cancelled) == {running, queued}, timeout=10_000)
    assert queued not in started, "a cancelled queued job never starts"
    last = max(s for j, s in steps if j == running)
    assert last < 40
    qtbot.wait(200)
    assert max(s for j, s in steps if j == running) == last, "no step after the cancel landed"


def test_a_bad_spec_raises_and_queues_nothing(engine):
    with pytest.raises(SpecError, match="`width`"):
        engine.submit(ImageJob(model="fake-image", width=30))
    assert engine.pending() == 0


def test_stale_interactive_requests_are_dropped_as_superseded(qtbot, engine):
    reasons, finished = [], []
    engine.job_cancelled.connect(lambda jid, reason: reasons.append(reason))
    engine.job_finished.connect(lambda jid, result: finished.append(jid))
    blocker = engine.submit(small("slow-image", steps=4))
    ids = [engine.submit(LatentDecodeJob(model="fake-latent", latent=(float(v),) * 8)) for v in range(10)]
    qtbot.waitUntil(lambda: blocker in finished and ids[-1] in finished, timeout=10_000)
    assert reasons.count("superseded") >= 8
    assert ids[-1] in finished


def test_stop_cancels_the_running_job_and_ends_the_thread(qtbot, fake_models):
    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.05)
    thread = EngineThread(Runner(ModelRegistry()))
    thread.start()
    steps, cancelled = [], []
    thread.job_progress.connect(lambda *a: steps.append(a))
    thread.job_cancelled.connect(lambda jid, reason: cancelled.append(jid))
    job = thread.submit(small("slow-image", steps=200))
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=10_000)
    assert thread.stop(5_000)
    assert not thread.isRunning()
    qtbot.waitUntil(lambda: job in cancelled, timeout=2_000)


def test_submitting_after_stop_says_so_and_leaves_nothing_behind(qtbot, fake_models):
    from studio.core.errors import StudioError

    thread = EngineThread(Runner(ModelRegistry()))
    thread.start()
    assert thread.stop()
    queued = []
    thread.job_queued.connect(lambda jid, spec: queued.append(jid))
    with pytest.raises(StudioError, match="shut down"):
        thread.submit(small(steps=1))
    assert thread.pending() == 0 and queued == []
