"""The window as a whole: empty state, status bar, remembered settings, and a clean shutdown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from studio.core.jobs import ImageJob
from studio.engine.runner import Runner
from studio.models import paths
from studio.models.registry import ModelRegistry
from studio.state import engine_thread
from studio.state.engine_thread import EngineThread
from studio.state.jobs import JobList, JobState
from studio.ui.main_window import MainWindow

from fake_models import write_fake_model


def test_closing_the_window_stops_the_engine_thread(qtbot, window):
    engine = window.jobs.engine
    assert engine.isRunning()
    window.close()
    assert not engine.isRunning()


def test_closing_while_a_job_runs_cancels_it_and_stops_the_engine(qtbot, fake_models, make_window):
    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.05)
    window = make_window()
    job = window.jobs.submit(ImageJob(model="slow-image", steps=200, width=64, height=64))
    waiting = window.jobs.submit(ImageJob(model="slow-image", steps=200, width=64, height=64))
    qtbot.waitUntil(lambda: job.state is JobState.RUNNING, timeout=10_000)
    window.close()
    assert not window.jobs.engine.isRunning()
    # The engine's "cancelled" signals are queued to this thread: once delivered, both jobs say so.
    qtbot.waitUntil(lambda: job.state is JobState.CANCELLED, timeout=2_000)
    assert waiting.state is JobState.CANCELLED
    assert not window.jobs.active()


def test_closing_hides_the_window_then_waits_for_a_slow_step_without_giving_up(
    qtbot, fake_models, make_window, monkeypatch, caplog
):
    # A step far longer than the grace period stands in for a model load, which cannot be cancelled.
    write_fake_model(fake_models / "slow-image", "image", step_seconds=0.4)
    monkeypatch.setattr(engine_thread, "WAIT_LOG_MS", 20)
    window = make_window()
    visible_while_stopping = []
    real_shutdown = window.jobs.shutdown

    def shutdown():
        visible_while_stopping.append(window.isVisible())
        real_shutdown()

    monkeypatch.setattr(window.jobs, "shutdown", shutdown)
    job = window.jobs.submit(ImageJob(model="slow-image", steps=50, width=64, height=64))
    qtbot.waitUntil(lambda: job.state is JobState.RUNNING, timeout=10_000)
    caplog.set_level(logging.INFO, logger=engine_thread.log.name)
    window.close()
    assert visible_while_stopping == [False]  # gone from the screen before the wait
    assert not window.jobs.engine.isRunning()
    assert any("waiting for the engine" in r.getMessage() for r in caplog.records)
    qtbot.waitUntil(lambda: job.state is JobState.CANCELLED, timeout=2_000)


def test_without_models_each_workspace_says_where_to_put_them(qtbot, make_window):
    window = make_window()
    where = str(paths.user_models_dir())
    for workspace in window.workspaces():
        assert not workspace.has_models()
        assert workspace.empty.isVisible() or workspace is not window.tabs.currentWidget()
        assert where in workspace.empty.body.text()
    assert window.image.empty.isVisible()
    assert window.models_label.text() == "No models"

    # Models copied in while the window is open are found with "Look again".
    write_fake_model(Path(where) / "fake-image", "image")
    qtbot.mouseClick(window.image.empty.rescan_button, Qt.MouseButton.LeftButton)
    assert window.image.has_models() and not window.image.empty.isVisible()
    assert not window.write.has_models()
    assert window.models_label.text() == "1 model"


def test_status_bar_counts_models_and_reports_the_engine(qtbot, window):
    assert window.models_label.text() == "3 models"
    assert window.engine_label.text().startswith("Engine ready")
    with qtbot.waitSignal(window.jobs.finished, timeout=10_000):
        window.jobs.submit(ImageJob(model="fake-image", steps=2, width=64, height=64))
    qtbot.waitUntil(lambda: window.engine_label.text().startswith("Engine idle"), timeout=2_000)
    assert "cpu" in window.engine_label.text()
    assert window.last_job_label.text().startswith("Last job")


def test_settings_and_layout_are_remembered(qtbot, fake_models, make_window):
    first = make_window()
    first.image.panel.prompt.setPlainText("a red kite")
    first.image.panel.steps.setValue(33)
    first.image.panel.random_seed.setChecked(False)
    first.image.panel.seed.setText("4242")
    first.write.max_tokens.setValue(99)
    first.tabs.setCurrentWidget(first.write)
    first.resize(760, 540)  # inside the 800x600 offscreen screen: restoreGeometry clamps to it
    size = (first.width(), first.height())
    first.close()
    assert (paths.config_dir() / "window.ini").is_file()

    # The first window's engine is stopped for good; the second window gets its own, as on a restart.
    engine = EngineThread(Runner(ModelRegistry()))
    engine.start()
    second = MainWindow(JobList(engine), engine.runner.registry)
    qtbot.addWidget(second)
    try:
        spec = second.image.panel.build_spec()
        assert (spec.prompt, spec.steps, spec.seed) == ("a red kite", 33, 4242)
        assert second.write.max_tokens.value() == 99
        assert second.tabs.currentWidget() is second.write
        assert (second.width(), second.height()) == size
    finally:
        second.close()
    assert not engine.isRunning()


@pytest.fixture
def real_embedded_models(monkeypatch):
    monkeypatch.setenv("STUDIO_EMBEDDED_MODELS_DIR", str(paths.EMBEDDED_MODELS_DIR))


def test_with_nothing_else_each_workspace_picks_its_embedded_model(real_embedded_models, make_window):
    window = make_window()
    assert window.image.models.model_id() == "emoji-sd"
    assert window.write.models.model_id() == "prose"
    assert window.explore.models.model_id() == "emoji-vae"


def test_a_broken_model_file_is_one_sentence_in_the_error_bar_and_the_rest_works(qtbot, window, fake_models):
    (fake_models / "sd15-download.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 2132625894\n"
    )
    window.refresh_models()
    assert window.error_bar.isVisible()
    message = window.error_bar.message()
    assert "sd15-download.safetensors" in message and "Git LFS pointer" in message and "\n" not in message
    assert window.models_label.text().endswith("· 1 unusable")
    with qtbot.waitSignal(window.jobs.finished, timeout=10_000):
        window.jobs.submit(ImageJob(model="fake-image", steps=1, width=64, height=64))
