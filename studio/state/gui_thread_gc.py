"""Python's cyclic garbage collector, run on the GUI thread only.

The collector runs on whichever thread happens to allocate when a generation's threshold is
crossed: the engine thread, the gallery writer, a tokenizer worker. If the garbage it finds holds a
QObject that lives on the GUI thread (a session, a job's handle, a widget), Qt destroys that object
on the wrong thread while the GUI thread may be using it, and the process crashes. So automatic
collection is turned off and the same thresholds are checked from a timer on the GUI thread, the
remedy Qt applications commonly use (pyqtgraph's GarbageCollector, for one). Reference counting,
which frees almost everything, is untouched: only cycles wait for the timer."""

from __future__ import annotations

import gc
from typing import Optional

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 1000  # cycles live at most this long; a collection of the young generation takes microseconds


class GuiThreadGarbageCollector(QObject):
    """While it exists, cyclic garbage is collected on the thread that made it (the GUI thread)."""

    def __init__(self, parent: Optional[QObject] = None, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect)
        self._timer.start(interval_ms)

    def collect(self) -> int:
        """Collect the oldest generation whose count is past its threshold, as the automatic
        collector would have; returns how many objects were found unreachable."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                return gc.collect(generation)
        return 0

    def stop(self) -> None:
        """Hand collection back to Python (the application is closing)."""
        self._timer.stop()
        gc.enable()
