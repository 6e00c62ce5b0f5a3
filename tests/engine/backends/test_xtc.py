"""XTC ("exclude top choices"): the processor on hand-made logits (what it removes, when its coin
triggers, the same coins for the same seed), then through the Runner on the tiny models: it
changes the text, and the same seed still gives the same text."""

import math

import pytest
import torch

from studio.bench.tiny_models import build_tiny_gpt2, build_tiny_llama
from studio.core.jobs import TextJob
from studio.engine.backends.text.sampling import XTC, xtc_processor
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import finished, run, tokens

PROBS = [0.35, 0.3, 0.2, 0.1, 0.05]


def logits(probs):
    return torch.tensor([[math.log(p) for p in probs]])


def kept(out):
    return torch.isfinite(out[0]).tolist()


def test_triggered_it_removes_every_token_above_the_threshold_but_the_least_likely():
    scores = logits(PROBS)
    out = XTC(0.15, 1.0, seed=0)(None, scores)
    assert kept(out) == [False, False, True, True, True]  # 0.35 and 0.3 go, 0.2 (the last above 0.15) stays
    assert torch.equal(out[0, 2:], scores[0, 2:])  # what stays is untouched
    assert kept(XTC(0.25, 1.0, seed=0)(None, scores)) == [False, True, True, True, True]


def test_with_a_single_token_above_the_threshold_nothing_is_removed():
    scores = logits(PROBS)
    assert torch.equal(XTC(0.32, 1.0, seed=0)(None, scores), scores)
    assert torch.equal(XTC(0.5, 1.0, seed=0)(None, scores), scores)  # none above


def test_tokens_already_cut_never_count_as_above_the_threshold():
    """At threshold 0 every token still in play is above it: all go but the least likely one still
    in play, never a token an earlier sampler removed (that would leave nothing to draw)."""
    scores = logits(PROBS)
    scores[0, 3:] = -float("inf")  # cut by top-k, say
    assert kept(XTC(0.0, 1.0, seed=0)(None, scores)) == [False, False, True, False, False]


def test_probability_zero_never_triggers_and_one_always_does():
    scores = logits(PROBS)
    never, always = XTC(0.15, 0.0, seed=3), XTC(0.15, 1.0, seed=3)
    for _ in range(200):
        assert torch.equal(never(None, scores), scores)
        assert kept(always(None, scores)) == [False, False, True, True, True]


def test_the_coins_follow_the_seed_and_are_drawn_every_step():
    scores = logits(PROBS)

    def pattern(seed, steps=400):
        xtc = XTC(0.15, 0.5, seed=seed)
        return [not torch.equal(xtc(None, scores), scores) for _ in range(steps)]

    first = pattern(7)
    assert first == pattern(7)
    assert first != pattern(8)
    assert 120 < sum(first) < 280  # about half the steps
    # A step where fewer than two tokens reach the threshold still draws its coin: the steps after
    # it trigger exactly as they would have.
    xtc = XTC(0.15, 0.5, seed=7)
    flat = logits([0.2] * 5)  # five tokens at 0.2: two or more above 0.15, but all tie, none goes
    mixed = [xtc(None, flat if i % 3 == 0 else scores) for i in range(400)]
    assert [not torch.equal(out, scores) for i, out in enumerate(mixed) if i % 3] == [
        hit for i, hit in enumerate(first) if i % 3
    ]


def test_each_row_tosses_its_own_coin():
    scores = torch.cat([logits(PROBS)] * 64)
    out = XTC(0.15, 0.5, seed=1)(None, scores)
    hit = ~torch.isfinite(out[:, 0])
    assert 0 < int(hit.sum()) < 64
    assert torch.isfinite(out[~hit]).all() and kept(out[hit][:1]) == [False, False, True, True, True]


def test_xtc_is_for_sampling_only():
    on = TextJob(model="m", prompt="x", temperature=0.8, xtc_probability=0.5, xtc_threshold=0.2)
    processor = xtc_processor(on, 4)
    assert isinstance(processor, XTC) and (processor.threshold, processor.probability) == (0.2, 0.5)
    assert xtc_processor(TextJob(model="m", prompt="x", temperature=0.0, xtc_probability=0.5), 4) is None
    assert xtc_processor(TextJob(model="m", prompt="x", temperature=0.8), 4) is None  # probability 0: off


# --------------------------------------------------------------------------------------------
# Through the Runner


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    root = tmp_path_factory.mktemp("xtc-models")
    build_tiny_gpt2(root / "tiny-gpt2")
    build_tiny_llama(root / "tiny-llama")
    return Runner(ModelRegistry([(root, "user")]))


def spec(model, **kw):
    base = dict(model=model, prompt="The quiet river", max_new_tokens=24, seed=11, temperature=1.0)
    return TextJob(**{**base, **kw})


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_xtc_changes_the_text_and_the_same_seed_gives_the_same_text(runner, model):
    """The tiny models' distributions are nearly flat (400 tokens near 1/400 = 0.0025), so a
    threshold of 0.002 catches most tokens: those that could be drawn change each step."""
    off = finished(run(runner, spec(model)))
    on = dict(xtc_probability=1.0, xtc_threshold=0.002)
    first = finished(run(runner, spec(model, **on)))
    assert first.token_ids != off.token_ids
    assert finished(run(runner, spec(model, **on))).token_ids == first.token_ids
    half = dict(xtc_probability=0.5, xtc_threshold=0.002)
    assert finished(run(runner, spec(model, **half))).token_ids == finished(run(runner, spec(model, **half))).token_ids


def test_the_alternatives_show_what_xtc_left(runner):
    """Every step triggers at threshold 0: only the least likely token survives, so it is drawn with
    probability one and the alternatives say so."""
    events = run(runner, spec("tiny-gpt2", xtc_probability=1.0, xtc_threshold=0.0, max_new_tokens=6))
    assert tokens(events)
    for event in tokens(events):
        assert event.alternatives[0][1] == pytest.approx(1.0)
        assert all(p == 0.0 for _, p in event.alternatives[1:])
