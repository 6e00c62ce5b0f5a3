"""The window survives its engine: a native crash in the engine process fails that one job with a
sentence, the drawing and the document stay as they were, and the next job runs."""

import numpy as np
from PySide6.QtGui import QColor, QImage

from studio.core.jobs import ImageJob
from studio.state.jobs import JobState
from studio.ui.images import from_qimage

from fake_models import write_fake_model
from processes import running_children


def test_a_crash_in_the_engine_process_costs_one_job_and_nothing_in_the_window(qtbot, fake_models):
    from studio.app import Studio

    write_fake_model(fake_models / "crash-image", "image", step_seconds=0.01, crash_at_step=2, crash="segfault")
    studio = Studio()
    window = studio.window
    qtbot.addWidget(window)
    window.show()
    drawing = QImage(48, 32, QImage.Format.Format_RGB888)
    drawing.fill(QColor(200, 30, 90))
    window.image.canvas.set_image(drawing)
    window.write.editor.setPlainText("Chapter one. The lantern moon rose over the river.")
    before = from_qimage(window.image.canvas.image())

    crashed = studio.jobs.submit(ImageJob(model="crash-image", steps=4, width=32, height=32))
    qtbot.waitUntil(lambda: crashed.state.is_terminal, timeout=60_000)
    record = crashed
    assert record.state is JobState.FAILED
    assert record.message.startswith("The engine process stopped while running this job (SIGSEGV")
    assert window.jobs.error.message == record.message
    assert window.isVisible() and studio.engine.isRunning()
    assert np.array_equal(from_qimage(window.image.canvas.image()), before)
    assert window.write.editor.toPlainText() == "Chapter one. The lantern moon rose over the river."

    after = studio.jobs.submit(ImageJob(model="fake-image", steps=2, width=32, height=32))
    qtbot.waitUntil(lambda: after.state is JobState.FINISHED, timeout=60_000)
    assert studio.engine.host.starts == 2

    window.close()  # cancels, waits, saves: nothing is left running
    assert not studio.engine.isRunning() and not studio.engine.host.alive()
    assert running_children() == []


def test_closing_the_window_mid_job_cancels_it_and_leaves_no_thread_or_process(qtbot, fake_models):
    from studio.app import Studio

    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.05)
    studio = Studio()
    qtbot.addWidget(studio.window)
    studio.window.show()
    job = studio.jobs.submit(ImageJob(model="slow-image", steps=400, width=32, height=32))
    qtbot.waitUntil(lambda: job.step >= 2, timeout=60_000)
    studio.window.close()
    assert not studio.engine.isRunning()
    qtbot.waitUntil(lambda: job.state is JobState.CANCELLED, timeout=5_000)  # the queued signal
    assert not studio.engine.isRunning() and not studio.engine.host.alive()
    assert running_children() == []
