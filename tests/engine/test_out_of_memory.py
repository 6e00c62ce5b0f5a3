"""Out of memory: one retry with the backend's memory saving and the other models unloaded, said
out loud; a second failure is a sentence with what to change; the engine stays usable."""

import pytest

from studio.core.events import Failed, Finished, Progress, Token
from studio.core.jobs import ImageJob, TextJob
from studio.engine.errors import classify
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from fake_models import write_fake_model
from run_jobs import run


@pytest.fixture
def runner(fake_models):
    write_fake_model(fake_models / "oom-once", "image", step_seconds=0.0, oom_at_step=2)
    write_fake_model(fake_models / "oom-always", "image", step_seconds=0.0, oom_at_step=2, oom="always")
    write_fake_model(fake_models / "oom-text", "text", step_seconds=0.0, oom_at_step=2)
    return Runner(ModelRegistry())


def image(model, **kw):
    return ImageJob(model=model, width=16, height=16, steps=3, **kw)


def test_a_job_that_runs_out_of_memory_runs_again_with_less_and_says_what_changed(runner):
    run(runner, image("fake-image"))  # another model in the cache, which the retry unloads
    events = run(runner, image("oom-once"))
    end = events[-1]
    assert isinstance(end, Finished)
    assert end.result.info.degraded == (
        "Ran out of memory, so it ran again with 1 other model unloaded, "
        "one image at a time (simulated); that can be slower."
    )
    # The first attempt got to step 1; the retry ran all three steps.
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 1, 2, 3]
    assert [key[0] for key in runner.cache.keys()] == ["oom-once"]
    # The model stays in its memory-saving mode, and its later results say so.
    later = run(runner, image("oom-once", seed=4))[-1]
    assert later.result.info.memory_saving == "one image at a time (simulated)"
    assert "degraded" not in later.result.info.to_dict()


def test_out_of_memory_even_with_memory_saving_is_a_sentence_with_what_to_change(runner):
    end = run(runner, image("oom-always"))[-1]
    assert isinstance(end, Failed) and end.kind == "out of memory"
    assert end.message.startswith("Out of memory even with one image at a time (simulated).")
    assert "smaller size" in end.message
    assert isinstance(run(runner, image("fake-image"))[-1], Finished)  # the engine is still usable


def test_text_that_has_started_streaming_is_not_run_again(runner):
    events = run(runner, TextJob(model="oom-text", prompt="x", max_new_tokens=4))
    assert isinstance(events[-1], Failed) and events[-1].kind == "out of memory"
    assert events[-1].message.startswith("Out of memory (CUDA out of memory.")
    assert sum(isinstance(e, Token) for e in events) == 1  # no second stream of tokens


def test_text_that_runs_out_of_memory_before_its_first_token_is_run_again(runner, fake_models):
    write_fake_model(fake_models / "oom-prefill", "text", step_seconds=0.0, oom_at_step=1)
    runner.registry.refresh()
    events = run(runner, TextJob(model="oom-prefill", prompt="x", max_new_tokens=4))
    assert isinstance(events[-1], Finished) and "degraded" in events[-1].result.info.to_dict()
    assert sum(isinstance(e, Token) for e in events) == 4


@pytest.mark.parametrize("text", ["CUDA out of memory. Tried to allocate 20 MiB", "CUDNN_STATUS_ALLOC_FAILED"])
def test_out_of_memory_is_recognised_in_library_errors(text):
    kind, message = classify(RuntimeError(text))
    assert kind.value == "out of memory" and message.startswith("Out of memory (")


def test_memory_saving_that_fails_to_turn_on_still_ends_the_job_with_a_sentence(runner, monkeypatch):
    from studio.engine.backends.fake import FakeBackend

    def broken(self):
        raise ValueError("this pipeline cannot be offloaded")

    monkeypatch.setattr(FakeBackend, "use_less_memory", broken)
    end = run(runner, image("oom-once"))[-1]
    assert isinstance(end, Failed) and end.kind == "out of memory"
    assert end.message.startswith("Out of memory, and memory saving could not be turned on (ValueError).")
