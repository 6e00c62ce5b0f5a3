"""The supervised engine process behind the engine thread: native crashes cost one job, never the
host; cancel, slider requests between steps and shutdown work across the process boundary."""

import os
import threading
import time

import pytest

from studio.core.jobs import ImageJob, LatentDecodeJob, TextJob
from studio.engine.host.engine_main import harden_environment
from studio.engine.host.supervisor import EngineProcess, RunnerRecipe, describe_exit
from studio.models.registry import ModelRegistry
from studio.state.engine_thread import EngineThread

from fake_models import write_fake_model
from processes import running_children


class BrokenRecipe(RunnerRecipe):
    """A recipe whose runner cannot be built (the child imports this module to unpickle it)."""

    def build(self):
        raise RuntimeError("no runner today")


def start(recipe, **options) -> EngineThread:
    thread = EngineThread(EngineProcess(recipe, **options))
    thread.start()
    return thread


def stopped_cleanly(thread: EngineThread) -> None:
    assert thread.stop()
    assert not thread.host.alive()
    assert running_children() == []


@pytest.fixture
def engine(qtbot, fake_models):
    for crash in ("abort", "segfault", "exit"):
        write_fake_model(fake_models / f"crash-{crash}", "image", step_seconds=0.01, crash_at_step=2, crash=crash)
    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.05)
    write_fake_model(fake_models / "oom-image", "image", step_seconds=0.01, oom_at_step=2)
    write_fake_model(fake_models / "slower-image", "image", step_seconds=0.2)
    thread = start(RunnerRecipe(ModelRegistry(), 1 << 30))
    yield thread
    stopped_cleanly(thread)


def small(model="fake-image", **kw):
    return ImageJob(model=model, width=16, height=16, **kw)


@pytest.mark.parametrize("crash", ["abort", "segfault", "exit"])
def test_a_native_crash_fails_only_its_job_and_a_new_engine_process_takes_the_next(qtbot, engine, crash):
    with qtbot.waitSignal(engine.job_finished, timeout=60_000):
        engine.submit(small(steps=2))
    first_pid = engine.host.pid
    with qtbot.waitSignal(engine.job_failed, timeout=60_000) as failed:
        engine.submit(small(f"crash-{crash}", steps=4))
    _, kind, message = failed.args
    assert kind == "engine crash"
    assert {"abort": "SIGABRT", "segfault": "SIGSEGV", "exit": "exit code 3"}[crash] in message
    assert "everything in the window is kept" in message
    assert engine.isRunning()
    with qtbot.waitSignal(engine.job_finished, timeout=60_000) as finished:
        engine.submit(small(steps=2))
    assert finished.args[1].images[0].shape == (16, 16, 3)
    assert engine.host.pid != first_pid and engine.host.starts == 2


def test_every_job_the_crashed_process_held_fails_and_queued_ones_still_run(qtbot, engine):
    ended = {}
    engine.job_failed.connect(lambda jid, kind, msg: ended.setdefault(jid, kind))
    engine.job_finished.connect(lambda jid, result: ended.setdefault(jid, "finished"))
    crashing = engine.submit(small("crash-abort", steps=4))
    after = [engine.submit(small(steps=1, seed=s)) for s in range(3)]
    qtbot.waitUntil(lambda: len(ended) == 4, timeout=60_000)
    assert ended == {crashing: "engine crash", **{j: "finished" for j in after}}


def test_cancel_reaches_the_engine_process_within_one_step(qtbot, engine):
    steps, cancelled = [], []
    engine.job_progress.connect(lambda jid, step, total: steps.append(step))
    engine.job_cancelled.connect(lambda jid, reason: cancelled.append(jid))
    job = engine.submit(small("slower-image", steps=100))
    qtbot.waitUntil(lambda: 3 in steps, timeout=60_000)
    at_cancel = len(steps)
    engine.cancel(job)
    qtbot.waitUntil(lambda: cancelled == [job], timeout=10_000)
    # The flag reaches the child within a poll (10 ms) and the job stops at its next step (0.2 s);
    # at most one more step can have been on its way.
    assert len(steps) - at_cancel <= 2
    assert max(steps) < 100


def test_a_slider_request_runs_between_the_steps_of_a_render_in_the_engine_process(qtbot, engine):
    finished, steps = [], []
    engine.job_finished.connect(lambda jid, result: finished.append(jid))
    engine.job_progress.connect(lambda jid, step, total: steps.append((jid, step)))
    render = engine.submit(small("slow-image", steps=40))
    qtbot.waitUntil(lambda: (render, 2) in steps, timeout=60_000)
    drag = engine.submit(LatentDecodeJob(model="fake-latent", latent=(0.5,) * 8))
    qtbot.waitUntil(lambda: drag in finished, timeout=10_000)
    assert render not in finished  # it came back while the render was still going
    qtbot.waitUntil(lambda: render in finished, timeout=60_000)


def test_text_streams_tokens_from_the_engine_process(qtbot, engine):
    tokens = []
    engine.job_token.connect(lambda jid, token: tokens.append(token.text))
    with qtbot.waitSignal(engine.job_finished, timeout=60_000) as finished:
        engine.submit(TextJob(model="fake-text", prompt="Once", max_new_tokens=6, seed=2))
    assert len(tokens) == 6 and "".join(tokens) == finished.args[1].text


def test_out_of_memory_in_the_engine_process_retries_with_less_memory_and_says_so(qtbot, engine):
    with qtbot.waitSignal(engine.job_finished, timeout=60_000) as finished:
        engine.submit(small("oom-image", steps=3))
    assert "ran again with" in finished.args[1].info.degraded


def test_stopping_mid_job_cancels_it_and_leaves_no_engine_process(qtbot, fake_models):
    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.05)
    thread = start(RunnerRecipe(ModelRegistry(), 1 << 30))
    steps, cancelled = [], []
    thread.job_progress.connect(lambda jid, step, total: steps.append(step))
    thread.job_cancelled.connect(lambda jid, reason: cancelled.append(jid))
    job = thread.submit(small("slow-image", steps=200))
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=60_000)
    pid = thread.host.pid
    assert thread.stop(timeout_ms=30_000)
    qtbot.waitUntil(lambda: cancelled == [job], timeout=5_000)
    assert not thread.host.alive() and running_children() == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_model_found_after_the_start_reaches_the_engine_process(qtbot, engine, fake_models):
    write_fake_model(fake_models / "new-image", "image", step_seconds=0.01)
    engine.host.recipe.registry.refresh()  # the window's copy; the child has its own
    engine.refresh_models()
    with qtbot.waitSignal(engine.job_finished, timeout=60_000):
        engine.submit(small("new-image", steps=1))


def test_an_engine_that_cannot_start_fails_the_job_with_one_sentence(qtbot, fake_models):
    thread = start(BrokenRecipe(ModelRegistry(), 1 << 30))
    try:
        with qtbot.waitSignal(thread.job_failed, timeout=60_000) as failed:
            thread.submit(small(steps=1))
        assert failed.args[2] == "The engine could not start (RuntimeError: no runner today)."
    finally:
        assert thread.stop()
    assert running_children() == []


def test_the_engine_process_forces_weights_only_loading(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setenv("HF_TOKEN", "secret")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    harden_environment()
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ and "HF_TOKEN" not in os.environ
    assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD")


def test_exit_codes_are_told_in_words():
    assert describe_exit(-11).startswith("SIGSEGV: a crash in native code")
    assert "killed" in describe_exit(-9)
    assert describe_exit(3) == "exit code 3"


@pytest.fixture
def misbehaving(qtbot, fake_models):
    write_fake_model(fake_models / "hang-image", "image", step_seconds=0.01, crash_at_step=2, crash="hang")
    write_fake_model(fake_models / "assert-image", "image", step_seconds=0.01, crash_at_step=2, crash="cuda-assert")
    thread = start(RunnerRecipe(ModelRegistry(), 1 << 30), cancel_grace_s=1.0)
    yield thread
    stopped_cleanly(thread)


def test_a_job_hung_in_native_code_is_ended_with_its_process_once_cancelled(qtbot, misbehaving):
    steps, cancelled = [], []
    misbehaving.job_progress.connect(lambda jid, step, total: steps.append(step))
    misbehaving.job_cancelled.connect(lambda jid, reason: cancelled.append(jid))
    hung = misbehaving.submit(small("hang-image", steps=4))
    qtbot.waitUntil(lambda: 1 in steps, timeout=60_000)
    first_pid = misbehaving.host.pid
    misbehaving.cancel(hung)
    qtbot.waitUntil(lambda: cancelled == [hung], timeout=30_000)  # after the 1 s grace, not after an hour
    with qtbot.waitSignal(misbehaving.job_finished, timeout=60_000):
        misbehaving.submit(small(steps=1))
    assert misbehaving.host.pid != first_pid


def test_a_cuda_error_that_breaks_the_device_fails_its_job_and_the_next_runs_in_a_new_process(qtbot, misbehaving):
    with qtbot.waitSignal(misbehaving.job_finished, timeout=60_000):
        misbehaving.submit(small(steps=1))
    first_pid = misbehaving.host.pid
    with qtbot.waitSignal(misbehaving.job_failed, timeout=60_000) as failed:
        misbehaving.submit(small("assert-image", steps=4))
    assert failed.args[1] == "runtime" and "device-side assert" in failed.args[2]
    with qtbot.waitSignal(misbehaving.job_finished, timeout=60_000):
        misbehaving.submit(small(steps=1))
    assert misbehaving.host.pid != first_pid  # the old process left: its CUDA context was broken


def test_a_job_cancelled_while_the_engine_process_starts_is_cancelled_and_the_next_runs(qtbot, fake_models):
    thread = start(RunnerRecipe(ModelRegistry(), 1 << 30))
    try:
        cancelled = []
        thread.job_cancelled.connect(lambda jid, reason: cancelled.append(jid))
        job = thread.submit(small(steps=1))
        thread.cancel(job)  # almost surely before the engine process has said "ready"
        qtbot.waitUntil(lambda: cancelled == [job], timeout=30_000)
        with qtbot.waitSignal(thread.job_finished, timeout=60_000):
            thread.submit(small(steps=1))
    finally:
        assert thread.stop()


@pytest.mark.parametrize("slow_part", ["shareable_path", "EngineChildProcess"])
def test_a_refresh_asked_for_while_the_engine_process_starts_reaches_it_after_its_setup(
    qtbot, fake_models, monkeypatch, slow_part
):
    """The window may find a new model and ask for a refresh at any moment, even while the engine
    thread is still starting the process: the refresh must reach the process, and only after its
    setup (before it, the start failed; lost, the new model was unknown there). One part of the
    start is slowed down so the refresh lands inside it every time."""
    import studio.engine.host.supervisor as process_module

    real = getattr(process_module, slow_part)
    started = threading.Event()

    def slow(*args):
        started.set()
        time.sleep(2.0)  # longer than writing the model and refreshing the window's registry below
        return real(*args)

    monkeypatch.setattr(process_module, slow_part, slow)
    thread = start(RunnerRecipe(ModelRegistry(), 1 << 30))
    try:
        assert started.wait(30)
        write_fake_model(fake_models / "late-image", "image", step_seconds=0.01)
        thread.host.recipe.registry.refresh()  # the window's copy, as the window does
        with qtbot.waitSignal(thread.job_finished, timeout=60_000):
            thread.refresh_models()  # inside the slowed part of the start
            thread.submit(small("late-image", steps=1))  # waits for this very start
        assert thread.host.starts == 1  # the first process took it: none failed to start and was replaced
    finally:
        stopped_cleanly(thread)
