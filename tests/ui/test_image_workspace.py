"""The artist's tab, driven with the mouse and keyboard: Generate paints previews, then the image."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from studio.core.png import PNG_SIGNATURE

from fake_models import write_fake_model


def fill(qtbot, widget, text: str) -> None:
    widget.selectAll()
    qtbot.keyClicks(widget, text)


def record_canvas(canvas) -> list[QImage]:
    """Every image the canvas is given, in order."""
    shown: list[QImage] = []
    original = canvas.set_image

    def set_image(image):
        shown.append(image)
        original(image)

    canvas.set_image = set_image
    return shown


def test_generate_shows_previews_then_the_image(qtbot, window, pixels, sandbox_dirs):
    ws = window.image
    panel = ws.panel
    assert ws.has_models() and ws.models.model_id() == "fake-image"
    qtbot.keyClicks(panel.prompt, "a lighthouse at dusk")
    panel.steps.setValue(12)
    fill(qtbot, panel.width_.lineEdit(), "64")
    fill(qtbot, panel.height_.lineEdit(), "64")
    shown = record_canvas(ws.canvas)
    finished = []
    window.jobs.finished.connect(lambda job_id, result: finished.append(result))

    with qtbot.waitSignal(ws.session.writer.saved, timeout=10_000):
        qtbot.mouseClick(panel.generate, Qt.MouseButton.LeftButton)

    record = list(window.jobs)[-1]
    assert record.spec.prompt == "a lighthouse at dusk" and (record.spec.width, record.spec.height) == (64, 64)
    assert record.state.value == "finished"
    final = finished[0].images[0]
    assert len(shown) >= 2, "at least one preview before the final image"
    assert not np.array_equal(pixels(shown[0]), final)  # the first preview is still noisy
    assert np.array_equal(pixels(ws.canvas.image()), final)
    assert str(record.spec.seed) in ws.caption.text()
    saved = list((sandbox_dirs / "data" / "gallery").glob("*.png"))
    assert len(saved) == 1 and saved[0].read_bytes().startswith(PNG_SIGNATURE)

    # A second generation (new random seed) replaces the pixels.
    with qtbot.waitSignal(ws.session.writer.saved, timeout=10_000):
        qtbot.mouseClick(panel.generate, Qt.MouseButton.LeftButton)
    assert not np.array_equal(pixels(ws.canvas.image()), final)


def test_random_seed_is_resolved_before_queuing_and_can_be_reused(qtbot, window):
    panel = window.image.panel
    panel.steps.setValue(1)
    panel.width_.setValue(64)
    panel.height_.setValue(64)
    with qtbot.waitSignal(window.jobs.finished, timeout=10_000):
        qtbot.mouseClick(panel.generate, Qt.MouseButton.LeftButton)
    seed = list(window.jobs)[-1].spec.seed
    assert isinstance(seed, int) and panel.last_seed == seed
    qtbot.mouseClick(panel.reuse_seed, Qt.MouseButton.LeftButton)
    assert not panel.random_seed.isChecked() and panel.build_spec().seed == seed


def test_a_64_bit_seed_goes_from_the_seed_field_into_the_job(window):
    panel = window.image.panel
    panel.random_seed.setChecked(False)
    panel.seed.setText(str(2**64 - 1))  # a ComfyUI seed, typed or from "Use these settings"
    assert panel.seed.text() == str(2**64 - 1)  # the field takes all 20 digits
    assert panel.build_spec().seed == 2**64 - 1


def test_bad_field_shows_error_bar_and_queues_nothing(qtbot, window):
    panel = window.image.panel
    fill(qtbot, panel.width_.lineEdit(), "100")
    assert panel.width_.value() == 100
    assert window.error_bar.isHidden()

    qtbot.mouseClick(panel.generate, Qt.MouseButton.LeftButton)

    assert window.error_bar.isVisible()
    message = window.error_bar.message()
    assert "`width`" in message and "divisible by 8" in message and message.endswith(".")
    assert len(window.jobs) == 0
    assert window.jobs.engine.pending() == 0
    assert window.jobs_panel.row(1) is None

    qtbot.mouseClick(window.error_bar.close_button, Qt.MouseButton.LeftButton)
    assert window.error_bar.isHidden() and window.jobs.error.message == ""


def test_failed_job_shows_one_sentence_and_the_next_job_runs(qtbot, window, fake_models):
    write_fake_model(fake_models / "broken-image", "image", fail_at_step=2)
    window.refresh_models()
    ws = window.image
    ws.models.setCurrentIndex(ws.models.findData("broken-image"))
    ws.panel.steps.setValue(4)
    ws.panel.width_.setValue(64)
    ws.panel.height_.setValue(64)
    qtbot.mouseClick(ws.panel.generate, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.error_bar.isVisible(), timeout=10_000)
    assert "simulated failure at step 2" in window.error_bar.message()
    assert "Traceback" not in window.error_bar.message()

    ws.models.setCurrentIndex(ws.models.findData("fake-image"))
    with qtbot.waitSignal(window.jobs.finished, timeout=10_000):
        qtbot.mouseClick(ws.panel.generate, Qt.MouseButton.LeftButton)
    assert window.error_bar.isHidden()  # a new attempt clears the old failure


def test_the_gallery_folder_can_be_changed_and_is_remembered(qtbot, fake_models, make_window, tmp_path):
    first = make_window()
    elsewhere = tmp_path / "my pictures"
    first.image.set_gallery_folder(elsewhere)
    first.image.panel.steps.setValue(1)
    first.image.panel.width_.setValue(64)
    first.image.panel.height_.setValue(64)
    with qtbot.waitSignal(first.image.session.writer.saved, timeout=10_000):
        qtbot.mouseClick(first.image.panel.generate, Qt.MouseButton.LeftButton)
    saved = list(elsewhere.glob("*.png"))
    assert len(saved) == 1 and first.image.strip.paths() == [str(saved[0])]
    first.close()
    second = make_window()
    assert second.image.session.gallery.folder == elsewhere
    assert second.image.strip.paths() == [str(saved[0])]


def test_picking_a_model_takes_its_suggested_steps_and_cfg(qtbot, window, fake_models):
    write_fake_model(fake_models / "suggests", "image", defaults={"steps": 13, "guidance_scale": 4.5}, image_size=96)
    window.refresh_models()
    ws = window.image
    index = ws.models.findData("suggests")
    ws.models.setCurrentIndex(index)
    ws.models.activated.emit(index)  # what a person's pick sends
    assert (ws.panel.steps.value(), ws.panel.guidance.value(), ws.panel.width_.value()) == (13, 4.5, 96)
