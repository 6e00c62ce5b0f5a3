"""The transformers text backend on real (tiny, random) GPT-2 and Llama models, through the Runner:
streaming tokens, seeds, cancel within one token, alternatives, refused and broken folders."""

import dataclasses
import json
import shutil

import pytest
import torch

from studio.bench.tiny_models import build_tiny_gpt2, build_tiny_llama
from studio.core.events import (
    TERMINAL_EVENTS,
    Cancelled,
    ContextResult,
    ContextUsed,
    Failed,
    Finished,
    RunInfo,
    Started,
    Token,
)
from studio.core.jobs import ContextJob, TextJob
from studio.core.story import StoryContext, WorldInfoEntry
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import finished, one_sentence_failure, run, tokens

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-models")
    gpt2 = build_tiny_gpt2(root / "tiny-gpt2")
    llama = build_tiny_llama(root / "tiny-llama")
    # The same Llama with a ChatML-style chat template, for instruct mode.
    shutil.copytree(llama, root / "chat-llama")
    config_path = root / "chat-llama" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHATML
    config_path.write_text(json.dumps(config))
    # A folder that asks for its authors' Python code: refused, never run.
    shutil.copytree(gpt2, root / "custom-code")
    config = json.loads((root / "custom-code" / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (root / "custom-code" / "config.json").write_text(json.dumps(config))
    # Weights cut short by an interrupted copy.
    shutil.copytree(gpt2, root / "truncated")
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    # A tokenizer that loads without complaint and knows no words.
    from tokenizers import Tokenizer
    from tokenizers import models as tok_models

    shutil.copytree(gpt2, root / "empty-tokenizer")
    Tokenizer(tok_models.BPE()).save(str(root / "empty-tokenizer" / "tokenizer.json"))
    return root


@pytest.fixture(scope="module")
def runner(models):
    return Runner(ModelRegistry([(models, "user")]))


@pytest.fixture(scope="module")
def tokenizer(models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(models / "tiny-gpt2"), local_files_only=True)


def spec(**kw):
    base = dict(model="tiny-gpt2", prompt="The quiet river", max_new_tokens=12, seed=1, temperature=0.8)
    return TextJob(**{**base, **kw})


def test_tokens_stream_before_the_result_and_add_up_to_it(runner):
    events = run(runner, spec())
    assert isinstance(events[0], Started)
    assert sum(isinstance(e, TERMINAL_EVENTS) for e in events) == 1
    result = finished(events)
    streamed = tokens(events)
    assert isinstance(events[1], ContextUsed) and events[1].context.prompt == "The quiet river"
    assert streamed and all(isinstance(e, Token) for e in events[2:-1])  # every token before Finished
    assert "".join(t.text for t in streamed) == result.text
    assert tuple(t.token_id for t in streamed) == result.token_ids
    assert 1 <= len(streamed) <= 12 and result.info.tokens == len(streamed)
    assert result.info.runtime == "torch" and result.info.device == "cpu"


def test_same_seed_same_text_and_the_global_rng_is_left_alone(runner):
    state = torch.random.get_rng_state()
    first = finished(run(runner, spec(seed=5, max_new_tokens=16)))
    assert torch.equal(state, torch.random.get_rng_state())
    torch.manual_seed(999)
    again = finished(run(runner, spec(seed=5, max_new_tokens=16)))
    other = finished(run(runner, spec(seed=6, max_new_tokens=16)))
    assert first.text == again.text and first.token_ids == again.token_ids
    assert first.token_ids != other.token_ids


def test_cancel_lands_within_one_token(runner):
    def cancel_after_3(job, event):
        if isinstance(event, Token) and len([e for e in seen if isinstance(e, Token)]) == 3:
            job.cancel.set()

    seen = []
    events = run(runner, spec(max_new_tokens=20), lambda job, e: (seen.append(e), cancel_after_3(job, e)))
    assert isinstance(events[-1], Cancelled)
    assert len(tokens(events)) == 3


def test_alternatives_are_probabilities_best_first(runner, tokenizer):
    for event in tokens(run(runner, spec(temperature=1.0))):
        probs = [p for _, p in event.alternatives]
        assert 1 <= len(probs) <= 5
        assert probs == sorted(probs, reverse=True)
        assert all(0.0 <= p <= 1.0 for p in probs) and sum(probs) <= 1.0 + 1e-6


def test_greedy_alternatives_lead_with_the_chosen_token(runner, tokenizer):
    streamed = tokens(run(runner, spec(temperature=0.0)))
    assert streamed
    for event in streamed:
        assert event.alternatives[0][0] == tokenizer.decode([event.token_id])


def test_alternatives_see_the_warped_distribution(runner):
    """With top_k=3 the sampler only sees three tokens, so their probabilities add up to one and
    the chosen token is always one of them."""
    streamed = tokens(run(runner, spec(temperature=1.0, top_k=3, max_new_tokens=8)))
    assert streamed
    for event in streamed:
        assert len(event.alternatives) == 5
        assert sum(p for _, p in event.alternatives[:3]) == pytest.approx(1.0, abs=1e-4)
        assert all(p == 0.0 for _, p in event.alternatives[3:])


def test_an_empty_prompt_starts_from_the_start_token(runner):
    result = finished(run(runner, spec(prompt="", temperature=1.0, seed=3, max_new_tokens=6)))
    assert len(result.token_ids) >= 1


def test_tiny_llama_streams_too(runner):
    events = run(runner, spec(model="tiny-llama", prompt="She wrote letters", max_new_tokens=8))
    result = finished(events)
    assert "".join(t.text for t in tokens(events)) == result.text and len(tokens(events)) >= 1


def test_a_folder_that_needs_custom_code_is_refused(runner, models):
    # Listed as a problem, not a model ...
    assert [p.path.name for p in runner.registry.problems] == ["custom-code"]
    assert "custom" in runner.registry.problems[0].message
    # ... and refused when named by its path.
    failed = run(runner, spec(model=str(models / "custom-code")))[-1]
    assert isinstance(failed, Failed) and failed.kind == "model file"
    assert "custom" in failed.message and "\n" not in failed.message


@pytest.mark.parametrize(
    "model, words",
    [("truncated", ["model.safetensors", "incomplete", "copy it again"]), ("empty-tokenizer", ["tokenizer", "empty"])],
)
def test_a_broken_folder_fails_with_one_sentence_and_the_runner_carries_on(runner, model, words):
    one_sentence_failure(run(runner, spec(model=model)), "model file", words)
    assert finished(run(runner, spec())).text is not None


def test_transformers_is_told_never_to_trust_remote_code(models, monkeypatch):
    import transformers

    from studio.engine.backends.text.transformers_text import TransformersTextBackend

    seen = {}
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        real = cls.from_pretrained

        def spy(*args, _real=real, _name=cls.__name__, **kwargs):
            seen[_name] = kwargs
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    model = ModelRegistry([(models, "user")]).resolve("tiny-gpt2")
    TransformersTextBackend.load(model, "cpu", "float32").close()
    assert set(seen) == {"AutoTokenizer", "AutoModelForCausalLM"}
    assert all(kwargs["trust_remote_code"] is False for kwargs in seen.values())


# -- the prompt, assembled on the engine with the model's own tokenizer ---------------------------------


def story_spec(story: StoryContext, **kw) -> TextJob:
    return spec(prompt="", story=story, **kw)


def used(events) -> ContextResult:
    (context,) = [e.context for e in events if isinstance(e, ContextUsed)]
    return context


def test_a_story_is_assembled_with_real_token_counts_memory_kept_oldest_text_trimmed(runner, tokenizer):
    """tiny-gpt2 sees 128 tokens; its byte-level tokenizer spends about a token a character, so
    most of a long story cannot fit: the memory stays, the story's beginning goes."""
    window = runner.backend_for(spec())[0].context_length
    story = " ".join(f"Day {i}. The river rose." for i in range(60))
    entry = WorldInfoEntry(("river",), "Rivers here run uphill.")
    events = run(
        runner, story_spec(StoryContext(story, memory="A tale of Lune.", world_info=(entry,)), max_new_tokens=16)
    )
    context = used(events)
    assert context.context_length == window
    assert context.prompt.startswith("A tale of Lune.\nRivers here run uphill.\n")
    assert context.prompt.endswith("Day 59. The river rose.")
    assert context.trimmed_chars > 0 and context.world_info == (0,)
    encoded = len(tokenizer(context.prompt)["input_ids"])
    assert context.tokens == encoded <= window - 16  # measured, and it fits beside the new tokens
    roles = [role for role, *_ in context.parts]
    assert roles == ["memory", "world_info", "story"]
    assert "".join(context.prompt[s:e] for _, s, e in context.parts) == context.prompt
    assert finished(events).text


def test_the_context_job_reports_the_same_prompt_without_generating(runner):
    story = StoryContext("The quiet river", memory="Memory.")
    job = story_spec(story, max_new_tokens=8, seed=4)
    generated = used(run(runner, job))
    events = run(runner, ContextJob.of(job))
    assert not [e for e in events if isinstance(e, Token)]
    assert dataclasses.replace(finished(events), info=RunInfo()) == generated


def test_instruct_mode_renders_the_chat_template_in_the_sandbox(runner):
    story = StoryContext("Write about a heron.", memory="You are a poet.")
    job = story_spec(story, model="chat-llama", instruct=True, max_new_tokens=4)
    context = dataclasses.replace(finished(run(runner, ContextJob.of(job))), info=RunInfo())
    assert context.prompt == (
        "<|im_start|>system\nYou are a poet.<|im_end|>\n"
        "<|im_start|>user\nWrite about a heron.<|im_end|>\n<|im_start|>assistant\n"
    )
    parts = {role: context.prompt[s:e] for role, s, e in context.parts if role != "template"}
    assert parts == {"memory": "You are a poet.", "story": "Write about a heron."}
    events = run(runner, job)
    assert used(events) == context and isinstance(events[-1], Finished)


def test_instruct_mode_without_a_chat_template_is_refused_naming_the_field(runner):
    events = run(runner, spec(model="tiny-llama", instruct=True))
    assert isinstance(events[-1], Failed) and "instruct" in events[-1].message
    assert "chat template" in events[-1].message
