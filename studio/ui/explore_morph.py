"""The explorer's morphs: Play renders a MorphJob of the keyframes and loops its frames on the
canvas until another action (a slider move, a keyframe picked, Stop); Export… renders one and
writes a GIF or MP4 off the GUI thread (morph_export.MorphWriter), with progress and Cancel.

A mixin of ExploreWorkspace: it uses the workspace's jobs, canvas, caption, keyframes and models,
and the state set up by `_init_morphs`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QStandardPaths, QTimer, Slot
from PySide6.QtGui import QImage

from studio.core.events import ImageResult
from studio.core.jobs import MorphJob
from studio.ui.images import to_qimage
from studio.state.jobs import JobState
from studio.ui.morph_export import ExportDialog, MorphWriter


class MorphActions:
    def _init_morphs(self) -> None:
        self.play_job: Optional[int] = None  # the morph being rendered for Play
        self.play_frames: list[QImage] = []
        self.play_index = 0
        self.play_timer = QTimer(self)
        self.play_timer.timeout.connect(self._next_frame)
        self.export_dialog: Optional[ExportDialog] = None
        self.export_job: Optional[int] = None
        self.writer: Optional[MorphWriter] = None
        self._export: dict = {}  # path, size, fps of the export under way
        self.keyframes.play_requested.connect(self.play)
        self.keyframes.stop_requested.connect(self.stop)
        self.keyframes.export_requested.connect(self.open_export)
        self.keyframes.fps.valueChanged.connect(self._on_fps)

    def _morph_ended(self, job_id: int, result: object) -> bool:
        """A finished job that is one of the morphs: handled (True), else False."""
        if job_id == self.play_job:
            self._on_play_rendered(result)
            return True
        if job_id == self.export_job:
            self._on_export_rendered(result)
            return True
        return False

    def _morph_changed(self, job_id: int, record) -> bool:
        """A morph's job changed state (progress, cancelled, failed): shown (True), else False."""
        ended = record is not None and record.state in (JobState.FAILED, JobState.CANCELLED)
        if job_id == self.play_job and record is not None:
            if ended:
                self.play_job = None
                self.keyframes.set_playing(False)
                self.caption.setText("Morph cancelled." if record.state is JobState.CANCELLED else "")
            elif record.total:
                self.caption.setText(f"Rendering the morph… {record.step}/{record.total}")
            return True
        if job_id == self.export_job and record is not None:
            if ended:  # a failure is on the error bar already (JobList shows it)
                self.export_job = None
                self._end_export("Export cancelled." if record.state is JobState.CANCELLED else "")
            elif self.export_dialog is not None and record.total:
                self.export_dialog.set_progress(record.step, record.total, "Rendering frames…")
            return True
        return False

    # -- play ---------------------------------------------------------------------------------------

    def is_playing(self) -> bool:
        """Whether a morph is rendering for Play or looping on the canvas."""
        return self.play_job is not None or self.play_timer.isActive()

    def _morph_spec(self) -> MorphJob:
        settings = self.keyframes.morph_settings()
        payloads = self.keyframes.payloads()
        if not payloads or payloads[0] is None:  # a latent model's keyframes
            return MorphJob(model=self.models.model_id(), latents=self.keyframes.latents(), **settings)
        return MorphJob(model=self.models.model_id(), **travel_keys(payloads), **self.travel.settings(), **settings)

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
        dialog = ExportDialog(str(Path(folder) / "morph.gif"), self.keyframes.fps.value(), self)
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


def travel_keys(payloads: list[dict]) -> dict:
    """A diffusion morph's keyframes as MorphJob fields: seed travel under one prompt when every
    key has the same prompt, prompt travel from one seed when every key has the same seed, and
    both together otherwise."""
    prompts = [p["prompt"] for p in payloads]
    seeds = [int(p["seed"]) for p in payloads]
    if len(set(prompts)) == 1:
        return {"seeds": tuple(seeds), "prompt": prompts[0]}
    if len(set(seeds)) == 1:
        return {"prompts": tuple(prompts), "seed": seeds[0]}
    return {"prompts": tuple(prompts), "seeds": tuple(seeds)}
