"""`studio eval`: the Fréchet distance, and evaluation of tiny random-weight models with a
random-weight classifier and a small random emoji set built here: no network, no fetched data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.core.errors import StudioError
from studio.models.registry import inspect
from studio.training import eval_features, evaluate
from studio.training.data.emoji_data import CATEGORIES, EmojiSet
from studio.training.data.prose_corpus import ProseCorpus
from studio.training.fd import frechet_distance
from studio.training.model_card import EVAL_END, EVAL_START

HELDOUT = (
    "Anne was sitting quietly by the window when the letter came, and she read it twice before she "
    "understood that the captain meant to stay in Bath for the whole of the winter.\n\n"
    "It was a dark and stormy night, and the cat sat on the mat by the fire of the house. "
) * 4


# --- the Fréchet distance ------------------------------------------------------------------------


def _features(seed: int, n: int = 400, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d)


def test_fd_of_a_set_with_itself_is_zero():
    a = _features(0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fd_of_a_mean_shift_is_the_squared_shift():
    a = _features(1)
    shift = np.array([0.5, -1.0, 2.0, 0.0, 0.25, 3.0])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6, abs=1e-6)


def test_fd_is_symmetric_and_matches_the_formula():
    a, b = _features(2), _features(3, n=300)
    forward, backward = frechet_distance(a, b), frechet_distance(b, a)
    assert forward == pytest.approx(backward, rel=1e-8)
    # tr((Σa Σb)^½) from the (real, non-negative) eigenvalues of Σa Σb: an independent route
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.sqrt(np.clip(np.linalg.eigvals(cov_a @ cov_b).real, 0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * root
    assert forward == pytest.approx(expected, rel=1e-8)
    assert forward > 0


def test_fd_handles_rank_deficient_sets():
    a = np.random.default_rng(4).normal(size=(5, 32))  # 5 samples in 32-d: a singular covariance
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(frechet_distance(a, a[::-1] * 2))


def test_fd_rejects_bad_input():
    with pytest.raises(ValueError, match="width"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(np.zeros(3), np.zeros((4, 3)))


# --- evaluation ----------------------------------------------------------------------------------


@pytest.fixture
def classifier(tmp_path, monkeypatch) -> Path:
    """A random-weight evaluation classifier where STUDIO_EVAL_CLASSIFIER points."""
    from studio.training.recipes.emoji_classifier import EmojiClassifier
    from studio.training.shipping import save_fp16

    folder = tmp_path / "classifier"
    folder.mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_fp16(folder / "classifier.safetensors", EmojiClassifier().state_dict())
    monkeypatch.setenv(eval_features.CLASSIFIER_ENV, str(folder))
    return folder


@pytest.fixture
def emoji_set(monkeypatch, tmp_path) -> EmojiSet:
    """40 random 64 px images, every fourth one held out, in place of the real emoji set."""
    n = 40
    rng = np.random.default_rng(0)
    data = EmojiSet(
        images=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        labels=[f"thing {i}" for i in range(n)],
        tags=[[] for _ in range(n)],
        category=np.arange(n, dtype=np.int64) % len(CATEGORIES),
        subcategory=[""] * n,
        hexcode=[f"{i:X}" for i in range(n)],
        val=np.arange(n) % 4 == 0,
    )
    monkeypatch.setenv("STUDIO_TRAINING_CACHE", str(tmp_path / "cache"))  # never the real cache
    monkeypatch.setattr(evaluate, "load_emoji", lambda size=64: data)
    return data


@pytest.fixture
def latent_model(tmp_path):
    from studio.bench.tiny_latent import build_tiny_latent

    return inspect(build_tiny_latent(tmp_path / "tiny-latent", latent_dim=16, image_size=64, onnx=False), "path")


def test_text_perplexity_on_held_out_prose(tmp_path, monkeypatch, capsys):
    from studio.bench.tiny_models import build_tiny_gpt2

    monkeypatch.setenv("STUDIO_TRAINING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(evaluate, "load_prose", lambda: ProseCorpus([], HELDOUT, "a test text", []))
    model = inspect(build_tiny_gpt2(tmp_path / "tiny-gpt2"), "path")
    assert model.kind == "text"
    metrics = evaluate.evaluate_model(model, quick=True)
    assert math.isfinite(metrics["heldout_perplexity"]) and metrics["heldout_perplexity"] > 1
    assert metrics["heldout_tokens"] > 128  # more than one window of the tiny model's context
    assert metrics["context"] == 128
    out = capsys.readouterr().out
    assert "held-out perplexity" in out and "a test text" in out
    assert evaluate.evaluate_model(model, quick=True)["heldout_perplexity"] == pytest.approx(
        metrics["heldout_perplexity"], rel=1e-6
    )


def test_latent_fd_emoji_repeats(latent_model, classifier, emoji_set, capsys):
    metrics = evaluate.evaluate_model(latent_model, quick=True)
    assert set(metrics) == {"fd_emoji", "fd_emoji_real", "fd_samples"}  # no encoder: no PSNR
    assert metrics["fd_samples"] == evaluate.QUICK_LATENT_SAMPLES
    assert all(math.isfinite(v) and v >= 0 for v in metrics.values())
    out = capsys.readouterr().out
    assert "FD-emoji" in out and "FD-emoji real-vs-real" in out and "FID" not in out
    assert evaluate.evaluate_model(latent_model, quick=True) == pytest.approx(metrics, rel=1e-6)
    assert not (latent_model.path / evaluate.GRID).exists()  # written only with --update-card


def test_latent_with_an_encoder_reports_psnr(latent_model, classifier, emoji_set):
    from studio.models import nets
    from studio.training.shipping import save_fp16

    manifest = dict(latent_model.manifest, encoder={"base_channels": 8, "weights": "encoder.safetensors"})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        encoder = nets.build_encoder(nets.part_config(manifest, "encoder"))
    save_fp16(latent_model.path / "encoder.safetensors", encoder.state_dict())
    (latent_model.path / "studio.json").write_text(json.dumps(manifest))
    metrics = evaluate.evaluate_model(inspect(latent_model.path, "path"), quick=True)
    assert 0 < metrics["reconstruction_psnr"] < 60


def test_update_card_replaces_only_the_eval_section(latent_model, classifier, emoji_set):
    card = latent_model.path / "MODEL_CARD.md"
    before = "# tiny\n\nKept above.\n\n## Measured quality\n\n"
    after = "\n\n## Afterwards\n\nKept below.\n"
    card.write_text(before + f"{EVAL_START}\nNot evaluated yet.\n{EVAL_END}" + after, encoding="utf-8")
    evaluate.evaluate_model(latent_model, update_card=True, quick=True)
    text = card.read_text(encoding="utf-8")
    assert text.startswith(before + EVAL_START) and text.endswith(EVAL_END + after)
    section = text[text.index(EVAL_START) : text.index(EVAL_END)]
    assert "Not evaluated yet" not in section
    assert "| FD-emoji |" in section and "not FID" in section and "](eval-grid.png)" in section
    assert (latent_model.path / evaluate.GRID).is_file()
    evaluate.evaluate_model(latent_model, update_card=True, quick=True)  # again: the same card
    assert card.read_text(encoding="utf-8") == text


def test_missing_classifier_says_how_to_make_it(latent_model, emoji_set, tmp_path, monkeypatch):
    monkeypatch.setenv(eval_features.CLASSIFIER_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(StudioError, match="studio train emoji-classifier"):
        evaluate.evaluate_model(latent_model, quick=True)


def test_other_models_cannot_be_evaluated(fake_models):
    model = inspect(fake_models / "fake-image", "path")
    with pytest.raises(StudioError, match="cannot be evaluated"):
        evaluate.evaluate_model(model)


def test_image_accuracy_and_fd_on_a_tiny_pipeline(tmp_path, classifier, emoji_set, monkeypatch):
    from studio.bench.tiny_models import build_tiny_diffusers

    monkeypatch.setattr(evaluate, "STEPS", 2)
    model = inspect(build_tiny_diffusers(tmp_path / "tiny-sd"), "path")
    metrics = evaluate.evaluate_model(model, update_card=True, quick=True)
    assert 0 <= metrics["category_accuracy"] <= 1
    assert metrics["fd_samples"] == 10  # every validation label of the small set
    assert math.isfinite(metrics["fd_emoji"]) and math.isfinite(metrics["fd_emoji_real"])
    from PIL import Image

    with Image.open(model.path / evaluate.GRID) as grid:  # 10 prompts as rows, 4 seeds as columns
        assert grid.size == (4 * 66 + 2, 10 * 66 + 2)
    assert "category accuracy" in (model.path / "MODEL_CARD.md").read_text(encoding="utf-8")
