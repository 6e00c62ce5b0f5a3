"""Autosave under kill -9: a separate process autosaves a large document over and over and is
killed at a random moment, a hundred times. Every time, the draft on disk is one whole version
(the last one announced, or the one being written when the process died), never a mix or a
torn file; no leftover temporary file is taken for a draft; and the next run offers it back."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.writing import autosave
from studio.writing.storage import load_document

KILLS = 100

# The documents the child writes, version by version: ~1.5 MB each, the version number in the
# name, the text, the memory and a generated span, and the text rotated so that every version
# differs all through. The test builds the same versions to compare.
VERSIONS = """
from studio.writing.document import Document

LINE = "Line {}: the keeper climbed the stairs and lit the lamp again. "


def version(n, lines=22_000):
    body = "".join(LINE.format(i) for i in range(lines))
    shift = (n * 7919) % len(body)
    doc = Document(f"Draft {n}.\\n" + body[shift:] + body[:shift], name=f"Novel {n}")
    doc.add_generation(len(doc.text), f" The sea answered, for the {n}th time.")
    doc.memory = f"Saved {n} times."
    return doc
"""

# The child: autosave version 1, 2, 3, ... as fast as it can, saying each one is on disk.
CHILD = (
    VERSIONS
    + """
import sys
from studio.writing.autosave import Autosaver

saver, lines = Autosaver("Novel", sys.argv[1]), int(sys.argv[2])
n = 0
while True:
    n += 1
    saver.save_now(version(n, lines))
    print(n, flush=True)
"""
)

_versions: dict = {}
exec(VERSIONS, _versions)
version = _versions["version"]


def autosave_and_kill(folder: Path, rng: random.Random, lines: int = 22_000) -> int:
    """Start a child autosaving `version(n, lines)` into `folder`, kill -9 it 0-50 ms after its
    first save is on disk, and return the last version it announced as saved."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder), str(lines)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = child.stdout.readline()
        assert first.strip() == "1", f"the child never saved: {first!r} {child.stderr.read()[-2000:]}"
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return int((first + rest).split()[-1])


@pytest.mark.slow
@pytest.mark.timeout(280)
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_draft_survives_kill_9_during_autosave_whole_and_is_offered_on_next_start(tmp_path):
    rng = random.Random(7)
    newer, leftovers = 0, 0
    for kill in range(KILLS):
        folder = tmp_path / f"run{kill}"
        announced = autosave_and_kill(folder, rng)

        # The next run (this process: another session) finds the draft and offers it.
        draft = folder / "Novel.studio-doc.json"
        assert autosave.recoverable(folder) == [draft], sorted(p.name for p in folder.iterdir())
        loaded = load_document(draft)
        # Whole: exactly one version the child wrote, the last announced or the one in flight.
        saved = int(loaded.memory.split()[1])
        assert saved in (announced, announced + 1), (saved, announced)
        assert loaded == version(saved)
        newer += saved == announced + 1

        # Nothing else in the folder but the marker and, when the kill came mid-write, the
        # temporary file of the write that never finished (hidden, and never offered).
        others = sorted(p.name for p in folder.iterdir() if p.name not in (draft.name, "Novel.studio-doc.open"))
        assert all(name.startswith(".Novel.studio-doc.") and name.endswith(".tmp") for name in others), others
        leftovers += bool(others)
    print(f"{KILLS} kills: every draft whole; {newer} were the save in flight, {leftovers} left a temp file")
