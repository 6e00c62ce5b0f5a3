"""The jobs dock: each batch job has a row with progress, state and a Cancel button that works."""

from __future__ import annotations

from PySide6.QtCore import Qt

from studio.core.jobs import ImageJob, LatentDecodeJob
from studio.state.jobs import JobState

from fake_models import write_fake_model


def test_cancel_button_stops_a_running_job(qtbot, fake_models, make_window):
    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.05)
    window = make_window()
    job = window.jobs.submit(ImageJob(model="slow-image", steps=40, width=64, height=64))
    row = window.jobs_panel.row(job)
    assert row is not None and row.title.text().startswith("image")
    qtbot.waitUntil(lambda: job.step >= 3, timeout=10_000)
    assert row.state.text().startswith("Running") and row.cancel_button.isVisible()

    qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: job.state is JobState.CANCELLED, timeout=2_000)

    stopped_at = row.progress.value()
    assert 3 <= stopped_at < 40
    qtbot.wait(200)  # four more steps' worth of time: nothing moves
    assert row.progress.value() == stopped_at and job.step == stopped_at
    assert row.state.text() == "Cancelled" and row.cancel_button.isHidden()
    assert window.jobs.engine.pending() == 0


def test_rows_show_batch_jobs_newest_first_and_not_slider_previews(qtbot, window):
    first = window.jobs.submit(ImageJob(model="fake-image", steps=1, width=64, height=64))
    second = window.jobs.submit(ImageJob(model="fake-image", steps=1, width=64, height=64, prompt="second"))
    preview = window.jobs.submit(LatentDecodeJob(model="fake-latent", latent=(0.0,) * 8))
    qtbot.waitUntil(lambda: not window.jobs.active(), timeout=10_000)
    rows = window.jobs_panel.findChildren(type(window.jobs_panel.row(first)))
    assert {r.job for r in rows} == {first, second}
    assert window.jobs_panel.row(preview) is None
    layout = window.jobs_panel.row(first).parentWidget().layout()
    assert layout.indexOf(window.jobs_panel.row(second)) < layout.indexOf(window.jobs_panel.row(first))
    assert window.jobs_panel.row(second).state.text().startswith("Done")
    assert window.last_job_label.text().startswith("Last job")
