"""The CLI's progress on stderr: a tqdm bar redrawn in place on a terminal; one line per stage, and
no carriage returns, when stderr is a pipe or a log file (a piped `studio write` used to fill the
log with a frame per token)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from studio.cli_progress import StageProgress
from studio.models import paths


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_one_line_when_the_stage_ends():
    stream = io.StringIO()
    stage = StageProgress("seed 7", stream=stream)
    for step in range(1, 21):
        stage.update(step, 20)
    assert stream.getvalue() == ""  # nothing while it runs
    stage.close()
    assert re.fullmatch(r"seed 7 \[20/20 steps\] \d+\.\d s\n", stream.getvalue())


def test_a_stage_that_never_started_says_nothing():
    stream = io.StringIO()
    StageProgress("morph", stream=stream).close()
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_bar_redrawn_in_place():
    stream = FakeTerminal()
    stage = StageProgress("seed 7", unit="token", stream=stream)
    for step in range(1, 5):
        stage.update(step, 4)
    stage.close()
    text = stream.getvalue()
    assert "\r" in text and "seed 7" in text and "4/4" in text and text.endswith("\n")


def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDIO_EMBEDDED_MODELS_DIR": str(paths.EMBEDDED_MODELS_DIR)}
    exe = os.path.join(os.path.dirname(sys.executable), "studio")
    # Both streams are pipes, as under a service manager or `2> log`.
    return subprocess.run([exe, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_piped_write_and_generate_leave_one_line_per_stage_and_no_carriage_return(tmp_path):
    done = run_cli(
        tmp_path,
        "write",
        "It was a dark and stormy night",
        "--model",
        "prose",
        "--max-tokens",
        "40",
        "--seed",
        "3",
        "--progress",
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    assert re.fullmatch(r"seed 3 \[\d+/40 tokens\] \d+\.\d s", done.stderr.strip()), done.stderr

    done = run_cli(
        tmp_path, "generate", "a red heart", "--model", "emoji-sd", "--steps", "4", "--seed", "5", "--out", "heart.png"
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    assert re.fullmatch(r"seed 5 \[4/4 steps\] \d+\.\d s", done.stderr.strip()), done.stderr
    assert (tmp_path / "heart.png").is_file()
