"""`studio morph` on a diffusion model: seed travel (--seeds) and prompt travel (--prompts) written
as GIFs on a tiny random Stable Diffusion pipeline; ancestral samplers swapped with a note on
stderr; flags a model cannot take refused with one sentence."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from studio.bench.tiny_models import build_tiny_diffusers
from studio.cli import main
from studio.models import paths

from fake_models import write_fake_model

FAST = ["--steps", "2", "--size", "32", "--spacing", "uniform"]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_diffusers(tmp_path_factory.mktemp("cli-morph") / "tiny-sd")


@pytest.fixture
def user_models(tiny_sd):
    shutil.copytree(tiny_sd, paths.user_models_dir() / "tiny-sd")
    write_fake_model(paths.user_models_dir() / "fake-latent", "latent", step_seconds=0.0, latent_dim=8, image_size=16)
    return paths.user_models_dir()


def frames_in(path) -> tuple[int, tuple[int, int]]:
    with Image.open(path) as gif:
        return gif.n_frames, gif.size


def test_seed_travel_writes_a_gif_of_every_frame(user_models, tmp_path, capsys):
    out = tmp_path / "seeds.gif"
    code = main(
        [
            "morph",
            "--model",
            "tiny-sd",
            "--seeds",
            "1,2,3",
            "--prompt",
            "a red cat",
            "--frames",
            "5",
            "--fps",
            "10",
            *FAST,
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(out) and "morph [" in captured.err  # the progress bar on stderr
    assert frames_in(out) == (5, (32, 32))


def test_prompt_travel_writes_a_gif_and_shows_its_seed(user_models, tmp_path, capsys):
    out = tmp_path / "prompts.gif"
    code = main(
        [
            "morph",
            "--model",
            "tiny-sd",
            "--prompts",
            "a red cat | a photo of a green apple",
            "--seed",
            "5",
            "--negative",
            "blurry",
            "--guidance",
            "6",
            "--frames",
            "4",
            *FAST,
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "seed 5" in captured.err
    assert frames_in(out) == (4, (32, 32))


def test_an_ancestral_sampler_is_swapped_with_a_note_on_stderr(user_models, tmp_path, capsys):
    out = tmp_path / "euler.gif"
    assert (
        main(
            [
                "morph",
                "--model",
                "tiny-sd",
                "--seeds",
                "1,2",
                "--frames",
                "3",
                "--scheduler",
                "Euler a",
                *FAST,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "Euler a draws fresh noise at every step" in err and "ran with Euler instead" in err
    assert frames_in(out)[0] == 3


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "tiny-sd", "--prompts", "a red cat"], ["`prompts`", "at least two"]),
        (["--model", "tiny-sd", "--prompts", "a|b", "--seeds", "1,2,3"], ["`seeds`", "one seed per prompt"]),
        (["--model", "tiny-sd", "--seeds", "1,2", "--seed", "4"], ["--seed is for prompt travel"]),
        (["--model", "tiny-sd", "--prompts", "a|b", "--prompt", "c"], ["--prompt is for seed travel"]),
        (["--model", "tiny-sd", "--seeds", "1,2", "--size", "30"], ["`width`", "divisible by 8"]),
        (["--model", "fake-latent", "--prompts", "a|b"], ["--prompts is for diffusion image models", "latent model"]),
        (["--model", "fake-latent", "--seeds", "1,2", "--steps", "3"], ["--steps is for diffusion image models"]),
        (["--model", "tiny-sd"], ["--seeds, --prompts or --latents"]),
    ],
)
def test_bad_flags_are_one_sentence(user_models, tmp_path, capsys, args, words):
    assert main(["morph", *args, "--out", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("studio: ")
    for word in words:
        assert word in err
    assert not (tmp_path / "x.gif").exists()
