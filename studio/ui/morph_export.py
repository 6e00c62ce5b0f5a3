"""The morph export: ExportDialog asks for the file and size and shows the export's progress;
MorphWriter writes the file on a Python thread and reports back with Qt signals."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import JobCancelled, StudioError, first_line
from studio.latent import write_gif, write_mp4
from studio.latent.animation import ResizedFrames, gif_fps


class ExportDialog(QDialog):
    """Asks where to save the morph (.gif or .mp4) and how large; then shows its progress.

    `start_requested(path, size)` asks the workspace to render and write; `cancel_requested`
    asks it to stop (the dialog stays until the workspace calls `finish`)."""

    start_requested = Signal(str, int)
    cancel_requested = Signal()

    def __init__(self, suggested: str, fps: float = 24, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("Export morph")
        self._running = False
        self._fps = fps
        self.path = QLineEdit(suggested)
        self.path.setMinimumWidth(320)
        self.path.textChanged.connect(self._update)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(self.browse_button)
        self.frame_size = QSpinBox()
        self.frame_size.setRange(8, 4096)
        self.frame_size.setValue(256)
        self.frame_size.setSuffix(" px")
        self.frame_size.setToolTip("The longer side of the exported frames")
        form = QFormLayout()
        form.addRow("File", path_row)
        form.addRow("Size", self.frame_size)

        self.status = QLabel("A .gif or an .mp4 file.")
        self.status.setWordWrap(True)
        self.gif_note = QLabel()  # what GIF's hundredths of a second do to this frame rate
        self.gif_note.setWordWrap(True)
        self.gif_note.setEnabled(False)  # greyed: a remark
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self._start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.gif_note)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)
        self._update()

    def file(self) -> str:
        return self.path.text().strip()

    def is_running(self) -> bool:
        return self._running

    def set_progress(self, done: int, total: int, what: str) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, max(1, total)))
        self.status.setText(what)

    def finish(self) -> None:
        """The export ended (saved, failed or cancelled): close."""
        self._running = False
        self.accept()

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export morph", self.file(), "GIF (*.gif);;MP4 video (*.mp4)")
        if path:
            self.path.setText(path)

    def _start(self) -> None:
        if Path(self.file()).suffix.lower() not in (".gif", ".mp4"):
            self.status.setText("The file must end in .gif or .mp4.")
            return
        self._running = True
        self._update()
        self.status.setText("Rendering frames…")
        self.start_requested.emit(self.file(), self.frame_size.value())

    def _cancel(self) -> None:
        if self._running:
            self.status.setText("Cancelling…")
            self.cancel_button.setEnabled(False)
            self.cancel_requested.emit()
        else:
            self.reject()

    def reject(self) -> None:  # Escape and the title bar's close: cancel a running export first
        if self._running:
            self._cancel()
        else:
            super().reject()

    def _update(self) -> None:
        suffix = Path(self.file()).suffix.lower()
        ok = suffix in (".gif", ".mp4")
        plays = gif_fps(self._fps)
        off = suffix == ".gif" and abs(plays - self._fps) > 0.05
        self.gif_note.setText(
            f"GIF keeps frame times in hundredths of a second (20 at the least), so {self._fps:g} fps "
            f"plays at {plays:.3g} fps; MP4 keeps {self._fps:g} fps."
            if off
            else ""
        )
        self.gif_note.setVisible(off)
        self.export_button.setEnabled(ok and not self._running)
        for widget in (self.path, self.browse_button, self.frame_size):
            widget.setEnabled(not self._running)


class MorphWriter(QObject):
    """Writes frames to a .gif or .mp4 on a Python thread; `progress`, then one of `saved`,
    `failed` (a sentence) or `cancelled`, come back as Qt signals (queued to the GUI thread).
    `cancel()` makes the next progress callback raise, so the atomic writer leaves nothing."""

    progress = Signal(int, int)
    saved = Signal(str)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, frames, path: str, fps: float, size: int, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._frames = frames
        self._path = path
        self._fps = fps
        self._size = size
        self._cancel = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="studio-morph-writer", daemon=True)
        self.thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True

    def _report(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise JobCancelled("cancelled")
        self._tell(self.progress, done, total)

    def _run(self) -> None:
        try:
            if self._cancel.is_set():
                raise JobCancelled("cancelled")
            frames = ResizedFrames(np.stack(self._frames), self._size)  # scaled one at a time as written
            write: Callable = write_mp4 if Path(self._path).suffix.lower() == ".mp4" else write_gif
            write(frames, self._path, self._fps, progress=self._report)
        except JobCancelled:
            self._tell(self.cancelled)
        except StudioError as exc:
            self._tell(self.failed, sentence(exc))
        except OSError as exc:
            self._tell(self.failed, sentence(f"Could not write {self._path}: {exc.strerror or exc}"))
        except Exception as exc:  # noqa: BLE001 - an encoder's own error: say it, do not lose the thread silently
            self._tell(self.failed, sentence(f"Could not write {self._path}: {first_line(exc)}"))
        else:
            self._tell(self.saved, self._path)

    @staticmethod
    def _tell(signal, *args) -> None:
        """Emit from the writer thread; the window may have closed (and this object gone) since."""
        try:
            signal.emit(*args)
        except RuntimeError:
            pass


def sentence(error) -> str:
    text = first_line(getattr(error, "message", None) or error) or "Something went wrong."
    return text if text.endswith((".", "!", "?")) else text + "."
