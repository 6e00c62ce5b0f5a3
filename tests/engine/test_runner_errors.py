"""Failures that used to escape the runner or reach the person as a library's raw text: a Rust
panic (not an Exception), a tokenizer stuck in its own regex, a prompt with a lone surrogate,
weights left on the meta device. Each ends its job with one sentence."""

from __future__ import annotations

import shutil

import pytest

from studio.bench.tiny_models import build_tiny_gpt2
from studio.core.errors import SpecError
from studio.core.jobs import ImageJob, TextJob
from studio.core.story import StoryContext
from studio.engine.backends import native
from studio.engine.backends.fake import FakeBackend
from studio.engine.errors import poisons_device
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import one_sentence_failure, run

# Oniguruma gives up on this pattern (its retry limit) and the tokenizers crate panics.
PANICKING = r"(a|a)+$"
PANIC_TEXT = "a" * 30 + "b"
# Backtracks in cubic time: a few hundred letters take seconds, 3 KB takes minutes.
SLOW = r"\w*\w*\w*\W"
SLOW_TEXT = "a" * 400


def with_split(folder, pattern):
    """The folder's tokenizer.json with a Split on `pattern` before its own pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    path = folder / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(pattern), behavior="isolated"), tokenizer.pre_tokenizer]
    )
    tokenizer.save(str(path))


@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-models")
    gpt2 = build_tiny_gpt2(root / "tiny")
    for name, pattern in (("panicky", PANICKING), ("slow", SLOW)):
        shutil.copytree(gpt2, root / name)
        with_split(root / name, pattern)
    return root


@pytest.fixture
def text_runner(text_models):
    return Runner(ModelRegistry([(text_models, "user")]))


def real_panic() -> BaseException:
    """A real pyo3_runtime.PanicException, from the tokenizers library itself."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(PANICKING), behavior="isolated")
    try:
        tokenizer.encode(PANIC_TEXT)
    except BaseException as exc:  # noqa: BLE001 - that is the point
        return exc
    raise AssertionError("the tokenizer did not panic")


def test_a_rust_panic_in_a_backend_ends_the_job_with_a_sentence(fake_models, monkeypatch):
    panic = real_panic()
    assert not isinstance(panic, Exception)  # why the runner once let it through

    def panics(self, spec, ctx):
        raise panic

    monkeypatch.setattr(FakeBackend, "generate_image", panics)
    events = run(Runner(ModelRegistry()), ImageJob(model="fake-image", steps=2, width=16, height=16))
    one_sentence_failure(
        events,
        "model file",
        ["A library reading the model's files failed inside", "retry-limit-in-match", "copy the model again."],
    )


def test_a_tokenizer_that_panics_is_a_sentence_about_the_tokenizer(text_runner):
    events = run(text_runner, TextJob(model="panicky", prompt=PANIC_TEXT, max_new_tokens=2))
    failed = one_sentence_failure(events, "model file", ["The model's tokenizer failed on this prompt", "retry-limit"])
    assert not poisons_device(failed.message)  # a panic is over when it is raised: nothing is left running
    # The engine carries on: the same model serves the next prompt.
    assert run(text_runner, TextJob(model="panicky", prompt="hello there", max_new_tokens=2))[-1].result.token_ids


@pytest.mark.timeout(120, method="thread")
def test_a_tokenizer_stuck_in_its_regex_fails_the_job_and_retires_the_engine(text_runner, monkeypatch):
    monkeypatch.setattr(native, "TOKENIZE_LIMIT_S", 0.2)
    events = run(text_runner, TextJob(model="slow", prompt=SLOW_TEXT, max_new_tokens=2))
    failed = one_sentence_failure(
        events,
        "model file",
        ["The model's tokenizer took longer than 0.2 s on a 400-character prompt", "cannot be interrupted"],
    )
    # The stuck thread cannot be stopped: the engine process that holds it exits after this job.
    assert poisons_device(failed.message)


def test_a_lone_surrogate_in_a_prompt_is_refused_naming_the_prompt():
    with pytest.raises(SpecError) as info:
        TextJob(model="tiny", prompt="say \ud800 this").validate()
    assert info.value.message == (
        "`prompt` holds characters that are not valid Unicode (a lone surrogate, U+D800, "
        "at character 5); remove it and try again."
    )


def test_a_lone_surrogate_in_a_story_is_a_sentence_not_a_type_error(text_runner):
    job = TextJob(model="tiny", story=StoryContext(text="Once \udc00 upon a time"), max_new_tokens=2)
    events = run(text_runner, job)
    one_sentence_failure(events, "bad input", ["not valid Unicode", "U+DC00"])


def test_weights_left_on_the_meta_device_are_a_sentence_about_missing_weights(fake_models, monkeypatch):
    import torch

    def load(cls, model, device, dtype):
        torch.nn.Linear(2, 2, device="meta").to("cpu")  # what loading a checkpoint without its weights ends in

    monkeypatch.setattr(FakeBackend, "load", classmethod(load))
    events = run(Runner(ModelRegistry()), ImageJob(model="fake-image", steps=2, width=16, height=16))
    failed = one_sentence_failure(events, "model file", ["weights were never loaded", "copy the model again."])
    assert "meta tensor" not in failed.message and "NotImplementedError" not in failed.message
