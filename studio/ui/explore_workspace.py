"""ExploreWorkspace: the explorer's tab. Moving a latent slider decodes the vector at once.

Decodes go to the engine's interactive lane, where a newer request replaces one still waiting, so
a fast drag runs only the requests the engine can keep up with; results that arrive out of date
(older than the one on screen) are ignored, by job id, which grows with every request."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget

from studio.core.events import ImageResult
from studio.core.jobs import LatentDecodeJob
from studio.engine.thread import to_qimage
from studio.state.jobs import JobList, JobState
from studio.ui.canvas import Canvas
from studio.ui.common import Workspace, canvas_beside_panel
from studio.ui.latent_panel import LatentPanel

PLACEHOLDER = "Move a slider to decode a point of the latent space."
UNKNOWN_SIZE = ("This model does not say how many numbers its latent holds (latent_dim in studio.json), "
                "so Explore cannot offer sliders for it yet.")


class ExploreWorkspace(Workspace):
    kind = "latent"
    noun = "latent"

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

        side = QWidget()
        form = QFormLayout()
        form.addRow("Model", self.models)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(12, 12, 12, 12)
        side_layout.setSpacing(10)
        side_layout.addLayout(form)
        side_layout.addWidget(self.panel, 1)
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
        self.canvas.clear()
        self.caption.clear()
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
        spec = LatentDecodeJob(model=self.models.model_id(), latent=tuple(latent))
        job_id = self.jobs.submit_or_report(spec)
        if job_id is not None:
            self._requested.add(job_id)
        return job_id

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        if job_id not in self._requested:
            return
        self._requested.discard(job_id)
        if job_id < self.shown_job or not isinstance(result, ImageResult) or not result.images:
            return  # a newer decode is already on screen
        self.shown_job = job_id
        image = result.images[0]
        self.canvas.set_image(to_qimage(image))
        seconds = result.info.get("seconds")
        took = f" · {seconds * 1000:.0f} ms" if isinstance(seconds, (int, float)) else ""
        self.caption.setText(f"{image.shape[1]}×{image.shape[0]}{took}")

    @Slot(int)
    def _on_changed(self, job_id: int) -> None:
        record = self.jobs.get(job_id)
        if job_id in self._requested and record is not None and record.state in (JobState.FAILED, JobState.CANCELLED):
            self._requested.discard(job_id)  # superseded or failed: no image will come
