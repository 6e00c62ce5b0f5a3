"""The TextJob samplers (min-p, repetition penalty with a range, DRY, banned phrases, stop
sequences): each processor on hand-made logits, then all of them through the Runner on the tiny
GPT-2 and Llama models (random weights: nearly uniform distributions, so the tests build their
phrases and stop sequences from what a seed produces without them)."""

import math
import random
import time

import pytest
import torch

from studio.bench.tiny_models import build_tiny_gpt2, build_tiny_llama
from studio.core.events import Cancelled, Finished, Token
from studio.core.jobs import TextJob
from studio.engine.backends.text.sampling import (
    DRY_SEQUENCE_BREAKERS,
    BannedPhrases,
    DRYPenalty,
    MinP,
    RepetitionPenalty,
    StopText,
    Vocabulary,
)
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import run

MODELS = ("tiny-gpt2", "tiny-llama")


# --------------------------------------------------------------------------------------------
# Hand-made logits


def logits(probs):
    return torch.tensor([[math.log(p) for p in probs]])


def test_min_p_removes_exactly_the_tokens_below_the_threshold():
    probs = [0.4, 0.3, 0.15, 0.1, 0.05]
    out = MinP(0.3)(None, logits(probs))  # threshold 0.3 * 0.4 = 0.12
    assert torch.isfinite(out[0]).tolist() == [True, True, True, False, False]
    assert torch.equal(out[0, :3], logits(probs)[0, :3])  # the kept ones are untouched
    assert torch.isfinite(MinP(1.0)(None, logits(probs))[0]).tolist() == [True, False, False, False, False]
    assert torch.isfinite(MinP(0.01)(None, logits(probs))[0]).all()
    two_rows = MinP(0.5)(None, torch.cat([logits(probs), logits(probs[::-1])]))
    assert torch.isfinite(two_rows).sum(dim=-1).tolist() == [2, 2]


def test_repetition_penalty_only_touches_tokens_within_the_range_once_each():
    scores = torch.tensor([[2.0, -2.0, 1.0, -1.0, 4.0, 0.5]])
    ids = torch.tensor([[4, 0, 1, 1, 1, 3]])  # 4 and 0 fall outside a range of 4; 1 occurs 3 times
    out = RepetitionPenalty(2.0, last_n=4)(ids, scores)
    assert out[0].tolist() == [2.0, -4.0, 1.0, -2.0, 4.0, 0.5]
    every = RepetitionPenalty(2.0, last_n=0)(ids, scores)
    assert every[0].tolist() == [1.0, -4.0, 1.0, -2.0, 2.0, 0.5]
    assert scores[0].tolist() == [2.0, -2.0, 1.0, -1.0, 4.0, 0.5]  # the input is left alone
    # A penalty below one rewards repeats by the same rule.
    assert RepetitionPenalty(0.5, last_n=1)(ids, scores)[0, 3].item() == -0.5


def naive_dry(context, multiplier, base, allowed, breakers, max_match=50):
    """The definition, spelt out: for every earlier occurrence of the last token, walk back while
    the tokens agree with the context's end and are not breakers."""
    x = list(context)
    best = {}
    if not x or x[-1] in breakers:
        return {}
    for i in range(len(x) - 1):
        nxt = x[i + 1]
        if x[i] != x[-1] or nxt in breakers:
            continue
        n = 0
        while n < max_match and i - n >= 0 and x[i - n] == x[len(x) - 1 - n] and x[len(x) - 1 - n] not in breakers:
            n += 1
        best[nxt] = max(best.get(nxt, 0), n)
    return {t: multiplier * base ** (n - allowed) for t, n in best.items() if n >= allowed}


def test_dry_penalises_the_token_that_would_extend_a_repeat_by_the_right_amount():
    dry = DRYPenalty(0.8, 1.75, 2, breaker_ids=())
    # "1 2 3" occurred before, followed by 4; "2 3" also occurred followed by 5.
    context = [1, 2, 3, 4, 9, 2, 3, 5, 8, 1, 2, 3]
    assert dry.penalties(context) == pytest.approx({4: 0.8 * 1.75**1, 5: 0.8})
    scores = torch.zeros(1, 10)
    out = dry(torch.tensor([context]), scores)
    expected = torch.zeros(10)
    expected[4], expected[5] = -0.8 * 1.75, -0.8
    assert torch.allclose(out[0], expected) and scores.abs().sum() == 0
    # A repeat shorter than the allowed length is free.
    assert DRYPenalty(0.8, 1.75, 4, breaker_ids=()).penalties(context) == {}
    assert DRYPenalty(0.8, 1.75, 3, breaker_ids=()).penalties(context) == pytest.approx({4: 0.8})


def test_dry_sequence_breakers_stop_a_match():
    b = 0  # the breaker token
    context = [7, 1, 2, 3, 4, 9, 7, 1, 2, 3]
    assert DRYPenalty(1.0, 2.0, 2, breaker_ids=()).penalties(context) == {4: 4.0}  # n = 4
    broken = [b, 1, 2, 3, 4, 9, b, 1, 2, 3]
    assert DRYPenalty(1.0, 2.0, 2, breaker_ids=()).penalties(broken) == {4: 4.0}
    assert DRYPenalty(1.0, 2.0, 2, breaker_ids={b}).penalties(broken) == {4: 2.0}  # n = 3: stops at b
    # No penalty when the context ends with a breaker, nor on a breaker that would come next.
    assert DRYPenalty(1.0, 2.0, 2, breaker_ids={b}).penalties([1, 2, b, 9, 1, 2, b]) == {}
    assert DRYPenalty(1.0, 2.0, 2, breaker_ids={b}).penalties([1, 2, b, 9, 1, 2]) == {}
    assert DRYPenalty(1.0, 2.0, 2, breaker_ids=()).penalties([1, 2, b, 9, 1, 2]) == {b: 1.0}


def test_dry_matches_the_definition_on_random_contexts():
    rng = random.Random(0)
    for trial in range(200):
        vocab = rng.choice([3, 5, 8])
        context = [rng.randrange(vocab) for _ in range(rng.randrange(1, 120))]
        breakers = {0} if trial % 2 else set()
        allowed, cap = rng.choice([1, 2, 3]), rng.choice([4, 50])
        fast = DRYPenalty(1.0, 1.5, allowed, breaker_ids=breakers, max_match=cap).penalties(context)
        assert fast == pytest.approx(naive_dry(context, 1.0, 1.5, allowed, breakers, cap)), context


class FakeTokenizer:
    """A made-up vocabulary and a greedy longest-match tokenizer over it."""

    pieces = [
        "",
        "a",
        "b",
        "C",
        "e",
        "f",
        "h",
        "i",
        "r",
        "R",
        "t",
        "v",
        " ",
        " r",
        "iver",
        "river",
        " river",
        " River",
        "Rivers",
        "the",
        " the",
        "The",
        "er",
        "ri",
        "riv",
        "x",
        "caf",
        "\ufffd",
    ]

    def encode(self, text):
        ids = []
        while text:
            best = max(
                (i for i, p in enumerate(self.pieces) if p and p != "\ufffd" and text.startswith(p)),
                key=lambda i: len(self.pieces[i]),
            )
            ids.append(best)
            text = text[len(self.pieces[best]) :]
        return ids

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)


def ids_of(*texts):
    return {FakeTokenizer.pieces.index(t) for t in texts}


def test_a_banned_word_is_blocked_in_every_spelling_and_case():
    tok = FakeTokenizer()
    ban = BannedPhrases(["river"], Vocabulary(tok.pieces), tok.encode, tok.decode)
    always = ids_of("river", " river", " River", "Rivers")  # the whole word in one token
    assert ban.banned_ids(tok.encode("a ")) >= always
    assert ban.banned_ids(tok.encode("a ")) & ids_of("iver", "ri", "riv", " r", "er") == set()
    assert ban.banned_ids(tok.encode("the r")) == always | ids_of("iver")  # "r" + "iver"
    assert ban.banned_ids(tok.encode("the R")) == always | ids_of("iver")  # capitalised
    assert ban.banned_ids(tok.encode("the riv")) == always | ids_of("er")
    assert ban.banned_ids(tok.encode("the rive")) == always | ids_of("r", "R", "ri", "riv")


def test_a_banned_phrase_is_blocked_at_its_last_token_only():
    tok = FakeTokenizer()
    ban = BannedPhrases(["the river"], Vocabulary(tok.pieces), tok.encode, tok.decode)
    assert ban.banned_ids(tok.encode("a b")) == set()  # no word of it yet: nothing banned
    assert ban.banned_ids(tok.encode("a the")) == ids_of(" river", " River")  # not "theriver"
    assert ban.banned_ids(tok.encode("a The")) == ids_of(" river", " River")
    assert ban.banned_ids(tok.encode("a the ")) == ids_of("river", "Rivers")
    assert ban.banned_ids(tok.encode("a the r")) == ids_of("iver")
    # The token sequences the tokenizer itself uses are banned even where the text check cannot
    # see them (an incomplete character reads as U+FFFD): "café" = "caf" + "é".
    tok.pieces = tok.pieces + ["é"]
    seen_as = tok.pieces[:-1] + ["\ufffd"]  # what the vocabulary sees of that token
    ban = BannedPhrases(["café"], Vocabulary(seen_as), tok.encode, tok.decode)
    assert len(tok.pieces) - 1 in ban.banned_ids(tok.encode("a caf"))


def test_banned_tokens_get_minus_infinity_and_the_rest_are_untouched():
    tok = FakeTokenizer()
    ban = BannedPhrases(["river"], Vocabulary(tok.pieces), tok.encode, tok.decode)
    scores = torch.randn(1, len(tok.pieces))
    out = ban(torch.tensor([tok.encode("the r")]), scores)
    banned = ban.banned_ids(tok.encode("the r"))
    for i in range(len(tok.pieces)):
        assert (out[0, i] == -math.inf) == (i in banned)
        if i not in banned:
            assert out[0, i] == scores[0, i]


def test_stop_text_holds_back_a_possible_start_and_cuts_before_a_stop_sequence():
    stop = StopText(["o w"])
    assert stop.push("Hel", 1) == [("Hel", 1)]
    assert stop.push("lo", 2) == []  # "o" may start "o w": held
    assert stop.push(" wor", 3) == [("l", 2)]  # the part of token 2 before the stop sequence
    assert stop.stopped
    # A start that does not go on is released, in order, with each token's own text.
    stop = StopText(["xyz", "END"])
    assert stop.push("ax", 1) == []
    assert stop.push("y", 2) == []
    assert stop.push("b", 3) == [("ax", 1), ("y", 2), ("b", 3)]
    assert stop.push("E", 4) == [] and stop.flush() == [("E", 4)] and not stop.stopped
    # A stop sequence inside one token, at the start of one, or as the very first text.
    stop = StopText(["\n"])
    assert stop.push("one.\ntwo", 1) == [("one.", 1)] and stop.stopped
    stop = StopText(["\n"])
    assert stop.push("a", 1) == [("a", 1)] and stop.push("\n", 2) == [] and stop.stopped
    stop = StopText(["ab"])
    assert stop.push("ab", 1) == [] and stop.stopped
    assert StopText([]).push("anything", 7) == [("anything", 7)]


# --------------------------------------------------------------------------------------------
# Through the Runner on tiny models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling-models")
    build_tiny_gpt2(root / "tiny-gpt2")
    build_tiny_llama(root / "tiny-llama")
    return root


@pytest.fixture(scope="module")
def runner(models):
    return Runner(ModelRegistry([(models, "user")]))


def spec(**kw):
    base = dict(model="tiny-gpt2", prompt="The quiet river", max_new_tokens=24, seed=1, temperature=0.8)
    return TextJob(**{**base, **kw})


ALL_ON = dict(
    min_p=0.05,
    top_k=200,
    top_p=0.95,
    repetition_penalty=1.3,
    repetition_range=16,
    dry_multiplier=0.8,
    dry_base=1.75,
    dry_allowed_length=2,
    stop=("zq",),
    banned=("she",),
)


def finished(events):
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].result


def tokens(events):
    return [e for e in events if isinstance(e, Token)]


def consistent(events):
    """The result and the streamed tokens tell the same story."""
    result = finished(events)
    streamed = tokens(events)
    assert "".join(t.text for t in streamed) == result.text
    assert tuple(t.token_id for t in streamed) == result.token_ids
    return result


@pytest.mark.parametrize("model", MODELS)
def test_same_seed_same_text_with_every_sampler_on(runner, model):
    first = consistent(run(runner, spec(model=model, seed=3, **ALL_ON)))
    again = consistent(run(runner, spec(model=model, seed=3, **ALL_ON)))
    other = consistent(run(runner, spec(model=model, seed=4, **ALL_ON)))
    assert first.text and first.text == again.text and first.token_ids == again.token_ids
    assert first.token_ids != other.token_ids
    plain = finished(run(runner, spec(model=model, seed=3)))
    assert plain.token_ids != first.token_ids  # the samplers did something


@pytest.fixture(scope="module")
def tokenizers(models):
    from transformers import AutoTokenizer

    return {m: AutoTokenizer.from_pretrained(str(models / m), local_files_only=True) for m in MODELS}


def phrase_across_tokens(events):
    """Letters from the end of one token and the start of the next (at least 3 ASCII letters)."""
    streamed = tokens(events)
    for a, b in zip(streamed, streamed[1:]):
        text = (a.text + b.text).strip()
        if len(text) >= 3 and text.isascii() and text.isalpha() and a.text.strip() and b.text.strip():
            return text
    return None


@pytest.mark.parametrize("model", MODELS)
def test_a_banned_phrase_never_appears_in_20_seeded_generations(runner, model):
    """For each seed, a phrase that the unbanned text contains across a token boundary."""
    tried = 0
    for seed in range(20):
        free_events = run(runner, spec(model=model, seed=seed, max_new_tokens=32))
        free = consistent(free_events)
        phrase = phrase_across_tokens(free_events)
        if phrase is None:
            continue
        tried += 1
        assert phrase in free.text
        banned = consistent(run(runner, spec(model=model, seed=seed, max_new_tokens=32, banned=(phrase,))))
        assert phrase.lower() not in banned.text.lower(), (seed, phrase, banned.text)
        assert banned.text != free.text
    assert tried >= 15


@pytest.mark.parametrize("model", MODELS)
def test_a_stop_sequence_spanning_two_tokens_ends_the_text_before_it(runner, model):
    free_events = run(runner, spec(model=model, seed=2, max_new_tokens=32))
    free, streamed = consistent(free_events), tokens(free_events)
    # The end of one token and the start of the next, where that pair first occurs in the text.
    done, stop = 0, None
    for k, (a, b) in enumerate(zip(streamed, streamed[1:])):
        done += len(a.text)
        candidate = a.text[-1:] + b.text[:2]
        if a.text and len(b.text) >= 2 and "\ufffd" not in candidate and free.text.find(candidate) == done - 1:
            stop = candidate
            break
    assert stop, "no token pair to build a stop sequence from"
    before = free.text[: free.text.find(stop)]
    events = run(runner, spec(model=model, seed=2, max_new_tokens=32, stop=("NEVER", stop)))
    result = consistent(events)
    assert result.text == before
    # The token the stop sequence begins in comes with its part before it; none after it comes.
    assert result.token_ids == free.token_ids[: k + 1]
    shown = ""
    for event in tokens(events):  # never a character of the stop sequence, not even for a while
        shown += event.text
        assert before.startswith(shown)
    # A stop sequence whose start occurs but which never completes holds nothing back for good.
    never = free.text[5:7] + "\x00never"
    assert consistent(run(runner, spec(model=model, seed=2, max_new_tokens=32, stop=(never,)))).text == free.text


def test_greedy_still_honours_bans_stops_dry_and_the_repetition_penalty(runner, tokenizers):
    plain = consistent(run(runner, spec(temperature=0.0)))
    assert "verver" in plain.text  # the tiny GPT-2 loops on one token when greedy
    assert "ver" not in consistent(run(runner, spec(temperature=0.0, banned=("ver",)))).text.lower()
    stopped = consistent(run(runner, spec(temperature=0.0, stop=("rv",))))
    assert stopped.text == plain.text[: plain.text.find("rv")]
    penalised = consistent(run(runner, spec(temperature=0.0, repetition_penalty=3.0)))
    assert len(set(penalised.token_ids)) > len(set(plain.token_ids))
    # DRY with a multiplier far above the (nearly flat) logits: no token extends a repeat of 2+.
    job = spec(temperature=0.0, dry_multiplier=50.0, dry_allowed_length=2)
    dry = consistent(run(runner, job))
    assert dry.token_ids != plain.token_ids
    tokenizer = tokenizers["tiny-gpt2"]
    vocab = Vocabulary.from_tokenizer(tokenizer)
    check = DRYPenalty(50.0, 1.75, 2, vocab.containing_any(DRY_SEQUENCE_BREAKERS))
    context = tokenizer(job.prompt)["input_ids"]
    for token in dry.token_ids:
        assert token not in check.penalties(context)
        context.append(token)


def test_alternatives_see_min_p(runner):
    streamed = tokens(run(runner, spec(temperature=1.0, min_p=0.9, max_new_tokens=12)))
    assert streamed
    for event in streamed:
        probs = [p for _, p in event.alternatives]
        kept = [p for p in probs if p > 0]
        assert kept and all(p >= 0.9 * probs[0] - 1e-6 for p in kept)


def test_cancel_lands_within_one_token_with_every_sampler_on(runner):
    seen = []

    def cancel_after_3(job, event):
        seen.append(event)
        if isinstance(event, Token) and len(tokens(seen)) == 3:
            job.cancel.set()

    events = run(runner, spec(max_new_tokens=24, **{**ALL_ON, "stop": ("zq", " ", "e")}), cancel_after_3)
    assert isinstance(events[-1], Cancelled)
    assert len(tokens(events)) == 3


# --------------------------------------------------------------------------------------------
# Cost at a long context


def test_time_the_processors_at_a_2000_token_context():
    """Per-step cost on the CPU with a GPT-2-sized vocabulary (50,257) and 2,000 tokens of context
    that repeat themselves (DRY's worst case: many long matches). Printed, never asserted."""
    torch.manual_seed(0)
    rng = random.Random(0)
    vocab_size = 50257
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces = [
        (" " if rng.random() < 0.5 else "") + "".join(rng.choice(letters) for _ in range(rng.randrange(1, 8)))
        for _ in range(vocab_size)
    ]
    pieces[10], pieces[11] = "\n", ":"
    started = time.perf_counter()
    vocab = Vocabulary(pieces)
    vocab_s = time.perf_counter() - started
    # 2,000 tokens repeating a 40-token passage: the end matches ~50 earlier occurrences, each as
    # far back as DRY looks (DRY_MAX_MATCH tokens).
    passage = [rng.randrange(12, vocab_size) for _ in range(40)]
    context = (passage * 50)[:2000]
    assert len(DRYPenalty(0.8, 1.75, 2, ()).penalties(context)) == 1
    ids = torch.tensor([context])
    scores = torch.randn(1, vocab_size)
    decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
    encode = lambda text: [pieces.index(text)] if text in pieces else [0]  # noqa: E731
    banned_words = ["".join(rng.choice(letters) for _ in range(rng.randrange(3, 12))) for _ in range(50)]
    processors = {
        "repetition penalty": RepetitionPenalty(1.2, 0),
        "DRY": DRYPenalty(0.8, 1.75, 2, vocab.containing_any(["\n", ":"])),
        "50 banned phrases": BannedPhrases(banned_words, vocab, encode, decode),
        "min-p": MinP(0.05),
    }
    lines = [f"vocabulary index of {vocab_size} pieces: {vocab_s * 1000:.0f} ms (once per model)"]
    started = time.perf_counter()
    processors["50 banned phrases"](ids, scores)  # the first step scans the vocabulary per phrase
    lines.append(
        f"50 banned phrases, first step: {(time.perf_counter() - started) * 1000:.0f} ms (cached: later steps and jobs reuse it)"
    )
    for processor in processors.values():
        processor(ids, scores)
    total = 0.0
    for name, processor in processors.items():
        started = time.perf_counter()
        for _ in range(20):
            processor(ids, scores)
        per_step = (time.perf_counter() - started) / 20
        total += per_step
        lines.append(f"{name}: {per_step * 1000:.2f} ms/step")
    lines.append(f"all four: {total * 1000:.2f} ms/step at a 2,000-token context")
    print("\n" + "\n".join(lines))
