"""The `studio` command: listing, generating, streaming, and one sentence + exit 2 on bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio.cli import main


def test_models_lists_id_kind_format_size_licence_and_source(fake_models, capsys):
    import json as json_

    manifest = fake_models / "fake-image" / "studio.json"
    manifest.write_text(json_.dumps({**json_.loads(manifest.read_text()), "licence": "Apache-2.0"}))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "fake-image" in out and "fake-text" in out
    header = out.splitlines()[0].split()
    assert header[:7] == ["ID", "KIND", "FORMAT", "RUNTIMES", "SIZE", "LICENCE", "SOURCE"]
    row = next(line.split() for line in out.splitlines() if line.startswith("fake-image"))
    assert row[3] == "torch" and row[6] == "Apache-2.0"  # SIZE is two words ("1.0 KB")


def test_models_with_nothing_found_says_where_to_put_them(capsys):
    assert main(["models"]) == 0
    assert os.environ["STUDIO_MODELS_DIR"] in capsys.readouterr().out


def test_generate_writes_a_png_with_its_parameters(fake_models, tmp_path, capsys):
    out = tmp_path / "cat.png"
    assert (
        main(
            [
                "generate",
                "a cat",
                "--model",
                "fake-image",
                "--seed",
                "7",
                "--steps",
                "3",
                "--size",
                "32x48",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    image = Image.open(out)
    assert image.size == (32, 48)
    assert "Seed: 7" in image.text["parameters"]
    assert json.loads(image.text["studio"])["seed"] == 7
    assert "3/3" in capsys.readouterr().err  # the progress bar reached the end


def test_same_seed_same_file(fake_models, tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for p in paths:
        main(["generate", "x", "--model", "fake-image", "--seed", "1", "--steps", "2", "--size", "16", "--out", str(p)])
    a, b = (np.asarray(Image.open(p)) for p in paths)
    assert np.array_equal(a, b)


def test_write_streams_tokens_to_stdout(fake_models, capsys):
    assert main(["write", "Once", "--model", "fake-text", "--max-tokens", "5", "--seed", "2"]) == 0
    assert len(capsys.readouterr().out.split()) == 5


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["generate", "x", "--model", "fake-image", "--size", "65"], "`width`"),
        (["generate", "x", "--model", "fake-image", "--size", "big"], "--size"),
        (["generate", "x", "--model", "missing"], "studio models"),
        (["write", "x", "--model", "fake-text", "--top-p", "2"], "`top_p`"),
        (["write", "x", "--model", "fake-image"], "image model"),
        (["generate"], "required"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(fake_models, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and err[0].startswith("studio: ")


def test_the_installed_command_runs(fake_models):
    exe = os.path.join(os.path.dirname(sys.executable), "studio")
    done = subprocess.run([exe, "models"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "fake-image" in done.stdout


def test_write_shows_token_progress_on_stderr_when_stdout_is_a_file(fake_models, capsys):
    # capsys's stdout is not a terminal, as when the text is redirected to a file.
    assert main(["write", "Once", "--model", "fake-text", "--max-tokens", "4", "--seed", "2"]) == 0
    assert "4/4" in capsys.readouterr().err
    assert main(["write", "Once", "--model", "fake-text", "--max-tokens", "4", "--no-progress"]) == 0
    assert "4/4" not in capsys.readouterr().err


def test_generate_uses_the_models_suggested_steps_unless_given(fake_models, tmp_path, capsys):
    manifest = fake_models / "fake-image" / "studio.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "defaults": {"steps": 4}}))
    assert main(["generate", "a cat", "--model", "fake-image", "--seed", "1", "--out", str(tmp_path / "a.png")]) == 0
    assert "4/4" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                "a cat",
                "--model",
                "fake-image",
                "--seed",
                "1",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "b.png"),
            ]
        )
        == 0
    )
    assert "2/2" in capsys.readouterr().err
