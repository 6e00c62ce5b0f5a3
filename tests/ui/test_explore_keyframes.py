"""The explorer's keyframes: add, reorder, rename, delete, pick; Play loops a morph on the canvas;
Export writes a GIF or MP4 off the GUI thread, and Cancel leaves no file."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image
from PySide6.QtCore import QItemSelectionModel

from studio.core.jobs import MorphJob
from studio.state.jobs import JobState
from studio.ui import morph_export

from fake_models import write_fake_model


def idle(window) -> bool:
    return not window.jobs.active()


@pytest.fixture
def quick_window(fake_models, make_window):
    """The window over a fake latent model that decodes at once (step_seconds=0)."""
    write_fake_model(fake_models / "fake-latent", "latent", step_seconds=0, latent_dim=8, image_size=32)
    window = make_window()
    window.tabs.setCurrentWidget(window.explore)
    return window


def add_three(qtbot, ws) -> list[tuple]:
    """Move the sliders three times, adding a keyframe after each; returns the latents."""
    latents = []
    for i, values in enumerate(([100, 0], [-50, 120], [30, -200])):
        ws.panel.sliders()[0].setValue(values[0])
        ws.panel.sliders()[1].setValue(values[1])
        ws.keyframes.add_button.click()
        latents.append(ws.panel.latent())
        assert ws.keyframes.names()[-1] == f"Key {i + 1}"
    return latents


def pick(kp, row: int) -> None:
    """What a plain click on a keyframe does: it alone is selected, and current."""
    kp.list.setCurrentRow(row, QItemSelectionModel.SelectionFlag.ClearAndSelect)


def morph_jobs(window) -> list:
    return [r for r in window.jobs if isinstance(r.spec, MorphJob)]


def test_add_reorder_rename_delete_and_selecting_restores_the_sliders(qtbot, quick_window):
    ws = quick_window.explore
    kp = ws.keyframes
    latents = add_three(qtbot, ws)
    assert kp.names() == ["Key 1", "Key 2", "Key 3"]
    assert kp.latents() == tuple(latents)
    assert kp.list.count() == 3

    # Reorder: Key 3 up, to the middle.
    pick(kp, 2)
    kp.up_button.click()
    assert kp.names() == ["Key 1", "Key 3", "Key 2"]
    assert [kp.list.item(i).text() for i in range(3)] == kp.names()
    assert kp.list.currentRow() == 1
    kp.down_button.click()
    assert kp.names() == ["Key 1", "Key 2", "Key 3"]
    pick(kp, 0)
    assert not kp.up_button.isEnabled() and kp.down_button.isEnabled()

    # Rename: as the list's editor does, by changing the item's text.
    kp.list.item(1).setText("Smile")
    assert kp.names() == ["Key 1", "Smile", "Key 3"]
    errors = []
    quick_window.jobs.error.error_changed.connect(errors.append)
    kp.list.item(2).setText("Smile")  # taken: refused, and said
    assert kp.names() == ["Key 1", "Smile", "Key 3"] and kp.list.item(2).text() == "Key 3"
    assert errors and "Smile" in errors[-1]

    # Selecting a keyframe puts the sliders there.
    pick(kp, 1)
    assert ws.panel.latent() == latents[1]
    assert [s.value() for s in ws.panel.sliders()[:2]] == [-50, 120]
    pick(kp, 0)
    assert ws.panel.latent() == latents[0]

    # Delete the selected one; the next added key gets a fresh name.
    kp.delete_button.click()
    assert kp.names() == ["Smile", "Key 3"] and kp.latents() == (latents[1], latents[2])
    ws.keyframes.add_button.click()
    assert kp.names()[-1] == "Key 4" or kp.names()[-1] == "Key 1"
    assert len(set(kp.names())) == 3

    # Thumbnails: each key gets the decode of its point.
    qtbot.waitUntil(lambda: idle(quick_window), timeout=10_000)
    qtbot.waitUntil(lambda: all(not kp.list.item(i).icon().isNull() for i in range(kp.list.count())), timeout=5_000)


def test_fewer_than_two_keyframes_disable_play_and_export(qtbot, quick_window):
    kp = quick_window.explore.keyframes
    assert not kp.play_button.isEnabled() and not kp.export_button.isEnabled()
    assert not kp.delete_button.isEnabled()
    kp.add_button.click()
    assert not kp.play_button.isEnabled() and not kp.export_button.isEnabled()
    quick_window.explore.panel.sliders()[3].setValue(80)
    kp.add_button.click()
    assert kp.play_button.isEnabled() and kp.export_button.isEnabled()
    kp.delete_button.click()
    assert not kp.play_button.isEnabled() and not kp.export_button.isEnabled()


def test_play_submits_the_keyframes_in_order_and_loops_frames_on_the_canvas(qtbot, quick_window, pixels):
    ws = quick_window.explore
    kp = ws.keyframes
    latents = add_three(qtbot, ws)
    pick(kp, 2)
    kp.up_button.click()  # order: 1, 3, 2
    kp.frames.setValue(12)
    kp.spacing.setCurrentIndex(kp.spacing.findData("uniform"))
    kp.method.setCurrentIndex(kp.method.findData("lerp"))
    kp.fps.setValue(60)
    qtbot.waitUntil(lambda: idle(quick_window), timeout=10_000)

    kp.play_button.click()
    jobs = morph_jobs(quick_window)
    assert len(jobs) == 1
    spec = jobs[0].spec
    assert spec.latents == (latents[0], latents[2], latents[1])
    assert (spec.frames, spec.spacing, spec.method, spec.model) == (12, "uniform", "lerp", "fake-latent")
    assert kp.play_button.text() == "Stop"

    qtbot.waitUntil(lambda: ws.session.morphs.timer.isActive(), timeout=10_000)
    assert len(ws.morphs.play_frames) == 12
    seen = set()

    def shown_changes() -> bool:
        seen.add(pixels(ws.canvas.image()).tobytes())
        return len(seen) >= 3

    qtbot.waitUntil(shown_changes, timeout=10_000)  # the canvas shows frames that change over time
    assert "Morph · frame" in ws.caption.text()

    # Stop (the same button) freezes the morph; moving a slider afterwards decodes the point again.
    kp.play_button.click()
    assert not ws.session.morphs.timer.isActive() and kp.play_button.text() == "Play"
    ws.panel.sliders()[5].setValue(40)
    qtbot.waitUntil(lambda: idle(quick_window) and ws.session.shown_latent == ws.panel.latent(), timeout=10_000)


def test_another_action_stops_playback(qtbot, quick_window):
    ws = quick_window.explore
    add_three(qtbot, ws)
    ws.keyframes.frames.setValue(6)
    ws.keyframes.play_button.click()
    qtbot.waitUntil(lambda: ws.session.morphs.timer.isActive(), timeout=10_000)
    pick(ws.keyframes, 0)  # picking a keyframe: the sliders go there, the morph stops
    assert not ws.session.morphs.is_playing() and ws.keyframes.play_button.text() == "Play"


def test_stop_while_rendering_cancels_the_morph(qtbot, fake_models, make_window):
    write_fake_model(fake_models / "fake-latent", "latent", step_seconds=0.05, latent_dim=8, image_size=32)
    window = make_window()
    ws = window.explore
    add_three(qtbot, ws)
    ws.keyframes.play_button.click()
    job = morph_jobs(window)[0]
    qtbot.waitUntil(lambda: job.state is JobState.RUNNING, timeout=10_000)
    ws.keyframes.play_button.click()
    qtbot.waitUntil(lambda: job.state is JobState.CANCELLED, timeout=10_000)
    assert not ws.session.morphs.is_playing() and ws.keyframes.play_button.text() == "Play"


def export(qtbot, ws, path, size=48):
    dialog = ws.keyframes.export_button.click() or ws.morphs.export_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.path.setText(str(path))
    dialog.frame_size.setValue(size)
    dialog.export_button.click()
    return dialog


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_export_writes_the_morph(qtbot, quick_window, tmp_path, suffix):
    ws = quick_window.explore
    add_three(qtbot, ws)
    ws.keyframes.frames.setValue(9)
    path = tmp_path / f"morph{suffix}"
    export(qtbot, ws, path)
    qtbot.waitUntil(lambda: ws.caption.text() == f"Saved {path}", timeout=20_000)
    assert ws.morphs.export_dialog is None and ws.morphs.writer is None
    assert morph_jobs(quick_window)[-1].spec.latents == ws.keyframes.latents()
    data = path.read_bytes()
    if suffix == ".gif":
        with Image.open(path) as gif:
            assert gif.n_frames == 9
            assert max(gif.size) == 48
    else:
        assert data[4:8] == b"ftyp"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


def test_cancel_while_rendering_leaves_no_file(qtbot, fake_models, make_window, tmp_path):
    write_fake_model(fake_models / "fake-latent", "latent", step_seconds=0.05, latent_dim=8, image_size=32)
    window = make_window()
    ws = window.explore
    add_three(qtbot, ws)
    path = tmp_path / "morph.gif"
    dialog = export(qtbot, ws, path)
    job = morph_jobs(window)[-1]
    qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=10_000)  # the bar follows the job
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: ws.morphs.export_dialog is None, timeout=10_000)
    assert job.state is JobState.CANCELLED
    assert ws.caption.text() == "Export cancelled."
    assert list(tmp_path.iterdir()) == []


def test_cancel_while_writing_stops_the_writer_and_leaves_no_file(qtbot, quick_window, tmp_path, monkeypatch):
    """The writer stops at its next progress callback; the atomic writer then writes nothing."""
    real_write_gif = morph_export.write_gif
    cancel_seen = threading.Event()

    def write_gif_waiting_for_cancel(frames, path, fps, progress=None):
        progress(1, len(frames))  # the dialog hears this, and the test clicks Cancel
        deadline = time.monotonic() + 10
        while not ws.morphs.writer._cancel.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        cancel_seen.set()
        return real_write_gif(frames, path, fps, progress=progress)

    monkeypatch.setattr(morph_export, "write_gif", write_gif_waiting_for_cancel)
    ws = quick_window.explore
    add_three(qtbot, ws)
    ws.keyframes.frames.setValue(6)
    path = tmp_path / "morph.gif"
    dialog = export(qtbot, ws, path)
    # The writer's first frame is on the bar (its thread now waits for the cancel).
    qtbot.waitUntil(
        lambda: (
            ws.morphs.writer is not None and dialog.status.text().startswith("Writing") and dialog.progress.value() == 1
        ),
        timeout=10_000,
    )
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: ws.morphs.export_dialog is None, timeout=10_000)
    assert cancel_seen.is_set(), quick_window.jobs.error.message
    assert ws.caption.text() == "Export cancelled."
    assert list(tmp_path.iterdir()) == []


def test_a_write_error_goes_to_the_error_bar(qtbot, quick_window, tmp_path):
    ws = quick_window.explore
    add_three(qtbot, ws)
    ws.keyframes.frames.setValue(4)
    path = tmp_path / "taken.gif"
    path.mkdir()  # a folder where the file should go: writing it fails
    export(qtbot, ws, path)
    qtbot.waitUntil(lambda: ws.morphs.export_dialog is None, timeout=10_000)
    message = quick_window.jobs.error.message
    assert message and message.endswith(".") and "\n" not in message
    assert path.is_dir() and list(path.iterdir()) == []
    assert not ws.caption.text().startswith("Saved")


def test_changing_the_model_clears_the_keyframes(qtbot, fake_models, make_window):
    write_fake_model(fake_models / "other-latent", "latent", step_seconds=0, latent_dim=8, image_size=32)
    window = make_window()
    ws = window.explore
    ws.models.setCurrentIndex(ws.models.findData("fake-latent"))
    add_three(qtbot, ws)
    ws.models.setCurrentIndex(ws.models.findData("other-latent"))
    assert ws.keyframes.names() == [] and ws.keyframes.list.count() == 0
    assert not ws.keyframes.play_button.isEnabled()


def test_side_panel_fits_its_width(qtbot, quick_window):
    ws = quick_window.explore
    add_three(qtbot, ws)
    side = ws.side_splitter.parentWidget()
    assert side.minimumSizeHint().width() <= 340
    assert ws.keyframes.minimumSizeHint().width() <= 340 - 24
