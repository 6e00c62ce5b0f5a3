"""ExploreWorkspace: the explorer's tab. Moving a latent slider decodes the vector at once.

Decodes go to the engine's interactive lane, where a newer request replaces one still waiting, so
a fast drag runs only the requests the engine can keep up with; results that arrive out of date
(older than the one on screen) are ignored, by job id, which grows with every request.

Under the sliders, the KeyframePanel keeps keyframes (points the person added with "Add current")
and morphs through them: Play renders a MorphJob and loops its frames on the canvas until another
action (a slider move, a keyframe picked, Stop); Export… renders one and writes a GIF or MP4 off
the GUI thread. Keyframes belong to one model's latent space, so choosing another model clears
them (even one with the same latent size: its space means something else)."""

from __future__ import annotations

from typing import Optional

from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFormLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from studio.core.events import ImageResult
from studio.core.jobs import LatentDecodeJob, MorphJob
from studio.engine.thread import to_qimage
from studio.state.jobs import JobList, JobState
from studio.ui.canvas import Canvas
from studio.ui.common import Workspace, canvas_beside_panel
from studio.ui.keyframe_panel import ExportDialog, KeyframePanel, MorphWriter
from studio.ui.latent_panel import LatentPanel

PLACEHOLDER = "Move a slider to decode a point of the latent space."
UNKNOWN_SIZE = ("This model does not say how many numbers its latent holds (latent_dim in studio.json), "
                "so Explore cannot offer sliders for it yet.")


class ExploreWorkspace(Workspace):
    kind = "latent"
    noun = "latent"

    # A slider's decode reached the canvas: (its job id, its latent). Ids only grow from one
    # emission to the next: an older decode never replaces a newer one.
    frame_shown = Signal(int, object)

    def __init__(self, jobs: JobList, parent: Optional[QWidget] = None):
        super().__init__(jobs, parent)
        self._requested: set[int] = set()  # decodes asked for and not yet ended
        self.shown_job = 0  # id of the decode on the canvas
        self.canvas = Canvas(PLACEHOLDER)
        self.panel = LatentPanel()
        self.panel.latent_changed.connect(self.request_decode)
        self.models.model_changed.connect(self._on_model_changed)
        self.caption = QLabel()
        self.caption.setContentsMargins(10, 4, 10, 6)
        self._shown_latent: Optional[tuple] = None  # the latent of the decode on the canvas
        self._thumb_jobs: dict[int, tuple] = {}  # decodes run only for a keyframe's thumbnail

        # Keyframes and morphs.
        self.keyframes = KeyframePanel()
        self.keyframes.keyframe_selected.connect(self.panel.set_latent)
        self.keyframes.add_requested.connect(self.add_keyframe)
        self.keyframes.play_requested.connect(self.play)
        self.keyframes.stop_requested.connect(self.stop)
        self.keyframes.export_requested.connect(self.open_export)
        self.keyframes.problem.connect(jobs.error.show)
        self.keyframes.fps.valueChanged.connect(self._on_fps)
        self.play_job: Optional[int] = None  # the morph being rendered for Play
        self.play_frames: list[QImage] = []
        self.play_index = 0
        self.play_timer = QTimer(self)
        self.play_timer.timeout.connect(self._next_frame)
        self.export_dialog: Optional[ExportDialog] = None
        self.export_job: Optional[int] = None
        self.writer: Optional[MorphWriter] = None
        self._export: dict = {}  # path, size, fps of the export under way

        side = QWidget()
        form = QFormLayout()
        form.addRow("Model", self.models)
        keys_box = QWidget()
        keys_layout = QVBoxLayout(keys_box)
        keys_layout.setContentsMargins(0, 6, 0, 0)
        keys_layout.setSpacing(6)
        heading = QLabel("Keyframes")
        font = heading.font()
        font.setBold(True)
        heading.setFont(font)
        keys_layout.addWidget(heading)
        keys_layout.addWidget(self.keyframes, 1)
        self.side_splitter = QSplitter(Qt.Orientation.Vertical)
        self.side_splitter.setChildrenCollapsible(False)
        self.side_splitter.addWidget(self.panel)
        self.side_splitter.addWidget(keys_box)
        self.side_splitter.setStretchFactor(0, 3)  # the sliders are the tab's main control
        self.side_splitter.setStretchFactor(1, 2)
        self.side_splitter.setSizes([420, 300])
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(12, 12, 12, 12)
        side_layout.setSpacing(10)
        side_layout.addLayout(form)
        side_layout.addWidget(self.side_splitter, 1)
        side.setMinimumWidth(300)

        splitter = canvas_beside_panel(self.canvas, self.caption, side)
        self.set_content(splitter)

        jobs.finished.connect(self._on_finished)
        jobs.job_changed.connect(self._on_changed)

    def latent_dim(self) -> Optional[int]:
        """How many numbers the selected model's latent holds; None when its manifest does not say.

        A bare .onnx model has no manifest: its size is in the ONNX graph, which only the engine
        reads, when it loads the model. Explore offers no sliders for such a model until issue 8
        (ONNX everywhere) reads the size from the graph when the model is found."""
        model = self.model_info()
        return model.latent_dim if model is not None else None

    @Slot(str)
    def _on_model_changed(self, model_id: str) -> None:
        # Only a different model gets here: a re-scan that keeps the model keeps sliders and image.
        self._requested.clear()  # decodes of the previous model must not paint over this one
        self._thumb_jobs.clear()
        self._stop_playback()
        self.keyframes.clear()  # another model's latent space: the keys mean nothing here
        self._shown_latent = None
        self.canvas.clear()
        self.caption.clear()
        self.keyframes.set_enabled_for_model(bool(model_id) and self.latent_dim() is not None)
        if not model_id:
            return
        dim = self.latent_dim()
        if dim is None:
            self.panel.set_unavailable(UNKNOWN_SIZE)
            self.canvas.set_placeholder("")
            return
        self.panel.set_dim(dim)
        self.canvas.set_placeholder(PLACEHOLDER)
        if self.isVisible():
            self.request_decode(self.panel.latent())

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        # A visit to an empty canvas decodes the sliders' point (the centre at first), so the canvas
        # is not left empty.
        if self.canvas.image().isNull() and not self._requested and self.has_models():
            self.request_decode(self.panel.latent())

    @Slot(object)
    def request_decode(self, latent: tuple) -> Optional[int]:
        if not self.models.model_id() or self.latent_dim() is None:
            return None
        self._stop_playback()  # a new point to look at ends a playing morph
        spec = LatentDecodeJob(model=self.models.model_id(), latent=tuple(latent))
        job_id = self.jobs.submit_or_report(spec)
        if job_id is not None:
            self._requested.add(job_id)
            record = self.jobs.get(job_id)
            if record is not None and record.state.is_terminal:  # ended while it was being queued
                self._requested.discard(job_id)
        return job_id

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        if job_id == self.play_job:
            self._on_play_rendered(result)
            return
        if job_id == self.export_job:
            self._on_export_rendered(result)
            return
        if job_id in self._thumb_jobs:
            latent = self._thumb_jobs.pop(job_id)
            if isinstance(result, ImageResult) and result.images:
                self.keyframes.offer_thumbnail(latent, to_qimage(result.images[0]))
            self._fill_thumbnails()
            return
        if job_id not in self._requested:
            return
        self._requested.discard(job_id)
        self._fill_thumbnails()
        if job_id < self.shown_job or not isinstance(result, ImageResult) or not result.images:
            return  # a newer decode is already on screen
        record = self.jobs.get(job_id)
        latent = tuple(record.spec.latent) if record is not None else None
        qimage = to_qimage(result.images[0])
        if latent is not None:
            self.keyframes.offer_thumbnail(latent, qimage)
        if self.is_playing():
            return  # the morph keeps the canvas until another action
        self.shown_job = job_id
        self._shown_latent = latent
        image = result.images[0]
        self.canvas.set_image(qimage)
        seconds = result.info.get("seconds")
        took = f" · {seconds * 1000:.0f} ms" if isinstance(seconds, (int, float)) else ""
        self.caption.setText(f"{image.shape[1]}×{image.shape[0]}{took}")
        self.frame_shown.emit(job_id, latent)

    @Slot(int)
    def _on_changed(self, job_id: int) -> None:
        record = self.jobs.get(job_id)
        ended = record is not None and record.state in (JobState.FAILED, JobState.CANCELLED)
        if job_id in self._requested and ended:
            self._requested.discard(job_id)  # superseded or failed: no image will come
            self._fill_thumbnails()
        elif job_id in self._thumb_jobs and ended:
            del self._thumb_jobs[job_id]  # a slider move replaced it: try again when the sliders rest
            self._fill_thumbnails()
        elif job_id == self.play_job and record is not None:
            if ended:
                self.play_job = None
                self.keyframes.set_playing(False)
                self.caption.setText("Morph cancelled." if record.state is JobState.CANCELLED else "")
            elif record.total:
                self.caption.setText(f"Rendering the morph… {record.step}/{record.total}")
        elif job_id == self.export_job and record is not None:
            if ended:  # a failure is on the error bar already (JobList shows it)
                self.export_job = None
                self._end_export("Export cancelled." if record.state is JobState.CANCELLED else "")
            elif self.export_dialog is not None and record.total:
                self.export_dialog.set_progress(record.step, record.total, "Rendering frames…")

    # -- keyframes ----------------------------------------------------------------------------------

    @Slot()
    def add_keyframe(self) -> Optional[str]:
        """Add the sliders' point as a keyframe, with the canvas's decode as its thumbnail when the
        canvas shows that point (else the decode on its way supplies it)."""
        latent = self.panel.latent()
        if not latent:
            return None
        self._stop_playback()
        thumbnail = self.canvas.image() if self._shown_latent == latent else None
        name = self.keyframes.add_keyframe(latent, thumbnail)
        self._fill_thumbnails()
        return name

    def _fill_thumbnails(self) -> None:
        """Decode a keyframe that has no thumbnail yet (its point was added before its decode
        arrived, or the decode was replaced by a slider move). Only while the sliders rest: the
        interactive lane keeps one waiting request, and a slider's must not be replaced.

        Deferred to the event loop: this runs from job signals, which a submit can emit while it
        is still queueing a slider's decode (a waiting thumbnail decode is superseded); a thumbnail
        submitted right then would supersede that slider decode before it is even recorded."""
        QTimer.singleShot(0, self._fill_thumbnails_now)

    def _fill_thumbnails_now(self) -> None:
        if self._requested or self._thumb_jobs or not self.models.model_id():
            return
        latent = self.keyframes.missing_thumbnail()
        if latent is None:
            return
        job_id = self.jobs.submit_or_report(LatentDecodeJob(model=self.models.model_id(), latent=latent))
        if job_id is not None:
            self._thumb_jobs[job_id] = latent

    # -- play ---------------------------------------------------------------------------------------

    def is_playing(self) -> bool:
        """Whether a morph is rendering for Play or looping on the canvas."""
        return self.play_job is not None or self.play_timer.isActive()

    def _morph_spec(self) -> MorphJob:
        return MorphJob(model=self.models.model_id(), latents=self.keyframes.latents(),
                        **self.keyframes.morph_settings())

    @Slot()
    def play(self) -> Optional[int]:
        """Render the keyframes' morph; it loops on the canvas when it arrives."""
        self._stop_playback()
        if not self.keyframes.can_morph() or not self.models.model_id():
            return None
        job_id = self.jobs.submit_or_report(self._morph_spec())
        if job_id is None:
            return None
        self.play_job = job_id
        self.keyframes.set_playing(True)
        self.caption.setText("Rendering the morph…")
        return job_id

    @Slot()
    def stop(self) -> None:
        """Stop: a morph still rendering is cancelled; a playing one stays on its frame."""
        was_looping = self.play_timer.isActive()
        self._stop_playback()
        if was_looping and self.play_frames:
            self.caption.setText(f"Morph stopped at frame {self.play_index + 1} of {len(self.play_frames)}")

    def _stop_playback(self) -> None:
        if self.play_job is not None:
            job, self.play_job = self.play_job, None
            self.jobs.cancel(job)
        self.play_timer.stop()
        self.keyframes.set_playing(False)

    def _on_play_rendered(self, result: object) -> None:
        self.play_job = None
        if not isinstance(result, ImageResult) or not result.images:
            self.keyframes.set_playing(False)
            return
        self.play_frames = [to_qimage(image) for image in result.images]
        self.play_index = -1
        self._requested.clear()  # decodes still on their way must not paint over the morph
        self.play_timer.start(self._interval())
        self.keyframes.set_playing(True)
        self._next_frame()

    def _interval(self) -> int:
        return max(1, round(1000 / self.keyframes.fps.value()))

    @Slot(int)
    def _on_fps(self, _fps: int) -> None:
        if self.play_timer.isActive():
            self.play_timer.setInterval(self._interval())

    @Slot()
    def _next_frame(self) -> None:
        if not self.play_frames:
            return
        self.play_index = (self.play_index + 1) % len(self.play_frames)
        self.canvas.set_image(self.play_frames[self.play_index])
        self._shown_latent = None  # a morph frame, not the sliders' point
        self.caption.setText(f"Morph · frame {self.play_index + 1} of {len(self.play_frames)} · "
                             f"{self.keyframes.fps.value()} fps")

    # -- export -------------------------------------------------------------------------------------

    @Slot()
    def open_export(self) -> Optional[ExportDialog]:
        """Ask for the file and size; the dialog then shows the export's progress."""
        if not self.keyframes.can_morph():
            return None
        if self.export_dialog is not None:  # one export at a time: show the one under way
            self.export_dialog.raise_()
            return self.export_dialog
        folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation) or str(Path.home())
        dialog = ExportDialog(str(Path(folder) / "morph.gif"), self)
        dialog.start_requested.connect(self._start_export)
        dialog.cancel_requested.connect(self.cancel_export)
        dialog.finished.connect(self._on_dialog_closed)
        self.export_dialog = dialog
        dialog.open()
        return dialog

    @Slot(str, int)
    def _start_export(self, path: str, size: int) -> None:
        job_id = self.jobs.submit_or_report(self._morph_spec())
        if job_id is None:
            self._end_export("")
            return
        self.export_job = job_id
        self._export = {"path": path, "size": size, "fps": self.keyframes.fps.value()}

    @Slot()
    def cancel_export(self) -> None:
        """Cancel the export: the morph job if it is still rendering, else the file being written
        (the writer stops at its next frame and writes nothing)."""
        self._export["cancelled"] = True  # in case the frames arrive before the cancel lands
        if self.export_job is not None:
            self.jobs.cancel(self.export_job)
        elif self.writer is not None:
            self.writer.cancel()

    def _on_export_rendered(self, result: object) -> None:
        self.export_job = None
        if self._export.get("cancelled"):
            self._end_export("Export cancelled.")
            return
        if not isinstance(result, ImageResult) or not result.images:
            self._end_export("")
            return
        if self.export_dialog is not None:
            self.export_dialog.set_progress(0, len(result.images), f"Writing {Path(self._export['path']).name}…")
        writer = MorphWriter(list(result.images), self._export["path"], self._export["fps"], self._export["size"], self)
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
        self.jobs.error.show(sentence)
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

    @Slot(int)
    def _on_dialog_closed(self, _result: int) -> None:
        if self.export_job is None and self.writer is None and self.export_dialog is not None:
            dialog, self.export_dialog = self.export_dialog, None  # closed before exporting
            dialog.deleteLater()

    def finish_exports(self, patience_s: float = 30.0) -> None:
        """The window is closing: let a morph being written finish (it was asked for), and
        cancel it if it takes longer than `patience_s`; the atomic writer then leaves nothing."""
        if self.writer is not None and not self.writer.wait(patience_s):
            self.writer.cancel()
            self.writer.wait()
