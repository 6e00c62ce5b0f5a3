"""GalleryWriter: finished images reach the disk off the GUI thread, in order, before they are
announced; a disk that says no is one sentence; closing waits for what was handed over."""

import threading

import numpy as np

from studio.core.jobs import ImageJob
from studio.core.png import PNG_SIGNATURE
from studio.state.gallery import Gallery, GalleryWriter


def images(n):
    return tuple(np.full((8, 8, 3), 40 * i, np.uint8) for i in range(n))


def specs(n, seed=3):
    spec = ImageJob(model="m", prompt="p", seed=seed, count=n, width=8, height=8)
    return [spec.one_image(i) for i in range(n)]


def test_a_batch_is_written_off_the_calling_thread_then_announced(qtbot, tmp_path, monkeypatch):
    gallery = Gallery(tmp_path / "gallery")
    threads = []
    real_save = gallery.save
    monkeypatch.setattr(gallery, "save", lambda *a: threads.append(threading.current_thread()) or real_save(*a))
    writer = GalleryWriter(gallery)
    reports = []  # (which write, the paths it reported)
    with qtbot.waitSignal(writer.saved, timeout=5_000) as blocker:
        writer.write(images(3), specs(3), {"scheduler": "Euler"}, on_saved=lambda written: reports.append((7, written)))
    [(job_id, paths)] = reports
    assert blocker.args == [paths]
    assert job_id == 7 and len(paths) == 3
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in paths)
    assert [p.stem.split("-")[-1] for p in paths] == ["3", "4", "5"]  # each with its own seed
    assert threads and all(t is not threading.main_thread() for t in threads)
    writer.close()


def test_a_disk_that_says_no_is_one_sentence(qtbot, tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    writer = GalleryWriter(Gallery(blocked / "gallery"))
    with (
        qtbot.waitSignal(writer.failed, timeout=5_000) as failed,
        qtbot.waitSignal(writer.saved, timeout=5_000) as saved,
    ):
        writer.write(images(1), specs(1), {})
    assert failed.args[0].startswith("Could not save the image in ") and failed.args[0].endswith(").")
    assert saved.args[0] == []
    writer.close()


def test_close_waits_for_every_image_and_later_ones_are_written_at_once(qtbot, tmp_path):
    gallery = Gallery(tmp_path / "g")
    writer = GalleryWriter(gallery)
    for job in range(5):
        writer.write(images(2), specs(2, seed=10 * job), {})
    writer.close()
    assert len(list(gallery.folder.glob("*.png"))) == 10
    reports = []
    writer.write(images(1), specs(1, seed=99), {}, on_saved=reports.append)  # a result arriving while the window closes
    assert len(list(gallery.folder.glob("*.png"))) == 11
    assert [len(paths) for paths in reports] == [1], "reported at once, to the write's own callback"
