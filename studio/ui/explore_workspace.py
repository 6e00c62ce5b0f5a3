"""ExploreWorkspace: the explorer's tab. Moving a latent slider decodes the vector at once.

Decodes go to the engine's interactive lane, where a newer request replaces one still waiting, so
a fast drag runs only the requests the engine can keep up with; results that arrive out of date
(older than the one on screen) are ignored, by job id, which grows with every request.

Beside the picture, the Map tab shows a grid of decodes around the current point over two
directions (latent_map.py); a click on a cell moves there. Under the sliders, the KeyframePanel
keeps keyframes: the sliders' point ("Add current"), a picture encoded by the model's encoder
(dropped on the canvas, or More → Add picture…), a crossbreed of keyframes (More → Crossbreed…),
or a saved set (More → Open keyframes…); Play and Export… morph through them (explore_morph.py).
Keyframes belong to one model's latent space, so choosing another model clears them (even one
with the same latent size: its space means something else).

With a diffusion model (emoji-sd, the user's SD models) the sliders give way to a prompt and a
seed (travel_panel.py): a keyframe is a prompt and a seed, Preview generates it, and Play and
Export… run seed and prompt travel through the same keyframe list, spacing and export.

Work that is not a slider's decode (keyframe thumbnails, the map) runs only while the sliders
rest: the interactive lane keeps one waiting request, and a slider's must not be replaced."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QFormLayout, QLabel, QSplitter, QStackedWidget, QTabWidget, QVBoxLayout,
                               QWidget)

from studio.core.errors import StudioError
from studio.core.events import ImageResult
from studio.core.jobs import LatentBatchJob, LatentDecodeJob
from studio.ui.images import to_qimage
from studio.latent.directions import Directions, directions_for
from studio.state.jobs import JobList, JobState
from studio.ui.canvas import Canvas
from studio.ui.common import Workspace, canvas_beside_panel
from studio.ui.crossbreed_dialog import CrossbreedDialog
from studio.ui.explore_keyframes import KeyframeSources
from studio.ui.explore_morph import MorphActions
from studio.ui.keyframe_panel import KeyframePanel
from studio.ui.latent_map import LatentMap
from studio.ui.latent_panel import LatentPanel
from studio.ui.travel_panel import TravelPanel

PLACEHOLDER = "Move a slider to decode a point of the latent space, or drop a picture here to encode it."
UNKNOWN_SIZE = ("This model does not say how many numbers its latent holds (latent_dim in studio.json), "
                "so Explore cannot offer sliders for it yet.")
TRAVEL_PLACEHOLDER = "Write a prompt and press Preview; add keyframes, then Play travels between them."
MAP_DELAY_MS = 150  # the map follows the point once the sliders have rested this long


class ExploreWorkspace(KeyframeSources, MorphActions, Workspace):
    kind = "latent"
    kinds = ("latent", "image")  # latent models first: the tab is theirs before diffusion's
    noun = "latent"

    # A slider's decode reached the canvas: (its job id, its latent). Ids only grow from one
    # emission to the next: an older decode never replaces a newer one.
    frame_shown = Signal(int, object)

    def __init__(self, jobs: JobList, parent: Optional[QWidget] = None):
        super().__init__(jobs, parent)
        # Decodes asked for and not yet ended, with their latents: a job's record may be gone
        # from the job list's short interactive history by the time its picture arrives.
        self._requested: dict[int, tuple] = {}
        self.shown_job = 0  # id of the decode on the canvas
        self.canvas = Canvas(PLACEHOLDER)
        self.canvas.accept_images()
        self.canvas.image_dropped.connect(self._on_picture_dropped)
        self.canvas.drop_refused.connect(jobs.error.show)
        self.panel = LatentPanel()
        self.panel.latent_changed.connect(self.request_decode)
        self.panel.latent_changed.connect(self._schedule_map)
        self.models.model_changed.connect(self._on_model_changed)
        self.caption = QLabel()
        self.caption.setContentsMargins(10, 4, 10, 6)
        self._shown_latent: Optional[tuple] = None  # the latent of the decode on the canvas
        self._thumb_jobs: dict[int, tuple] = {}  # decodes run only for a keyframe's thumbnail
        self._encode_jobs: dict[int, str] = {}  # pictures being encoded into keyframes: job -> name
        self.crossbreed_dialog: Optional[CrossbreedDialog] = None
        self.travel = TravelPanel()  # in place of the sliders for a diffusion model
        self.travel.preview_requested.connect(self.request_preview)
        self._preview_jobs: dict[int, dict] = {}  # a diffusion model's previews: job -> prompt and seed
        self._shown_key: Optional[dict] = None  # the prompt and seed of the preview on the canvas
        self.side_stack = QStackedWidget()
        self.side_stack.addWidget(self.panel)
        self.side_stack.addWidget(self.travel)

        # The map: a grid of decodes around the point, in a tab beside the picture.
        self.map = LatentMap()
        self.map.settings_changed.connect(self._schedule_map)
        self.map.cell_chosen.connect(self.go_to_cell)
        self.map_job: Optional[int] = None  # the map's decode in flight
        self._map_key: Optional[tuple] = None  # (latent, settings) the map's pictures show
        self._map_cells: list[tuple] = []  # the latents of the map job in flight
        self._pending_map_key: Optional[tuple] = None  # what the map job in flight will show
        self._shown_cells: list[tuple] = []  # the latents of the map's pictures
        self.map_timer = QTimer(self)
        self.map_timer.setSingleShot(True)
        self.map_timer.setInterval(MAP_DELAY_MS)
        self.map_timer.timeout.connect(self._idle_work)
        self.views = QTabWidget()
        self.views.setDocumentMode(True)
        self.views.addTab(self.canvas, "Picture")
        self.views.addTab(self.map, "Map")
        self.views.currentChanged.connect(self._schedule_map)

        # Keyframes and morphs.
        self.keyframes = KeyframePanel()
        self.keyframes.keyframe_selected.connect(self._on_key_selected)
        self.keyframes.add_requested.connect(self.add_keyframe)
        self.keyframes.picture_chosen.connect(self.add_picture)
        self.keyframes.crossbreed_requested.connect(self.open_crossbreed)
        self.keyframes.save_requested.connect(self.save_keyframes)
        self.keyframes.open_requested.connect(self.open_keyframes)
        self.keyframes.problem.connect(jobs.error.show)
        self._init_morphs()

        side = QWidget()
        form = QFormLayout()
        form.addRow("Model", self.models)
        form.addRow("Runtime", self.runtimes)
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
        self.side_splitter.addWidget(self.side_stack)
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

        splitter = canvas_beside_panel(self.views, self.caption, side)
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
        for job_id in [*self._thumb_jobs, *self._preview_jobs, *self._encode_jobs]:
            self.jobs.cancel(job_id)  # the previous model's work: nobody will see it
        self._thumb_jobs.clear()
        self._encode_jobs.clear()
        self._preview_jobs.clear()
        self._shown_key = None
        self.map_job, self._map_key, self._shown_cells = None, None, []
        self.map.clear()
        self._stop_playback()
        self.keyframes.clear()  # another model's latent space: the keys mean nothing here
        self._shown_latent = None
        self.canvas.clear()
        self.caption.clear()
        self.keyframes.set_enabled_for_model(bool(model_id) and (self.is_diffusion() or self.latent_dim() is not None))
        self.keyframes.set_tools(not self.is_diffusion())
        self.views.setTabEnabled(self.views.indexOf(self.map), not self.is_diffusion())
        self.side_stack.setCurrentWidget(self.travel if self.is_diffusion() else self.panel)
        if not model_id:
            return
        if self.is_diffusion():
            model = self.model_info()
            defaults = model.manifest.get("defaults") if isinstance(model.manifest.get("defaults"), dict) else {}
            steps, guidance = defaults.get("steps", 20), defaults.get("guidance_scale", 7.0)
            self.travel.set_defaults(steps if isinstance(steps, int) else 20,
                                     guidance if isinstance(guidance, (int, float)) else 7.0, model.default_size)
            self.views.setCurrentWidget(self.canvas)
            self.canvas.set_placeholder(TRAVEL_PLACEHOLDER)
            return
        dim = self.latent_dim()
        if dim is None:
            self.panel.set_unavailable(UNKNOWN_SIZE)
            self.canvas.set_placeholder("")
            return
        model = self.model_info()
        try:
            directions = directions_for(model.path if model.path.is_dir() else None, model.manifest, dim)
        except StudioError as exc:  # a broken directions entry: say so, and offer the plain axes
            self.jobs.error.show(f"{model.id}: {exc.message} Its sliders follow the latent's own axes.")
            directions = Directions.axes(dim)
        self.panel.set_directions(directions)
        self.map.set_directions(self.panel.names())
        self.canvas.set_placeholder(PLACEHOLDER)
        if self.isVisible():
            self.request_decode(self.panel.latent())

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        # A visit to an empty canvas decodes the sliders' point (the centre at first), so the canvas
        # is not left empty.
        if self.canvas.image().isNull() and not self._requested and self.has_models() and not self.is_diffusion():
            self.request_decode(self.panel.latent())

    def is_diffusion(self) -> bool:
        """Whether the selected model is a diffusion image model (keyframes are prompt and seed)."""
        model = self.model_info()
        return model is not None and model.kind == "image"

    @Slot(object)
    def request_decode(self, latent: tuple) -> Optional[int]:
        if not self.models.model_id() or self.latent_dim() is None or self.is_diffusion():
            return None
        self._stop_playback()  # a new point to look at ends a playing morph
        spec = LatentDecodeJob(model=self.models.model_id(), latent=tuple(latent))
        job_id = self.jobs.submit_or_report(spec)
        if job_id is not None:
            self._requested[job_id] = spec.latent
            record = self.jobs.get(job_id)
            if record is not None and record.state.is_terminal:  # ended while it was being queued
                self._requested.pop(job_id, None)
        return job_id

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        if self._morph_ended(job_id, result):
            return
        if job_id in self._thumb_jobs:
            latent = self._thumb_jobs.pop(job_id)
            if isinstance(result, ImageResult) and result.images:
                self.keyframes.offer_thumbnail(latent, to_qimage(result.images[0]))
            self._schedule_idle_work()
            return
        if job_id == self.map_job:
            self._on_map_decoded(result)
            return
        if job_id in self._encode_jobs:
            self._on_picture_encoded(self._encode_jobs.pop(job_id), result)
            return
        if job_id in self._preview_jobs:
            self._on_preview(job_id, self._preview_jobs.pop(job_id), result)
            return
        if job_id not in self._requested:
            return
        latent = self._requested.pop(job_id)
        self._schedule_idle_work()
        if job_id < self.shown_job or not isinstance(result, ImageResult) or not result.images:
            return  # a newer decode is already on screen
        qimage = to_qimage(result.images[0])
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
            self._requested.pop(job_id)  # superseded or failed: no image will come
            self._schedule_idle_work()
        elif job_id in self._thumb_jobs and ended:
            latent = self._thumb_jobs.pop(job_id)
            if record.state is JobState.FAILED:  # said on the error bar; asking again would fail again
                self.keyframes.give_up_thumbnail(latent)
            self._schedule_idle_work()  # replaced by a slider move: try again when the sliders rest
        elif job_id == self.map_job and ended:
            self.map_job = None
            if record.state is JobState.FAILED:  # not again until the point or the settings change
                self._map_key = self._pending_map_key
            self._schedule_idle_work()  # replaced by a slider move: the map follows when they rest
        elif job_id in self._encode_jobs and ended:  # a failure is on the error bar already
            self._encode_jobs.pop(job_id)
            self.caption.setText("")
        elif job_id in self._preview_jobs and ended:
            self._preview_jobs.pop(job_id)
            self._schedule_idle_work()
        elif job_id in self._preview_jobs and record is not None and record.total:
            self.caption.setText(f"Generating the preview… {record.step}/{record.total}")
        else:
            self._morph_changed(job_id, record)

    # -- keyframes ----------------------------------------------------------------------------------

    @Slot()
    def add_keyframe(self) -> Optional[str]:
        """Add the sliders' point as a keyframe, with the canvas's decode as its thumbnail when the
        canvas shows that point (else the decode on its way supplies it)."""
        if self.is_diffusion():
            return self._add_travel_key()
        latent = self.panel.latent()
        if not latent:
            return None
        self._stop_playback()
        thumbnail = self.canvas.image() if self._shown_latent == latent else None
        name = self.keyframes.add_keyframe(latent, thumbnail)
        self._schedule_idle_work()
        return name

    # -- work done while the sliders rest: thumbnails, the map ---------------------------------------

    def _schedule_idle_work(self) -> None:
        """Deferred to the event loop: this runs from job signals, which a submit can emit while
        it is still queueing a slider's decode (a waiting idle decode is superseded); an idle decode
        submitted right then would supersede that slider decode before it is even recorded."""
        QTimer.singleShot(0, self._idle_work)

    @Slot()
    def _idle_work(self) -> None:
        """One decode that is not a slider's, when none is pending: the map when it is shown and
        out of date (after the point has rested MAP_DELAY_MS), else a keyframe's missing thumbnail
        (its point was added before its decode arrived, or the decode was replaced)."""
        if (self._requested or self._thumb_jobs or self._preview_jobs or self.map_job is not None
                or not self.models.model_id()):
            return
        if self._map_wanted():
            if not self.map_timer.isActive():
                self._request_map()
            return
        latent = self.keyframes.missing_thumbnail()
        if latent is None:
            return
        key = self.keyframes.payload_of(latent)
        spec = self._preview_spec(key) if key is not None else LatentDecodeJob(model=self.models.model_id(), latent=latent)
        job_id = self.jobs.submit_or_report(spec)
        if job_id is not None:
            self._thumb_jobs[job_id] = latent

    # -- the map -------------------------------------------------------------------------------------

    def _map_key_now(self) -> tuple:
        return (self.panel.latent(), self.map.settings())

    def _map_wanted(self) -> bool:
        return (self.views.currentWidget() is self.map and self.map.ready() and self.latent_dim() is not None
                and self._map_key != self._map_key_now())

    @Slot()
    def _schedule_map(self, *_args) -> None:
        """The point or the map's settings changed: the map follows once things rest."""
        if self.views.currentWidget() is self.map:
            self.map_timer.start()

    def _request_map(self) -> Optional[int]:
        latent = self.panel.latent()
        cells = [tuple(float(v) for v in self.panel.directions.offset(latent, steps))
                 for steps in self.map.cell_steps()]
        job_id = self.jobs.submit_or_report(LatentBatchJob(model=self.models.model_id(), latents=tuple(cells)))
        if job_id is not None:
            self.map_job = job_id
            self._map_cells = cells
            self._pending_map_key = self._map_key_now()
        return job_id

    def _on_map_decoded(self, result: object) -> None:
        self.map_job = None
        # Pictures made for other settings (the grid's size changed meanwhile) are not drawn.
        fits = self._pending_map_key is not None and self._pending_map_key[1] == self.map.settings()
        if fits and isinstance(result, ImageResult) and len(result.images) == len(self._map_cells):
            self.map.set_images([to_qimage(image) for image in result.images])
            self._map_key = self._pending_map_key
            self._shown_cells = self._map_cells
        self._schedule_idle_work()  # the point may have moved on meanwhile

    @Slot(int)
    def go_to_cell(self, index: int) -> None:
        """A click on a map cell: the sliders go to the point that cell shows (and the map
        re-centres on it)."""
        if 0 <= index < len(self._shown_cells):
            self.panel.set_latent(self._shown_cells[index])
