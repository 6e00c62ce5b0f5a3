"""Gallery writes under a full disk and under kill -9: a disk that fills up is one sentence naming
the folder, leaves neither a temporary file nor a partial image, and the writer carries on once
there is room; a process killed while it saves large images never leaves a half-written .png."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core import atomic
from studio.core.errors import StudioError
from studio.core.jobs import ImageJob
from studio.core.png import read_png_text
from studio.state.gallery import Gallery, GalleryWriter
from studio.ui.gallery_strip import newest_pngs

ENOSPC = "No space left on device"


class FullDisk:
    """A disk with `free` bytes left: a write past them puts what fits, then fails with ENOSPC
    (as write(2) does). With `at_fsync`, writes are accepted and fsync reports the full disk (as
    on file systems that allocate late)."""

    def __init__(self, monkeypatch, free: int = 0, at_fsync: bool = False):
        self.free = free
        real_fdopen = os.fdopen
        if at_fsync:

            def full_fsync(fd):
                raise OSError(errno.ENOSPC, ENOSPC)

            monkeypatch.setattr(atomic.os, "fsync", full_fsync)
        else:
            monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: _FillingFile(real_fdopen(fd, *a, **k), self))


class _FillingFile:
    """The file write_atomic writes through, on a disk that fills up."""

    def __init__(self, file, disk: FullDisk):
        self.file, self.disk = file, disk

    def write(self, data) -> int:
        room = min(len(data), self.disk.free)
        self.file.write(bytes(data[:room]))
        self.file.flush()
        self.disk.free -= room
        if room < len(data):
            raise OSError(errno.ENOSPC, ENOSPC)
        return room

    def fileno(self) -> int:
        return self.file.fileno()

    def flush(self) -> None:
        self.file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def image(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def spec(seed: int, size: int = 64) -> ImageJob:
    return ImageJob(model="m", prompt=f"noise {seed}", seed=seed, width=size, height=size)


def decodes_to(path: Path, rgb: np.ndarray) -> bool:
    """A real decoder reads the whole file and gets exactly these pixels."""
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return np.array_equal(np.asarray(im.convert("RGB")), rgb)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_is_one_sentence_naming_the_folder_and_leaves_nothing_behind(tmp_path, monkeypatch, where):
    gallery = Gallery(tmp_path / "gallery")
    kept = gallery.save(image(1), spec(1))  # saved while there was room
    with monkeypatch.context() as m:
        FullDisk(m, free=5000, at_fsync=where == "fsync")  # room for part of the next image
        with pytest.raises(StudioError) as info:
            gallery.save(image(2), spec(2))
    assert info.value.message == f"Could not save the image in {gallery.folder} ({ENOSPC})."
    assert [p.name for p in gallery.folder.iterdir()] == [kept.name], "no temporary file, no partial image"
    assert decodes_to(kept, image(1)), "the image saved before the disk filled is untouched"


def test_the_writer_says_so_when_the_disk_fills_mid_batch_and_carries_on_when_there_is_room(
    qtbot, tmp_path, monkeypatch
):
    gallery = Gallery(tmp_path / "gallery")
    writer = GalleryWriter(gallery)
    reports = []  # (which write, the paths it reported): each write reports to its own callback
    with monkeypatch.context() as m:
        one_image = len(Path(gallery.save(image(0), spec(0))).read_bytes())
        FullDisk(m, free=one_image + 100)  # room for one more image of this batch, not two
        with (
            qtbot.waitSignal(writer.failed, timeout=5_000) as failed,
            qtbot.waitSignal(writer.saved, timeout=5_000) as saved,
        ):
            writer.write(
                (image(1), image(2), image(3)),
                [spec(1), spec(2), spec(3)],
                {},
                on_saved=lambda paths: reports.append((1, paths)),
            )
    [(job_id, written)] = reports
    assert failed.args == [f"Could not save the image in {gallery.folder} ({ENOSPC})."] and job_id == 1
    assert saved.args == [written]
    assert job_id == 1 and len(written) == 1 and decodes_to(written[0], image(1)), "the image before it is kept"
    assert sorted(p.suffix for p in gallery.folder.iterdir()) == [".png", ".png"], "nothing partial left"

    # Room again: the next image is written as usual, by the same writer.
    with qtbot.waitSignal(writer.saved, timeout=5_000) as saved:
        writer.write((image(4),), [spec(4)], {}, on_saved=lambda paths: reports.append((2, paths)))
    assert reports[-1][0] == 2 and decodes_to(saved.args[0][0], image(4))
    writer.close()


# --- kill -9 while saving ------------------------------------------------------------------------

SIZE = 640  # noise this size packs to ~1.2 MB
# The child saves images through Gallery.save in a loop and says when each file write starts (the
# write itself is the real one), so the parent can kill it inside a write rather than while it
# is still packing the pixels, which takes most of the time.
CHILD = f"""
import sys
from pathlib import Path
import numpy as np
from studio.core import png
from studio.core.jobs import ImageJob
from studio.state.gallery import Gallery

def say_when_writing(path, data, write=png.write_atomic):
    print("writing", flush=True)
    write(path, data)

png.write_atomic = say_when_writing
gallery, run = Gallery(Path(sys.argv[1])), int(sys.argv[2])
n = 0
while True:
    seed = run * 1000 + n
    rgb = np.random.default_rng(seed).integers(0, 256, ({SIZE}, {SIZE}, 3), dtype=np.uint8)
    print(gallery.save(rgb, ImageJob(model="m", prompt=f"noise {{seed}}", seed=seed, width={SIZE}, height={SIZE})),
          flush=True)
    n += 1
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_an_image_is_never_half_written_when_the_studio_is_killed_while_saving(tmp_path):
    folder, rng, checked = tmp_path / "gallery", random.Random(11), set()
    kills = 20
    for run in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(folder), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lines = [child.stdout.readline() for _ in range(3)]  # the first image saved, the next one writing
            assert lines[1].endswith(".png\n") and lines[2] == "writing\n", (
                f"the child never saved: {lines!r} {child.stderr.read()[-2000:]}"
            )
            # Within the write: writing 1.2 MB takes about a millisecond, its fsync a few more. (With
            # a plain open-and-write instead of write_atomic, about one kill in five tears an image.)
            time.sleep(rng.uniform(0, 0.003))
            child.send_signal(signal.SIGKILL)
            rest, _ = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        announced = {Path(line) for line in "".join(lines).splitlines() + rest.splitlines() if line != "writing"}

        # Every image the gallery shows, announced or written just before the kill, is whole.
        shown = set(newest_pngs(folder, 100_000))
        assert announced <= shown
        for path in shown - checked:
            seed = json.loads(read_png_text(path.read_bytes())["studio"])["seed"]
            assert decodes_to(path, image(seed, SIZE)), path.name
        checked = shown
    # What a kill leaves mid-write is a hidden temporary file, which the gallery never shows.
    others = [p.name for p in folder.iterdir() if p.suffix != ".png"]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in others), others
    print(f"{kills} kills: {len(checked)} images, all whole; {len(others)} kills inside a write left a temp file")
