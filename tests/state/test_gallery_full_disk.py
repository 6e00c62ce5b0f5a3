"""A full disk while the gallery writes: one sentence naming the folder, no half-written or temp
file left behind, and the writer carries on with the next image once there is room. A process
killed while it writes leaves only whole pictures."""

import errno
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from studio.core import atomic
from studio.core.errors import StudioError
from studio.core.jobs import ImageJob
from studio.state.gallery import Gallery, GalleryWriter

SPEC = ImageJob(model="m", prompt="a lighthouse", seed=5, width=64, height=64)


def full_disk(monkeypatch):
    """Writes reach the page cache, and the disk says it is full when they are made durable."""
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", no_space)


def test_a_full_disk_is_one_sentence_and_leaves_nothing_behind(tmp_path, monkeypatch):
    gallery = Gallery(tmp_path / "gallery")
    full_disk(monkeypatch)
    with pytest.raises(StudioError) as caught:
        gallery.save(np.zeros((64, 64, 3), np.uint8), SPEC)
    assert caught.value.message == f"Could not save the image in {tmp_path / 'gallery'} (No space left on device)."
    assert list((tmp_path / "gallery").iterdir()) == []  # no .png, no .tmp


def test_the_writer_reports_a_full_disk_and_saves_the_next_image_when_there_is_room(qtbot, tmp_path, monkeypatch):
    writer = GalleryWriter(Gallery(tmp_path / "gallery"))
    full_disk(monkeypatch)
    with qtbot.waitSignal(writer.failed, timeout=5_000) as failed:
        writer.write(1, (np.zeros((64, 64, 3), np.uint8),), [SPEC], {})
    assert "No space left on device" in failed.args[1]
    monkeypatch.undo()
    with qtbot.waitSignal(writer.saved, timeout=5_000) as saved:
        writer.write(2, (np.full((64, 64, 3), 200, np.uint8),), [SPEC], {})
    assert saved.args[0] == 2 and len(saved.args[1]) == 1
    assert sorted(p.suffix for p in (tmp_path / "gallery").iterdir()) == [".png"]
    writer.close()


WRITER = r"""
import sys
import numpy as np
from studio.core.jobs import ImageJob
from studio.state.gallery import Gallery

gallery = Gallery(__import__("pathlib").Path(sys.argv[1]))
rng = np.random.default_rng(int(sys.argv[2]))
for seed in range(10_000):
    gallery.save(rng.integers(0, 256, (768, 768, 3), dtype=np.uint8), ImageJob(model="m", seed=seed, width=768, height=768))
    if seed == 0:
        print("saved", flush=True)
"""


@pytest.mark.timeout(300)
def test_a_process_killed_while_writing_leaves_only_whole_pictures(tmp_path):
    folder = tmp_path / "gallery"
    rng = random.Random(3)
    for run in range(20):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(run)], stdout=subprocess.PIPE,
                                 text=True)
        assert child.stdout.readline().strip() == "saved"
        time.sleep(rng.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    pictures = sorted(folder.glob("*.png"))
    assert len(pictures) >= 20
    for path in pictures:
        with Image.open(path) as image:
            image.load()  # a cut-short PNG raises here
            assert image.size == (768, 768)
