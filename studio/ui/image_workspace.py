"""ImageWorkspace: the artist's tab. A canvas on the left, the PromptPanel on the right; previews
of the running job paint the canvas, then the finished image replaces them."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel, QWidget

from studio.core.errors import StudioError
from studio.core.events import ImageResult
from studio.core.jobs import ImageJob
from studio.engine.thread import to_qimage
from studio.state.gallery import Gallery
from studio.state.jobs import JobList, JobState
from studio.state.settings_store import SettingsStore
from studio.ui.canvas import Canvas
from studio.ui.common import Workspace, canvas_beside_panel
from studio.ui.prompt_panel import PromptPanel


class ImageWorkspace(Workspace):
    kind = "image"
    noun = "image"

    def __init__(self, jobs: JobList, gallery: Optional[Gallery] = None, parent: Optional[QWidget] = None):
        super().__init__(jobs, parent)
        self.gallery = gallery or Gallery()
        self.canvas = Canvas("Write a prompt and press Generate.\nWheel zooms, drag pans, double-click fits.")
        self.caption = QLabel()
        self.caption.setObjectName("caption")
        self.caption.setContentsMargins(10, 4, 10, 6)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.panel = PromptPanel(self.models)
        self.panel.generate_requested.connect(self.generate)
        self.models.activated.connect(self._on_model_picked)

        self.panel.setMinimumWidth(280)
        splitter = canvas_beside_panel(self.canvas, self.caption, self.panel)
        self.set_content(splitter)

        self._mine: dict[int, ImageJob] = {}  # jobs this workspace queued, by id
        self._shown = 0  # id of the job whose pixels are on the canvas
        jobs.preview.connect(self._on_preview)
        jobs.finished.connect(self._on_finished)
        jobs.job_changed.connect(self._on_changed)

    @Slot(int)
    def _on_model_picked(self, _index: int) -> None:
        # Only when the person picks a model (not on start-up): their remembered size wins there.
        model = self.model_info()
        if model is not None:
            self.panel.width_.setValue(model.default_size)
            self.panel.height_.setValue(model.default_size)

    @Slot(object)
    def generate(self, spec: ImageJob) -> Optional[int]:
        job_id = self.jobs.submit_or_report(spec)
        if job_id is not None:
            self._mine[job_id] = spec
        return job_id

    @Slot(int, QImage)
    def _on_preview(self, job_id: int, image: QImage) -> None:
        if job_id in self._mine and job_id >= self._shown:
            self._shown = job_id
            self.canvas.set_image(image)
            spec = self._mine[job_id]
            record = self.jobs.get(job_id)
            step = f"step {record.step} of {record.total}" if record and record.total else "starting"
            self.caption.setText(f"{step} · seed {spec.seed}")

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        spec = self._mine.pop(job_id, None)
        if spec is None or not isinstance(result, ImageResult) or not result.images:
            return
        saved = ""
        try:  # on disk before on screen: a picture the person has seen is never lost
            saved = f" · {self.gallery.save(result.images[0], spec).name}"
        except StudioError as exc:
            self.jobs.error.show(exc.message)
        self._shown = job_id
        self.canvas.set_image(to_qimage(result.images[0]))
        seconds = result.info.get("seconds")
        took = f" · {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
        settings = f"{spec.width}×{spec.height} · {spec.steps} steps · CFG {spec.guidance_scale:g} · seed {spec.seed}"
        self.caption.setText(settings + took + saved)

    @Slot(int)
    def _on_changed(self, job_id: int) -> None:
        record = self.jobs.get(job_id)
        if job_id in self._mine and record is not None and record.state in (JobState.FAILED, JobState.CANCELLED):
            self._mine.pop(job_id, None)  # failed or cancelled: nothing more will arrive

    def save_settings(self, store: SettingsStore) -> None:
        super().save_settings(store)
        self.panel.save_settings(store)

    def restore_settings(self, store: SettingsStore) -> None:
        super().restore_settings(store)
        self._on_model_picked(0)  # the model's own size, unless a remembered one follows
        self.panel.restore_settings(store)
