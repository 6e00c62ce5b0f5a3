"""The llama.cpp backend on real GGUF files converted in the test from tiny random GPT-2 and Llama
folders: streaming, seeds, Stop within one token, alternatives, bans, stop sequences, instruct mode
with the GGUF's own chat template, the sampler order, and Continue reusing (and shifting) the KV
cache with exactly the tokens a cold run gives."""

import json
import shutil
import threading

import numpy as np
import pytest

from studio.bench.tiny_models import build_tiny_gpt2, build_tiny_llama
from studio.core.events import Cancelled, ContextUsed, Token
from studio.core.jobs import ContextJob, TextJob
from studio.core.story import StoryContext
from studio.engine.backends.job_context import JobContext
from studio.engine.runner import Runner
from studio.models.gguf_convert import convert_to_gguf
from studio.models.registry import ModelRegistry

from run_jobs import finished, run, tokens

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
STORY = (
    "The lighthouse keeper climbed the stairs every evening. She lit the lamp and watched the ships "
    "pass the rocks. In the morning she wrote down every ship she had seen, and the weather, and the sea. "
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf-models")
    work = tmp_path_factory.mktemp("hf")
    gpt2 = build_tiny_gpt2(work / "gpt2")
    llama = build_tiny_llama(work / "llama")
    convert_to_gguf(gpt2, root / "tiny-gpt2.gguf", "f32")
    convert_to_gguf(llama, root / "tiny-llama.gguf", "f32")
    # The same Llama with a ChatML chat template in its tokenizer config, so in the GGUF.
    shutil.copytree(llama, work / "chat")
    config_path = work / "chat" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHATML
    config_path.write_text(json.dumps(config))
    (root / "chat-llama").mkdir()
    convert_to_gguf(work / "chat", root / "chat-llama" / "model.gguf", "f32")
    return root


@pytest.fixture(scope="module")
def runner(root):
    return Runner(ModelRegistry([(root, "user")]))


class _Quiet:
    def context_used(self, context):
        pass


QUIET = _Quiet()  # a job context for prompt_ids outside a job


def job(model="tiny-gpt2", **fields):
    fields.setdefault("max_new_tokens", 12)
    fields.setdefault("prompt", "the sea")
    return TextJob(model=model, **fields)


def backend(runner, model):
    return runner.backend_for(job(model))[0]


def test_gguf_models_are_listed_with_what_their_header_says(runner):
    models = {m.id: m for m in runner.registry.models("text")}
    gpt2, chat = models["tiny-gpt2"], models["chat-llama"]
    assert gpt2.format == "gguf" and gpt2.runtimes == ("llama.cpp",)
    assert "gpt2" in gpt2.details and "F32" in gpt2.details and "128 ctx" in gpt2.details
    assert gpt2.context_length == 128 and not gpt2.has_chat_template
    assert chat.has_chat_template and "chat template" in chat.details and "llama" in chat.details


def test_tokens_stream_and_make_the_text(runner):
    events = run(runner, job(temperature=0.0))
    result = finished(events)
    streamed = tokens(events)
    assert len(streamed) == result.info.tokens == len(result.token_ids) > 0
    assert "".join(t.text for t in streamed) == result.text
    assert result.info.runtime == "llama.cpp" and result.info.dtype == "F32"
    assert any(isinstance(e, ContextUsed) for e in events)


def test_the_same_seed_gives_the_same_text_and_another_seed_another(runner):
    texts = [finished(run(runner, job(seed=s, temperature=1.5, max_new_tokens=24))).text for s in (7, 7, 8)]
    assert texts[0] == texts[1] != texts[2]


def test_alternatives_are_the_top_five_of_the_drawn_distribution(runner):
    for token in tokens(run(runner, job(temperature=0.0))):
        probabilities = [p for _, p in token.alternatives]
        assert len(token.alternatives) == 5
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-6
    # With top-k 2 only two candidates are left, and theirs is the whole distribution.
    for token in tokens(run(runner, job(temperature=1.0, top_k=2, seed=1))):
        assert len(token.alternatives) == 2
        assert sum(p for _, p in token.alternatives) == pytest.approx(1.0, abs=1e-5)


def test_stop_lands_within_one_token(runner):
    def on_event(j, event):
        if isinstance(event, Token) and len([1 for _ in seen]) == 0:
            seen.append(event)
            j.cancel.set()

    seen: list = []
    events = run(runner, job(temperature=0.0, max_new_tokens=50), on_event)
    assert isinstance(events[-1], Cancelled)
    assert len(tokens(events)) == 1


def test_a_banned_phrase_never_appears_and_a_stop_sequence_ends_the_text(runner):
    free = finished(run(runner, job(temperature=0.0, max_new_tokens=40))).text
    word = free.split()[1] if len(free.split()) > 1 else free.strip()[:2]
    banned = finished(run(runner, job(temperature=0.0, max_new_tokens=40, banned=(word,)))).text
    assert word.lower() not in banned.lower()
    cut = free[: free.index(word)]
    stopped = finished(run(runner, job(temperature=0.0, max_new_tokens=40, stop=(word,)))).text
    assert stopped == cut


def test_instruct_mode_renders_the_ggufs_own_chat_template(runner):
    context = finished(run(runner, ContextJob(model="chat-llama", prompt="Write a line.", instruct=True)))
    assert context.prompt.startswith("<|im_start|>user\nWrite a line.<|im_end|>\n<|im_start|>assistant\n")
    refused = run(runner, job(instruct=True))
    assert "no chat template" in refused[-1].message


def test_min_p_sees_the_tempered_distribution_as_on_the_transformers_backend(runner):
    """The studio's order: temperature, then top-k, top-p, min-p (llama.cpp's default applies
    temperature last). At T=2 the distribution is flatter, so min-p keeps more tokens than at T=1;
    the kept set equals what the transformers chain keeps for the same logits."""
    import torch
    from transformers import TemperatureLogitsWarper

    from studio.engine.backends.text.sampling import MinP

    model = backend(runner, "tiny-gpt2")
    logits = np.random.default_rng(0).normal(0, 3, model.n_vocab).astype(np.float32)
    kept = {}
    for temperature in (1.0, 2.0):
        spec = job(temperature=temperature, min_p=0.2)
        chain = model._sampler(spec, [])
        ids, _, _ = model.apply_chain(chain, logits, set())
        chain.close()
        kept[temperature] = set(ids.tolist())
        scores = MinP(0.2)(None, TemperatureLogitsWarper(temperature)(None, torch.tensor(logits)[None]))
        assert kept[temperature] == set(torch.isfinite(scores[0]).nonzero().flatten().tolist())
    assert kept[1.0] < kept[2.0]


def test_xtc_removes_the_top_choices_but_the_least_likely_of_them(runner):
    model = backend(runner, "tiny-gpt2")
    logits = np.full(model.n_vocab, -20.0, dtype=np.float32)
    logits[[3, 4, 5]] = [2.0, 1.5, 1.0]  # all three well above a 0.1 threshold
    chain = model._sampler(job(temperature=1.0, xtc_probability=1.0, xtc_threshold=0.1), [])
    ids, _, _ = model.apply_chain(chain, logits, set())
    chain.close()
    assert 3 not in ids and 4 not in ids and 5 in ids


def continue_story(runner, model, text, memory="", cold=False, **fields):
    """A greedy Continue of `text` on the resident backend (its cache emptied first when `cold`)."""
    if cold:
        backend(runner, model).reset_cache()
    spec = job(model, prompt="", story=StoryContext(text=text, memory=memory), temperature=0.0, **fields)
    return finished(run(runner, spec)).token_ids


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_a_reused_cache_gives_exactly_the_tokens_of_a_cold_run(runner, model):
    first = STORY[:120]
    continue_story(runner, model, first, cold=True)
    grown = first + "The keeper smiled"
    warm = continue_story(runner, model, grown)
    assert backend(runner, model).reused_tokens > 10  # the story's start came from the cache
    cold = continue_story(runner, model, grown, cold=True)
    assert backend(runner, model).reused_tokens == 0
    assert warm == cold


def test_a_full_window_is_shifted_keeping_memory_not_read_again(runner):
    """The story outgrows tiny-llama's 128-token window: the assembly drops its oldest tokens, and
    the cache drops the same ones and moves the rest down instead of reading everything again."""
    model = backend(runner, "tiny-llama")
    memory = "Memory: a lighthouse."
    story, grown = STORY * 3, STORY * 3 + "A storm came up the coast that night. The ships stayed in the harbour. "
    continue_story(runner, "tiny-llama", story, memory, cold=True)
    before = len(model.cached)
    again = continue_story(runner, "tiny-llama", grown, memory)
    assert model.shifted_tokens > 0
    assert model.reused_tokens > before // 2  # most of the window came from the cache
    memory_ids = model.encode(memory)
    assert model.cached[: len(memory_ids)] == memory_ids  # memory kept at the top
    # After the shift the cache holds exactly the new prompt's tokens, then what was generated.
    prompt = model.prompt_ids(job("tiny-llama", prompt="", story=StoryContext(text=grown, memory=memory)), QUIET)
    assert model.cached[: len(prompt)] == prompt
    # Shifting is deterministic: the same sequence of Continues gives the same tokens.
    continue_story(runner, "tiny-llama", story, memory, cold=True)
    assert continue_story(runner, "tiny-llama", grown, memory) == again


def test_an_edit_inside_the_story_is_read_again_not_shifted(runner):
    """Only a trimmed story is shifted: after a deletion mid-story, the text after it was computed
    attending to what the writer deleted, so it is read again, exactly as a cold run reads it."""
    model = backend(runner, "tiny-llama")
    story = STORY[:200]
    continue_story(runner, "tiny-llama", story, cold=True)
    edited = story.replace("She lit the lamp and watched the ships pass the rocks. ", "")
    warm = continue_story(runner, "tiny-llama", edited)
    assert model.shifted_tokens == 0 and model.reused_tokens > 0
    assert warm == continue_story(runner, "tiny-llama", edited, cold=True)


def test_gpt2_cannot_shift_and_reads_the_window_again(runner):
    model = backend(runner, "tiny-gpt2")
    assert not model.can_shift and backend(runner, "tiny-llama").can_shift
    story = STORY * 3
    continue_story(runner, "tiny-gpt2", story, "Memory.", cold=True, max_new_tokens=8)
    warm = continue_story(runner, "tiny-gpt2", story + "A storm came. ", "Memory.")
    assert model.shifted_tokens == 0
    assert warm == continue_story(runner, "tiny-gpt2", story + "A storm came. ", "Memory.", cold=True)


def test_stop_during_a_long_prompt_keeps_the_cache_consistent(runner):
    model = backend(runner, "tiny-llama")
    model.reset_cache()
    cancel = threading.Event()
    cancel.set()
    ctx = JobContext(1, cancel, lambda event: None)
    with pytest.raises(Exception):
        model._evaluate(model.encode(STORY), ctx, trimmed=False)
    assert len(model.cached) == model.llm.n_tokens
