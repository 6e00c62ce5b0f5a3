"""The models shipped in studio/resources/models: listed, small, offline, deterministic, and each one
generates. These tests use the real embedded folder (the sandbox hides it from other tests)."""

from __future__ import annotations

import json
import socket
import struct

import numpy as np
import pytest

from studio.core.events import Finished, Token
from studio.core.jobs import ImageJob, LatentDecodeJob, TextJob
from studio.engine.runner import Runner
from studio.models import paths
from studio.models.registry import ModelRegistry, default_roots

from run_jobs import run

EMBEDDED = {"emoji-sd": "image", "prose": "text", "emoji-vae": "latent", "emoji-gan": "latent", "prose-gguf": "text"}
CONVERTED = {"prose-gguf": "studio to-gguf prose"}  # not trained: made from another embedded model
BUDGET_BYTES = 40 * 1024 * 1024


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setenv("STUDIO_EMBEDDED_MODELS_DIR", str(paths.EMBEDDED_MODELS_DIR))
    return ModelRegistry(default_roots())


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a socket was opened: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_embedded_models_are_listed_with_kind_and_licence(registry):
    found = {m.id: m for m in registry.models() if m.source == "embedded"}
    assert {k: found[k].kind for k in EMBEDDED if k in found} == EMBEDDED
    assert all(found[k].licence for k in EMBEDDED)
    assert not registry.problems
    for kind, model in (("image", "emoji-sd"), ("text", "prose"), ("latent", "emoji-vae")):
        assert registry.models(kind)[0].id == model  # what a workspace picks with nothing else


def test_the_folder_is_small_fp16_and_world_readable():
    total = 0
    for path in paths.EMBEDDED_MODELS_DIR.rglob("*"):
        if path.is_file():
            total += path.stat().st_size
            assert path.stat().st_mode & 0o777 == 0o644, path
        if path.suffix == ".safetensors":
            with open(path, "rb") as f:
                header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
            dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
            assert dtypes <= {"F16", "I64"}, (path, dtypes)
    assert total <= BUDGET_BYTES
    for model in EMBEDDED:
        card = (paths.EMBEDDED_MODELS_DIR / model / "MODEL_CARD.md").read_text()
        if model in CONVERTED:
            assert CONVERTED[model] in card  # the command that made it
        else:
            assert "Training time" in card and "Hardware" in card and "eval:start" in card


def test_prose_gguf_writes_what_prose_writes(registry, no_network):
    """The same weights on llama.cpp (Q8_0) and on torch: the same greedy text, as the card says."""
    runner = Runner(registry)
    texts = []
    for model in ("prose", "prose-gguf"):
        end = run(runner, TextJob(model=model, prompt="Once upon a time", temperature=0.0, max_new_tokens=40))[-1]
        assert isinstance(end, Finished)
        texts.append(end.result.text)
    assert texts[0] == texts[1] and len(texts[0].split()) > 20
    assert end.result.info.runtime == "llama.cpp"


def test_emoji_sd_draws_the_same_picture_for_the_same_seed(registry, no_network):
    runner = Runner(registry)
    spec = ImageJob(model="emoji-sd", prompt="red apple", seed=1, steps=8, width=64, height=64)
    first, again = run(runner, spec)[-1], run(runner, spec)[-1]
    other = run(runner, ImageJob(model="emoji-sd", prompt="red apple", seed=2, steps=8, width=64, height=64))[-1]
    assert isinstance(first, Finished)
    image = first.result.images[0]
    assert image.shape == (64, 64, 3) and image.std() > 10  # a picture, not a flat colour
    assert np.array_equal(image, again.result.images[0])
    assert not np.array_equal(image, other.result.images[0])


def test_emoji_sd_components_make_img2img_and_inpainting_pipelines(no_network):
    """The issue's promise for diffusers users: img2img and inpainting pipelines built from the
    same components work (inpainting needs a 4-channel latent, which emoji-sd has)."""
    import torch
    from diffusers import DiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline
    from PIL import Image

    pipe = DiffusionPipeline.from_pretrained(
        str(paths.EMBEDDED_MODELS_DIR / "emoji-sd"), local_files_only=True, dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    start = Image.new("RGB", (64, 64), (250, 250, 250))
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    out = img2img(
        "red apple", image=start, strength=0.8, num_inference_steps=6, generator=torch.Generator().manual_seed(1)
    ).images[0]
    assert out.size == (64, 64) and np.asarray(out).std() > 5
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpaint = StableDiffusionInpaintPipeline(**pipe.components)
    out = inpaint(
        "red apple",
        image=start,
        mask_image=mask,
        strength=1.0,
        num_inference_steps=6,
        generator=torch.Generator().manual_seed(1),
    ).images[0]
    inside = np.asarray(out)[16:48, 16:48].astype(int)
    assert out.size == (64, 64) and np.abs(inside - 250).mean() > 10


def test_emoji_sd_inpaints_through_the_studio_keeping_the_rest(registry, no_network, tmp_path):
    from PIL import Image

    picture = np.full((64, 64, 3), 250, np.uint8)
    picture[:, :8] = (20, 90, 200)  # a blue stripe that must survive untouched
    Image.fromarray(picture).save(tmp_path / "start.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[12:52, 12:52] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    spec = ImageJob(
        model="emoji-sd",
        prompt="red apple",
        seed=1,
        steps=12,
        width=64,
        height=64,
        guidance_scale=5.0,
        init_image=str(tmp_path / "start.png"),
        mask=str(tmp_path / "mask.png"),
        strength=1.0,
    )
    out = run(Runner(registry), spec)[-1].result.images[0]
    keep = mask == 0
    assert np.array_equal(out[keep], picture[keep])
    assert np.abs(out[~keep].astype(int) - 250).mean() > 10  # something was painted inside


def test_prose_tokenizer_round_trips_and_the_model_streams_the_same_text_for_a_seed(registry, no_network):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(paths.EMBEDDED_MODELS_DIR / "prose"), local_files_only=True)
    sentence = "It was a dark and stormy night; Mr. Darcy's café bill came to £42."
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    assert len(tokenizer) >= 8000 and 0 < len(ids) < len(sentence) and tokenizer.decode(ids) == sentence
    runner = Runner(registry)
    spec = TextJob(model="prose", prompt="It was a dark and stormy night", max_new_tokens=20, seed=1)
    text = ["".join(e.text for e in run(runner, spec) if isinstance(e, Token)) for _ in range(2)]
    assert text[0] == text[1] and len(text[0].split()) >= 5


@pytest.mark.parametrize("model", ["emoji-vae", "emoji-gan"])
def test_latent_models_decode_and_their_first_axes_matter_most(registry, model):
    runner = Runner(registry)
    dim = registry.resolve(model).latent_dim
    decode = lambda latent: run(runner, LatentDecodeJob(model=model, latent=tuple(latent)))[-1].result.images[0]  # noqa: E731
    rng = np.random.default_rng(0)
    base = rng.standard_normal(dim) * 0.5
    image = decode(base).astype(float)
    assert image.shape == (64, 64, 3) and np.array_equal(image, decode(base))

    def change(axis):
        moved = base.copy()
        moved[axis] += 3.0
        return np.abs(decode(moved).astype(float) - image).mean()

    # Axes are principal directions, most variance first: +3σ on the first axis changes the
    # picture far more than +3σ on the last.
    assert change(0) > 3 * change(dim - 1)


def test_studio_eval_measures_a_shipped_model(registry, capsys, monkeypatch):
    from studio.cli import main

    monkeypatch.setattr("studio.training.evaluate.load_emoji", _shipped_eval_images)
    assert main(["eval", "emoji-vae", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "FD-emoji" in out and "reconstruction PSNR" in out


def _shipped_eval_images(size=64):
    """Emoji images without fetching npm packages in a test: the first two rows of emoji-vae's
    sample sheet (real validation images and their reconstructions), cut into 64 px tiles."""
    from PIL import Image

    from studio.training.data.emoji_data import EmojiSet

    sheet = np.asarray(Image.open(paths.EMBEDDED_MODELS_DIR / "emoji-vae" / "samples.png").convert("RGB"))
    tiles = [sheet[2 + r * 66 : 2 + r * 66 + 64, 2 + c * 66 : 2 + c * 66 + 64] for r in range(2) for c in range(8)]
    n = len(tiles)
    return EmojiSet(
        images=np.stack(tiles),
        labels=[f"tile {i}" for i in range(n)],
        tags=[[] for _ in range(n)],
        category=np.arange(n) % 8,
        subcategory=["" for _ in range(n)],
        hexcode=[str(i) for i in range(n)],
        val=np.arange(n) % 2 == 0,
    )
