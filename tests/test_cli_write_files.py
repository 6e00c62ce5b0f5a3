"""`studio write --file` and `studio generate --out` over what the user already has: a symlink
stays a link and its target gets the text, a private story stays private, a device is refused
and stays a device, and a story changed on disk while the model wrote is not overwritten."""

import os
import stat

import pytest

from studio import cli
from studio.cli import main


def write(capsys, *args):
    code = main(["write", "--model", "fake-text", "--no-progress", "--max-tokens", "4", "--seed", "1", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_story_behind_a_symlink_is_continued_and_the_link_kept(fake_models, tmp_path, capsys):
    real = tmp_path / "drafts" / "story.md"
    real.parent.mkdir()
    real.write_text("The lantern swung")
    link = tmp_path / "story.md"
    link.symlink_to(real)
    code, out, err = write(capsys, "--file", str(link))
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "The lantern swung" + out.rstrip("\n") and out.strip()


def test_a_private_story_stays_private(fake_models, tmp_path, capsys):
    story = tmp_path / "story.md"
    story.write_text("Dear diary")
    story.chmod(0o600)
    code, _, err = write(capsys, "--file", str(story))
    assert code == 0, err
    assert story.read_text() != "Dear diary" and stat.S_IMODE(story.stat().st_mode) == 0o600


def test_a_story_saved_by_someone_else_while_the_model_wrote_is_kept(fake_models, tmp_path, capsys, monkeypatch):
    story = tmp_path / "story.md"
    story.write_text("Once upon a time")
    stream = cli._stream_text

    def another_save_meanwhile(*args, **kwargs):  # a second `studio write` finishing first
        end = stream(*args, **kwargs)
        story.write_text("Once upon a time, said the other window.")
        return end

    monkeypatch.setattr(cli, "_stream_text", another_save_meanwhile)
    code, out, err = write(capsys, "--file", str(story))
    assert code == cli.EXIT_FAILED and out.strip()
    assert err.startswith("studio: story.md changed on disk while the model was writing")
    assert err.count("\n") == 1 and f"saved {story}" not in err
    assert story.read_text() == "Once upon a time, said the other window."


@pytest.mark.timeout(60)
def test_generate_out_to_a_device_is_one_sentence_and_the_device_stays(fake_models, tmp_path, capsys):
    out = tmp_path / "cat.png"
    out.symlink_to("/dev/null")
    code = main(
        ["generate", "a cat", "--model", "fake-image", "--seed", "7", "--steps", "2", "--size", "16", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert f"Cannot write {out} (it is a device, not a regular file); choose another --out." in err
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode) and out.is_symlink()
