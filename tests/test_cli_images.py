"""`studio generate` with a user's single-file checkpoint, samplers, batches, img2img, inpainting and
LoRA flags, and `studio info` reading the result back; broken files give one sentence."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.models import paths

import fake_checkpoints as fc


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny SD 1.x checkpoint in the original single-file layout, and the tiny configs it needs
    (the shipped configs are full size)."""
    root = tmp_path_factory.mktemp("cli-checkpoint")
    pipe = fc.tiny_sd1_pipeline()
    pipe.save_pretrained(str(root / "folder"), safe_serialization=True)
    fc.write_config_root(root / "folder", root / "configs", "sd15")
    return fc.save_single_file(pipe, root / "my-model.safetensors"), root / "configs"


@pytest.fixture
def user_checkpoint(checkpoint, monkeypatch):
    from studio.engine.backends.diffusion import single_file_pipeline as sd_single_file

    path, configs = checkpoint
    monkeypatch.setattr(sd_single_file, "CONFIG_ROOT", configs)
    target = paths.user_models_dir() / path.name
    target.write_bytes(path.read_bytes())
    return target


def test_a_batch_from_a_single_file_checkpoint_and_studio_info(user_checkpoint, tmp_path, capsys):
    out = tmp_path / "cat.png"
    code = main(
        [
            "generate",
            "a photo of a cat",
            "--model",
            "my-model",
            "--seed",
            "40",
            "--steps",
            "3",
            "--size",
            "64",
            "--scheduler",
            "DPM++ 2M Karras",
            "--count",
            "2",
            "--negative",
            "blurry",
            "--cfg",
            "6.5",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    files = [out, tmp_path / "cat-1.png"]
    assert capsys.readouterr().out.split() == [str(f) for f in files]
    first, second = (np.asarray(Image.open(f)) for f in files)
    assert not np.array_equal(first, second)
    parameters = Image.open(files[1]).text["parameters"]
    digest = hashlib.sha256(user_checkpoint.read_bytes()).hexdigest()
    assert parameters.splitlines() == [
        "a photo of a cat",
        "Negative prompt: blurry",
        f"Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 41, Size: 64x64, "
        f"Model hash: {digest[:10]}, Model: my-model, Version: studio-0.1.0",
    ]

    assert main(["info", str(files[1])]) == 0
    info = capsys.readouterr().out
    assert "a photo of a cat" in info and "41" in info and "DPM++ 2M Karras" in info

    # The second image made again alone, from its own seed: the same pixels.
    again = tmp_path / "again.png"
    assert (
        main(
            [
                "generate",
                "a photo of a cat",
                "--model",
                "my-model",
                "--seed",
                "41",
                "--steps",
                "3",
                "--size",
                "64",
                "--scheduler",
                "DPM++ 2M Karras",
                "--negative",
                "blurry",
                "--cfg",
                "6.5",
                "--out",
                str(again),
            ]
        )
        == 0
    )
    assert np.array_equal(np.asarray(Image.open(again)), second)


def test_inpainting_from_the_command_line_keeps_the_unmasked_pixels(user_checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(3)
    picture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "in.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "generate",
                "a red cat",
                "--model",
                "my-model",
                "--seed",
                "1",
                "--steps",
                "4",
                "--size",
                "64",
                "--init",
                str(tmp_path / "in.png"),
                "--mask",
                str(tmp_path / "mask.png"),
                "--strength",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    ), capsys.readouterr().err
    result = np.asarray(Image.open(out))
    keep = mask == 0
    assert np.array_equal(result[keep], picture[keep])
    assert "Denoising strength: 1" in Image.open(out).text["parameters"]


def test_mask_without_init_and_a_missing_lora_are_one_sentence(user_checkpoint, tmp_path, capsys):
    Image.new("L", (64, 64), 255).save(tmp_path / "mask.png")
    assert main(["generate", "x", "--model", "my-model", "--mask", str(tmp_path / "mask.png")]) == 2
    assert capsys.readouterr().err.strip() == "studio: --mask needs --init: the image to paint into."
    assert main(["generate", "x", "--model", "my-model", "--lora", "nothing-here:0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("studio: --lora names nothing-here") and err.count("\n") == 0


@pytest.mark.parametrize(
    "content, words",
    [
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 2132625894\n", "Git LFS pointer"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "web page"),
        (b"PK\x03\x04" + b"\0" * 60, "pickle"),
    ],
)
def test_a_broken_checkpoint_is_one_sentence_from_the_cli(tmp_path, capsys, content, words):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(content)
    code = main(["generate", "x", "--model", str(bad), "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and err.startswith("studio: ") and err.count("\n") == 0
    assert words in err and "Traceback" not in err
