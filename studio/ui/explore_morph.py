"""The explorer's morphs on screen: Play loops a morph's frames on the canvas until another action
(a slider move, a keyframe picked, Stop); Export… asks for the file and size, shows the render's
progress, and writes the GIF or MP4 off the GUI thread (morph_export.MorphWriter), with Cancel.

MorphActions is a helper the ExploreWorkspace owns (its `morphs`). The jobs are the session's
(state/explore_morphs.MorphSession): this helper binds the keyframe panel's buttons to it, paints
the frames it loops, and writes the frames it renders for an export."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from PySide6.QtCore import QObject, QStandardPaths, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel, QWidget

from studio.state.explore_morphs import MorphKeys, MorphSession
from studio.state.jobs import ErrorState, JobHandle
from studio.ui.canvas import Canvas
from studio.ui.images import to_qimage
from studio.ui.keyframe_panel import KeyframePanel
from studio.ui.morph_export import ExportDialog, MorphWriter


class MorphActions(QObject):
    # A QObject, so that the writer's signals, sent from its thread, are queued to this one's (the GUI's).

    def __init__(
        self,
        session: MorphSession,
        keyframes: KeyframePanel,
        canvas: Canvas,
        caption: QLabel,
        error: ErrorState,
        keys: Callable[[], MorphKeys],
        parent: QWidget,
    ):
        super().__init__(parent)
        self.window_parent = parent  # of the export dialog
        self.session = session
        self.keyframes = keyframes
        self.canvas = canvas
        self.caption = caption
        self.error = error
        self.keys = keys  # the keyframes, as the morph's job wants them
        self.play_frames: list[QImage] = []  # Play's frames, as the canvas shows them
        self.export_dialog: Optional[ExportDialog] = None
        self.writer: Optional[MorphWriter] = None
        self._export: dict = {}  # path, size, fps of the export under way
        keyframes.play_requested.connect(self.play)
        keyframes.stop_requested.connect(session.stop)
        keyframes.export_requested.connect(self.open_export)
        keyframes.fps.valueChanged.connect(session.set_fps)
        session.set_fps(keyframes.fps.value())
        session.playing_changed.connect(keyframes.set_playing)
        session.status.connect(caption.setText)
        session.rendered.connect(self._on_rendered)
        session.frame.connect(self._show_frame)
        session.export_progress.connect(self._on_render_progress)
        session.export_rendered.connect(self._write)
        session.export_ended.connect(self._end_export)

    # -- play ---------------------------------------------------------------------------------------

    def play(self) -> Optional[JobHandle]:
        """Render the keyframes' morph; it loops on the canvas when it arrives."""
        if not self.keyframes.can_morph():
            self.session.stop_playback()
            return None
        return self.session.play(self.keys())

    def _on_rendered(self, frames: list) -> None:
        self.play_frames = [to_qimage(frame) for frame in frames]  # made once, shown many times

    def _show_frame(self, index: int) -> None:
        self.canvas.set_image(self.play_frames[index])
        self.caption.setText(f"Morph · frame {index + 1} of {len(self.play_frames)} · {self.keyframes.fps.value()} fps")

    # -- export -------------------------------------------------------------------------------------

    def open_export(self) -> Optional[ExportDialog]:
        """Ask for the file and size; the dialog then shows the export's progress."""
        if not self.keyframes.can_morph():
            return None
        if self.export_dialog is not None:  # one export at a time: show the one under way
            self.export_dialog.raise_()
            return self.export_dialog
        folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation) or str(Path.home())
        dialog = ExportDialog(str(Path(folder) / "morph.gif"), self.keyframes.fps.value(), self.window_parent)
        dialog.start_requested.connect(self._start_export)
        dialog.cancel_requested.connect(self.cancel_export)
        dialog.finished.connect(self._on_dialog_closed)
        self.export_dialog = dialog
        dialog.open()
        return dialog

    def _start_export(self, path: str, size: int) -> None:
        self._export = {"path": path, "size": size, "fps": self.keyframes.fps.value()}
        self.session.export(self.keys())  # one that cannot be queued ends at once (export_ended)

    def cancel_export(self) -> None:
        """Cancel the export: the morph job if it is still rendering, else the file being written
        (the writer stops at its next frame and writes nothing)."""
        if not self.session.cancel_export() and self.writer is not None:
            self.writer.cancel()

    def _on_render_progress(self, done: int, total: int) -> None:
        if self.export_dialog is not None:
            self.export_dialog.set_progress(done, total, "Rendering frames…")

    def _write(self, frames: list) -> None:
        name = Path(self._export["path"]).name
        if self.export_dialog is not None:
            self.export_dialog.set_progress(0, len(frames), f"Writing {name}…")
        writer = MorphWriter(frames, self._export["path"], self._export["fps"], self._export["size"], self)
        writer.progress.connect(self._on_write_progress)
        writer.saved.connect(self._on_saved)
        writer.failed.connect(self._on_write_failed)
        writer.cancelled.connect(self._on_write_cancelled)
        self.writer = writer
        writer.start()

    @Slot(int, int)
    def _on_write_progress(self, done: int, total: int) -> None:
        if self.export_dialog is not None and self.writer is not None:
            self.export_dialog.set_progress(done, total, f"Writing {Path(self._export['path']).name}…")

    @Slot(str)
    def _on_saved(self, path: str) -> None:
        self._end_export(f"Saved {path}")

    @Slot(str)
    def _on_write_failed(self, sentence: str) -> None:
        self.error.show(sentence)
        self._end_export("")

    @Slot()
    def _on_write_cancelled(self) -> None:
        self._end_export("Export cancelled.")

    def _end_export(self, caption: str) -> None:
        if self.writer is not None:
            self.writer.wait(5)  # it has reported its end: the thread is finishing
            self.writer.deleteLater()
            self.writer = None
        self._export = {}
        if caption:
            self.caption.setText(caption)
        dialog, self.export_dialog = self.export_dialog, None
        if dialog is not None:
            dialog.finish()
            dialog.deleteLater()

    def _on_dialog_closed(self, _result: int) -> None:
        if not self.session.is_exporting() and self.writer is None and self.export_dialog is not None:
            dialog, self.export_dialog = self.export_dialog, None  # closed before exporting
            dialog.deleteLater()

    def finish_exports(self, patience_s: float = 30.0) -> None:
        """The window is closing: let a morph being written finish (it was asked for), and
        cancel it if it takes longer than `patience_s`; the atomic writer then leaves nothing."""
        if self.writer is not None and not self.writer.wait(patience_s):
            self.writer.cancel()
            self.writer.wait()
