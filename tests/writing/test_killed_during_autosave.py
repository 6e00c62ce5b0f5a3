"""Kill -9 during autosave, 100 times: the draft on disk is always a whole earlier version, and the
next run offers it back."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from studio.writing import autosave
from studio.writing.storage import load_document

KILLS = 100

# Autosaves a ~1 MB draft in a tight loop; each version's text starts with its number. Announces
# the first save, so the kill lands while later saves are being written.
WRITER = r"""
import sys
from studio.writing.autosave import Autosaver
from studio.writing.document import Document

saver = Autosaver("Novel", sys.argv[1])
body = "The lantern moon rose over the quiet river. " * 24_000
version = int(sys.argv[2])
while True:
    saver.save_now(Document(f"version {version:07d}\n" + body))
    if version == int(sys.argv[2]):
        print("saved", flush=True)
    version += 1
"""


@pytest.mark.timeout(600)
def test_killing_the_studio_mid_autosave_never_loses_the_previous_draft(tmp_path, monkeypatch):
    folder = tmp_path / "documents"
    rng = random.Random(11)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    last_seen = 0
    for kill in range(KILLS):
        start = last_seen + 1  # every run writes higher versions than any before it
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(start)], stdout=subprocess.PIPE,
                                 env=env, text=True)
        assert child.stdout.readline().strip() == "saved"
        time.sleep(rng.uniform(0.0, 0.05))  # a random moment across the next few ~1 MB saves
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        draft = load_document(folder / "Novel.studio-doc.json")  # whole, or this raises
        version = int(draft.text.split("\n", 1)[0].split()[1])
        assert start <= version, f"kill {kill}: the draft went back to version {version}"
        assert draft.text.endswith("quiet river. ")
        last_seen = version
    # The temp files a kill can leave are never taken for drafts, and the draft is offered back.
    monkeypatch.setattr(autosave, "SESSION", "the-next-run")
    assert autosave.recoverable(folder) == [folder / "Novel.studio-doc.json"]
    assert [p.name for p in folder.iterdir() if p.name.endswith(".studio-doc.json")] == ["Novel.studio-doc.json"]
