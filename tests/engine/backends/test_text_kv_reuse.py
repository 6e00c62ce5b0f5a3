"""Continue reuses the KV cache on the transformers backend: greedy continuations are exactly a
cold backend's, the model is fed only what changed, Stop leaves no cache behind; and, on the
Llama, the context shift (the oldest story trimmed) keeps the cached story after the cut with its
keys re-rotated to their new positions."""

import pytest
import torch

from studio.bench.tiny_models import build_tiny_gpt2, build_tiny_llama
from studio.core.events import Cancelled, ContextUsed, Token
from studio.core.jobs import TextJob
from studio.core.story import StoryContext
from studio.engine.backends.text.transformers_text import rotate_keys
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import finished, run

MODELS = ("tiny-gpt2", "tiny-llama")
MEMORY = "The quiet river ran under a lantern moon.\n"
STORY = (
    "Light falls differently in winter. The shadows are longer, the colours thinner. She wrote letters she never sent."
)
# The tiny models see 128 tokens: memory and story take 72, so a story grown by a continuation
# and a few words still fits beside the new tokens and is never trimmed by prompt assembly.


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kv-models")
    build_tiny_gpt2(root / "tiny-gpt2")
    build_tiny_llama(root / "tiny-llama")
    return root


@pytest.fixture(scope="module")
def warm(root):
    return Runner(ModelRegistry([(root, "user")]))


@pytest.fixture(scope="module")
def cold(root):
    return Runner(ModelRegistry([(root, "user")]))


def spec(model, prompt, **kw):
    base = dict(model=model, prompt=prompt, max_new_tokens=12, seed=1, temperature=0.0)
    return TextJob(**{**base, **kw})


def backend(runner, model):
    return runner.backend_for(spec(model, "x"))[0]


def cold_result(runner, job):
    backend(runner, job.model).reset_cache()
    return finished(run(runner, job))


def prompt_tokens(events) -> int:
    """The tokens the job's prompt came to, as given (prompt assembly trimmed nothing)."""
    (context,) = [e.context for e in events if isinstance(e, ContextUsed)]
    assert context.trimmed_chars == 0
    return context.tokens


class Fed:
    """Records each forward pass of a model (a forward pre-hook): where it starts (the tokens its
    cache already holds) and how many tokens it is fed."""

    def __init__(self, model):
        self.calls: list[tuple[int, int]] = []
        self._hook = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        cache = kwargs.get("cache")
        self.calls.append((cache.get_seq_length() if cache is not None else 0, kwargs["input_ids"].shape[1]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._hook.remove()

    def prompt(self, length: int) -> int:
        """How many of a `length`-token prompt's tokens the model was fed."""
        return sum(min(n, length - start) for start, n in self.calls if start < length)


@pytest.mark.parametrize("model", MODELS)
def test_greedy_continuations_reusing_the_cache_are_exactly_a_cold_backends(warm, cold, model):
    b = backend(warm, model)
    b.reset_cache()
    first = finished(run(warm, spec(model, MEMORY + STORY)))
    assert b.reused_tokens == 0
    # The story grew at its end: the model's own words and a few typed ones.
    grown = spec(model, MEMORY + STORY + first.text + " Boats")
    with Fed(b.model) as fed:
        events = run(warm, grown)
    length = prompt_tokens(events)
    assert len(b.encode(MEMORY + STORY)) - 1 <= b.reused_tokens < length
    assert fed.prompt(length) == length - b.reused_tokens
    assert finished(events).token_ids == cold_result(cold, grown).token_ids
    # Only the memory is the same; the rest of the story changed.
    other = spec(model, MEMORY + "Numbers help too: 1, 2, 3, 10, 42. Punctuation as well.")
    with Fed(b.model) as fed:
        events = run(warm, other)
    memory_tokens = len(b.encode(MEMORY))
    assert memory_tokens - 1 <= b.reused_tokens <= memory_tokens  # a seam token may merge
    length = prompt_tokens(events)
    assert fed.prompt(length) == length - b.reused_tokens
    assert finished(events).token_ids == cold_result(cold, other).token_ids
    assert b.shifted_tokens == 0


@pytest.mark.parametrize("model", MODELS)
def test_the_same_prompt_again_feeds_one_token_and_gives_the_same_text(warm, model):
    """Retry: everything is cached but the last prompt token, fed for the next token's logits."""
    b = backend(warm, model)
    job = spec(model, MEMORY + STORY, temperature=0.9, seed=5)
    first = finished(run(warm, job))
    with Fed(b.model) as fed:
        events = run(warm, job)
    assert fed.calls[0] == (prompt_tokens(events) - 1, 1) and b.reused_tokens == prompt_tokens(events) - 1
    assert finished(events).token_ids == first.token_ids


def test_stop_mid_job_leaves_no_cache_behind(warm):
    b = backend(warm, "tiny-gpt2")
    job = spec("tiny-gpt2", MEMORY + STORY, max_new_tokens=20)
    finished(run(warm, job))

    def stop_after_3(running, event):
        seen.append(event)
        if isinstance(event, Token) and sum(isinstance(e, Token) for e in seen) == 3:
            running.cancel.set()

    seen = []
    assert isinstance(run(warm, job, stop_after_3)[-1], Cancelled)
    with Fed(b.model) as fed:
        events = run(warm, job)
    assert b.reused_tokens == 0 and fed.calls[0] == (0, prompt_tokens(events))


# --------------------------------------------------------------------------------------------
# Context shift (RoPE)


def layer_keys(model, ids, start=0):
    """Every layer's keys and values for `ids` placed at positions start, start + 1, ..."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(
            input_ids=torch.tensor([ids]),
            position_ids=torch.arange(start, start + len(ids))[None],
            cache=cache,
            use_cache=True,
        )
    return [(layer.keys, layer.values) for layer in cache.layers]


def test_re_rotated_keys_equal_keys_computed_at_the_new_positions(warm):
    """RoPE attention sees relative positions only, so a text placed d positions later has the same
    values everywhere and keys rotated d further: rotating them back by -d must give the keys a
    run at positions 0.. computes (every layer, not only the first)."""
    b = backend(warm, "tiny-llama")
    ids = b.encode(STORY)[:40]
    rotary = b.model.model.rotary_emb
    at_zero, later = layer_keys(b.model, ids), layer_keys(b.model, ids, start=57)
    for (keys, values), (moved_keys, moved_values) in zip(at_zero, later):
        assert not torch.allclose(moved_keys, keys, atol=1e-3)  # the positions do show in the keys
        torch.testing.assert_close(rotate_keys(rotary, moved_keys, -57), keys, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(moved_values, values, atol=1e-5, rtol=1e-4)


# Stories longer than the tiny window, so prompt assembly trims their beginning: at a sentence
# start, which keeps the first kept word's tokens as they were, or (no sentences) at a word start,
# where " s" mid-text becomes "\n" + "s" after the memory: one token the cache does not hold, fed
# between the memory and the kept run.
LONG_STORIES = {
    "at-a-sentence": (
        "Light falls differently in winter. The shadows are longer, the colours thinner. "
        "She wrote letters she never sent. In the morning the fishermen mended their nets. "
    )
    * 2,
    "at-a-word": (
        "light falls, shadows longer, colours thinner, letters never sent, fishermen mended nets, "
        "gulls argued, harbour wall, boats drifted, "
    )
    * 3,
}


def story_job(text, model="tiny-llama", **kw):
    story = StoryContext(text, memory=MEMORY.strip())
    return spec(model, "", story=story, **{"temperature": 0.8, "seed": 3, **kw})


def trimmed_tokens(events) -> int:
    """The tokens of a job's prompt, whose story's beginning did not fit."""
    (context,) = [e.context for e in events if isinstance(e, ContextUsed)]
    assert context.trimmed_chars > 0
    return context.tokens


def shift_scenario(runner, story, model="tiny-llama"):
    """A long story continued, then continued again with the model's words and one typed: prompt
    assembly trims a little more of its beginning. The second job's prompt length, what the Llama
    was fed for it, and what it wrote."""
    b = backend(runner, model)
    b.reset_cache()
    first = run(runner, story_job(story, model=model))
    trimmed_tokens(first)
    with Fed(b.model) as fed:
        events = run(runner, story_job(story + finished(first).text + " Gulls", model=model))
    return b, trimmed_tokens(events), fed, finished(events)


@pytest.mark.parametrize("cut", sorted(LONG_STORIES))
def test_a_trimmed_story_is_shifted_not_reread_and_the_cache_is_what_a_fresh_read_makes(warm, cut):
    b, length, fed, result = shift_scenario(warm, LONG_STORIES[cut])
    memory = len(b.encode(MEMORY))
    assert b.shifted_tokens > 0 and b.reused_tokens > memory + 20
    assert fed.prompt(length) == length - b.reused_tokens < length // 2
    if cut == "at-a-word":  # the new token between the memory and the kept run went in first, alone
        assert fed.calls[0] == (memory, 1)
    # Layer 0 reads no other token: its keys and values for the cached prompt must be exactly those
    # of a fresh read. This checks the memory was kept, the right tokens kept at the right positions,
    # and the keys rotated right.
    prompt = b._kv.ids[:length]
    assert prompt[:memory] == b.encode(MEMORY)
    cached = b._kv.cache.layers[0]
    fresh_keys, fresh_values = layer_keys(b.model, prompt)[0]
    torch.testing.assert_close(cached.keys[..., :length, :], fresh_keys, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cached.values[..., :length, :], fresh_values, atol=1e-5, rtol=1e-4)
    # Deeper layers read the dropped sentence when they were computed: close, not equal (the trade
    # ContextShift makes), so the continuation need not be a cold run's. The same seed still gives
    # the same text.
    assert shift_scenario(warm, LONG_STORIES[cut])[3].token_ids == result.token_ids


def test_an_edit_inside_a_story_that_fits_is_read_again_never_shifted(warm, cold):
    """Deleting a sentence leaves the rest of the story in the cache, but its KV still carries what
    was deleted: only a trimmed story shifts; here the text after the edit is read again, exactly."""
    b = backend(warm, "tiny-llama")
    b.reset_cache()
    finished(run(warm, story_job(STORY, temperature=0.0)))
    edited = story_job(STORY.replace("Light falls differently in winter. ", ""), temperature=0.0)
    events = run(warm, edited)
    assert prompt_tokens(events) > len(b.encode(MEMORY)) + 30  # a long run of the cache follows the edit
    assert b.shifted_tokens == 0 and b.reused_tokens <= len(b.encode(MEMORY))
    assert finished(events).token_ids == cold_result(cold, edited).token_ids


def test_a_learned_position_table_never_shifts_it_rereads_after_the_common_prefix(warm):
    """GPT-2's positions are a learned table added to the input, not a rotation of the keys: its
    cache cannot be moved, so a trimmed story is read again after the memory."""
    b, length, fed, _ = shift_scenario(warm, LONG_STORIES["at-a-sentence"], model="tiny-gpt2")
    assert b.shifted_tokens == 0 and b.reused_tokens <= len(b.encode(MEMORY))
    assert fed.prompt(length) == length - b.reused_tokens
