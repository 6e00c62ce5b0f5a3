"""Each training recipe runs end to end on a tiny slice of data written here (no network): a few
steps, a checkpoint it resumes from, and an exported folder the studio loads and runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.core.events import Finished
from studio.core.jobs import ImageJob, LatentDecodeJob, TextJob
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry
from studio.training.data.emoji_data import CATEGORIES, load_emoji
from studio.training.loop import TrainOptions, train

from fake_emoji import write_fake_emoji_packages
from run_jobs import run


@pytest.fixture
def emoji_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    write_fake_emoji_packages(cache)
    monkeypatch.setenv("STUDIO_TRAINING_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_prose(monkeypatch):
    from studio.training.data import prose_corpus

    sentences = [
        "It was a truth universally acknowledged that the sea was wide.",
        "Call me Ishmael, said the man, and he walked into the rain.",
        "The house was quiet; the lamps were low, and the letters lay unread.",
    ]
    corpus = prose_corpus.ProseCorpus(
        train=[("austen", sentences[i % 3] + f" Day {i}.") for i in range(60)],
        heldout="She wrote a letter, and the letter was long. " * 20,
        heldout_name="a test text",
        sources=list(prose_corpus.SOURCES),
    )
    monkeypatch.setattr(prose_corpus, "load_prose", lambda limit_chars=None: corpus)


def _train(recipe_cls, out, steps, fresh=False):
    return train(
        recipe_cls(TrainOptions(out=out, minutes=60, max_steps=steps, tiny=True, fresh=fresh)), say=lambda line: None
    )


def _runner(model_dir):
    registry = ModelRegistry([(model_dir.parent, "user")])
    return Runner(registry), registry.resolve(model_dir.name)


def _modes(folder):
    return {p.relative_to(folder).as_posix(): oct(p.stat().st_mode & 0o777) for p in folder.rglob("*") if p.is_file()}


def test_emoji_set_leaves_out_flags_and_keeps_skin_tones_with_their_base(emoji_cache):
    data = load_emoji(64)
    assert len(data) == 8 * 3 + 5  # the flag is left out, the five skin tones are in
    assert "flag: Egypt" not in data.labels
    assert set(data.category.tolist()) == set(range(len(CATEGORIES)))
    assert data.images.shape[1:] == (64, 64, 3) and data.images[:, 0, 0].min() == 255  # composited on white
    tones = [i for i, label in enumerate(data.labels) if label.startswith("thing 1 0")]
    assert len({bool(data.val[i]) for i in tones}) == 1  # the whole family on one side of the split
    again = load_emoji(64)  # from the cache now
    assert again.labels == data.labels and np.array_equal(again.images, data.images)


def test_emoji_vae_trains_resumes_and_exports_a_loadable_model(emoji_cache, tmp_path):
    from studio.training.recipes.emoji_vae import EmojiVaeRecipe

    out = tmp_path / "run"
    first = _train(EmojiVaeRecipe, out, steps=2)
    assert first.steps == 2 and (out / "checkpoint.pt").exists()
    recipe = EmojiVaeRecipe(TrainOptions(out=out, minutes=60, max_steps=3, tiny=True))
    second = train(recipe, say=lambda line: None)
    assert second.steps == 3  # resumed from step 2, not started over
    assert recipe.optimizer.state_dict()["state"][0]["step"] == 3  # with the optimiser's state too
    model = out / "model"
    manifest = json.loads((model / "studio.json").read_text())
    assert manifest["latent_dim"] == 128 and manifest["encoder"]["weights"] == "encoder.safetensors"
    assert set(_modes(model).values()) == {"0o644"}
    runner, info = _runner(model)
    latent = tuple(float(v) for v in np.linspace(-2, 2, 128))
    a, b = (run(runner, LatentDecodeJob(model=info.id, latent=latent))[-1] for _ in range(2))
    assert isinstance(a, Finished) and np.array_equal(a.result.images[0], b.result.images[0])
    # (That the latent moves the picture along meaningful axes is tested on the trained model, in
    # tests/test_embedded_models.py: three steps of a tiny VAE barely depend on their latent.)


def test_emoji_vae_principal_axes_round_trip_through_encoder(emoji_cache, tmp_path):
    """The shipped encoder gives principal coordinates: the training set encodes to mean ~0 and
    standard deviation ~1 on every axis, as the sliders assume."""
    import torch

    from studio.models.nets import load_encoder
    from studio.training.images import to_tensor
    from studio.training.recipes.emoji_vae import EmojiVaeRecipe

    out = tmp_path / "run"
    _train(EmojiVaeRecipe, out, steps=2)
    model = out / "model"
    encoder = load_encoder(model, json.loads((model / "studio.json").read_text()))
    with torch.no_grad():
        u = encoder(to_tensor(load_emoji(64).train().images, torch.device("cpu")))[0].double()
    # fp16 weights: close, not exact; only the axes the ~20 tiny training images span are meaningful.
    assert u.mean(0)[:10].abs().max() < 2e-2
    assert (u.std(0)[:10] - 1).abs().max() < 5e-2


def test_emoji_gan_trains_and_exports(emoji_cache, tmp_path):
    from studio.training.recipes.emoji_gan import EmojiGanRecipe

    report = _train(EmojiGanRecipe, tmp_path / "run", steps=2)
    assert report.steps == 2 and "sample_nearest_train_rms" in report.metrics
    model = tmp_path / "run" / "model"
    manifest = json.loads((model / "studio.json").read_text())
    assert "encoder" not in manifest and manifest["latent_basis"] == "principal"
    runner, info = _runner(model)
    end = run(runner, LatentDecodeJob(model=info.id, latent=(0.5,) * 128))[-1]
    assert isinstance(end, Finished) and end.result.images[0].shape == (64, 64, 3)


def test_emoji_sd_trains_both_phases_and_loads_as_a_diffusers_pipeline(emoji_cache, tmp_path):
    from diffusers import DiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline

    from studio.training.recipes import emoji_sd

    out = tmp_path / "run"
    # With a step cap, progress is counted in steps: the autoencoder's share first, then the UNet.
    recipe = emoji_sd.EmojiSdRecipe(TrainOptions(out=out, minutes=60, max_steps=6, tiny=True))
    report = train(recipe, say=lambda line: None)
    vae_steps = sum(1 for step in range(6) if step / 6 < emoji_sd.VAE_SHARE)
    assert 0 < vae_steps < 6 and report.metrics["latent_scaling_factor"] > 0
    assert recipe.vae_opt.state_dict()["state"][0]["step"] == vae_steps
    assert recipe.extra.get("ema_updates") == 6 - vae_steps  # the UNet phase ran for the rest
    model = out / "model"
    pipe = DiffusionPipeline.from_pretrained(str(model), local_files_only=True)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.tokenizer.decode(pipe.tokenizer("Red apple").input_ids, skip_special_tokens=True) == "red apple"
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    inpaint = StableDiffusionInpaintPipeline(**pipe.components)
    assert img2img.vae is pipe.vae and inpaint.unet is pipe.unet
    runner, info = _runner(model)
    spec = ImageJob(model=info.id, prompt="thing 2 0", seed=3, steps=3, width=64, height=64)
    a, b = run(runner, spec)[-1], run(runner, spec)[-1]
    assert isinstance(a, Finished) and np.array_equal(a.result.images[0], b.result.images[0])
    assert a.result.images[0].shape == (64, 64, 3)


def test_classifier_recipe_exports_weights_for_eval(emoji_cache, tmp_path):
    import torch

    from studio.training.recipes.emoji_classifier import EmojiClassifierRecipe, load_classifier

    report = _train(EmojiClassifierRecipe, tmp_path / "run", steps=2)
    assert report.steps == 2 and 0 <= report.metrics.get("val_accuracy", 0) <= 1
    net = load_classifier(tmp_path / "run" / "model")
    with torch.no_grad():
        logits = net(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, len(CATEGORIES)) and net.features(torch.rand(1, 3, 64, 64)).shape == (1, 128)


def test_prose_recipe_trains_a_tokenizer_that_round_trips_and_a_model_that_streams(tiny_prose, tmp_path):
    from transformers import AutoTokenizer

    from studio.training.recipes.prose import ProseRecipe

    out = tmp_path / "run"
    report = _train(ProseRecipe, out, steps=2)
    assert report.metrics["heldout_perplexity"] > 1
    model = out / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    sentence = "It was a dark and stormy night; the rain fell in torrents."
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    assert ids and tokenizer.decode(ids) == sentence
    runner, info = _runner(model)
    spec = TextJob(model=info.id, prompt="It was", max_new_tokens=5, seed=2)
    a, b = run(runner, spec), run(runner, spec)
    text = lambda events: "".join(e.text for e in events if type(e).__name__ == "Token")  # noqa: E731
    assert isinstance(a[-1], Finished) and text(a) == text(b) and len(text(a)) > 0


def test_train_command_refuses_an_unknown_recipe_a_bad_budget_and_a_missing_gpu(capsys):
    import torch

    from studio.cli import main

    assert main(["train", "no-such-recipe", "--minutes", "1"]) == 2
    assert "recipe" in capsys.readouterr().err
    assert main(["train", "prose", "--minutes", "0"]) == 2
    assert "--minutes" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "prose", "--device", "cuda"]) == 2
        assert "CUDA" in capsys.readouterr().err


def test_a_resumed_emoji_sd_run_keeps_its_tokenizer_and_never_returns_to_the_autoencoder(emoji_cache, tmp_path):
    from studio.training.recipes.emoji_sd import EmojiSdRecipe

    out = tmp_path / "run"
    first = EmojiSdRecipe(TrainOptions(out=out, minutes=60, max_steps=4, tiny=True))
    train(first, say=lambda line: None)
    ids = first.tokenizer("thing 3 1, tag3").input_ids
    # A longer budget would put progress back in the autoencoder's share; the phase must not move.
    again = EmojiSdRecipe(TrainOptions(out=out, minutes=60, max_steps=40, tiny=True))
    again.prepare()  # trains a new tokenizer, which may number tokens differently
    from studio.training import loop

    loop._load_checkpoint(out / loop.CHECKPOINT, again)
    assert again.tokenizer("thing 3 1, tag3").input_ids == ids
    assert again.extra["unet_phase"] == 1
    vae_before = [p.detach().clone() for p in again.vae.parameters()]
    again.train_step(0.01)  # early progress, but the UNet phase had begun: the VAE stays frozen
    assert all(a.equal(b) for a, b in zip(vae_before, again.vae.parameters()))


def test_a_checkpoint_from_another_run_is_refused_in_one_sentence(emoji_cache, tmp_path, capsys):
    from studio.cli import main

    out = tmp_path / "run"
    assert main(["train", "emoji-gan", "--tiny", "--max-steps", "1", "--out", str(out)]) == 0
    assert main(["train", "emoji-vae", "--tiny", "--max-steps", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "checkpoint.pt belongs to another run" in err and "--fresh" in err
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["train", "emoji-gan", "--tiny", "--max-steps", "1", "--out", str(out)]) == 1
    assert "cannot be read as a checkpoint" in capsys.readouterr().err


def test_perplexity_scores_every_token_after_the_first_exactly_once():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from studio.training.recipes.prose import perplexity

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=64, n_embd=16, n_layer=1, n_head=2))
    for n in (10, 64, 65, 300, 301):
        ids = torch.randint(0, 50, (n,))
        ppl, scored = perplexity(model, ids, context=64, device="cpu")
        assert scored == n - 1 and ppl > 1
