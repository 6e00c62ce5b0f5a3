"""Fixtures for the UI tests: a real window on a real engine thread, over the fake models."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry
from studio.state.engine_thread import EngineThread
from studio.state.jobs import JobList
from studio.ui.main_window import MainWindow


@pytest.fixture
def engine(sandbox_dirs):
    engine = EngineThread(Runner(ModelRegistry()))
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
def make_window(qtbot, engine):
    """Build (and show) the main window; it is closed, and the engine stopped, after the test."""
    windows = []

    def make() -> MainWindow:
        window = MainWindow(JobList(engine), engine.runner.registry)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def window(fake_models, make_window) -> MainWindow:
    return make_window()


@pytest.fixture
def pixels():
    """QImage -> H x W x 3 uint8 array, for pixel comparisons."""
    return qimage_pixels


def qimage_pixels(image) -> np.ndarray:
    """A QImage as an H x W x 3 uint8 array (for pixel comparisons)."""
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w = image.height(), image.width()
    data = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
    return data.reshape(h, image.bytesPerLine())[:, : w * 3].reshape(h, w, 3).copy()
