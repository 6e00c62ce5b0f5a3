"""ExploreWorkspace: the explorer's tab. Moving a latent slider decodes the vector at once.

The widgets here bind to an ExploreSession (state/explore_session.py), which runs and follows the
tab's jobs: a person's action calls a session method with plain values, and the session's signals
bring pictures (numpy arrays) to paint. Decodes go to the engine's interactive lane, where a newer
request replaces one still waiting, so a fast drag runs only the requests the engine can keep up
with; the session lets no decode paint over a newer one.

Beside the picture, the Map tab shows a grid of decodes around the current point over two
directions (latent_map.py); a click on a cell moves there. Under the sliders, the KeyframePanel
keeps keyframes: the sliders' point ("Add current"), a picture encoded by the model's encoder
(dropped on the canvas, or More → Add picture…), a crossbreed of keyframes (More → Crossbreed…),
or a saved set (More → Open keyframes…) — those sources are `sources` (explore_keyframes.py); Play
and Export… morph through them (`morphs`, explore_morph.py). Keyframes belong to one model's latent
space, so choosing another model clears them (even one with the same latent size: its space means
something else).

With a diffusion model (emoji-sd, the user's SD models) the sliders give way to a prompt and a
seed (travel_panel.py): a keyframe is a prompt and a seed, Preview generates it, and Play and
Export… run seed and prompt travel through the same keyframe list, spacing and export.

Work that is not a slider's decode (keyframe thumbnails, the map) runs only while the sliders
rest: the session says `idle` when nothing for the canvas is on its way, and the map waits until
the point has rested MAP_DELAY_MS."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QFormLayout, QLabel, QSplitter, QStackedWidget, QTabWidget, QVBoxLayout, QWidget

from studio.core.errors import StudioError
from studio.latent.directions import Directions, directions_for
from studio.state.explore_morphs import MorphKeys
from studio.state.explore_session import ExploreSession
from studio.state.jobs import JobHandle, JobList
from studio.ui.canvas import Canvas
from studio.ui.common import Workspace, canvas_beside_panel
from studio.ui.explore_keyframes import KeyframeSources
from studio.ui.explore_morph import MorphActions
from studio.ui.images import to_qimage
from studio.ui.keyframe_panel import KeyframePanel
from studio.ui.latent_map import LatentMap
from studio.ui.latent_panel import LatentPanel
from studio.ui.travel_panel import TravelPanel

PLACEHOLDER = "Move a slider to decode a point of the latent space, or drop a picture here to encode it."
UNKNOWN_SIZE = (
    "This model does not say how many numbers its latent holds (latent_dim in studio.json), "
    "so Explore cannot offer sliders for it yet."
)
TRAVEL_PLACEHOLDER = "Write a prompt and press Preview; add keyframes, then Play travels between them."
MAP_DELAY_MS = 150  # the map follows the point once the sliders have rested this long


class ExploreWorkspace(Workspace):
    kind = "latent"
    kinds = ("latent", "image")  # latent models first: the tab is theirs before diffusion's
    noun = "latent"

    # A slider's decode reached the canvas: (its job handle, its latent). Each one emitted was
    # asked for after the one before it: an older decode never replaces a newer one.
    frame_shown = Signal(object, object)

    def __init__(self, jobs: JobList, parent: Optional[QWidget] = None):
        super().__init__(jobs, parent)
        self.session = ExploreSession(jobs, self)
        self.canvas = Canvas(PLACEHOLDER)
        self.canvas.accept_images()
        self.canvas.drop_refused.connect(jobs.error.show)
        self.panel = LatentPanel()
        self.panel.latent_changed.connect(self.request_decode)
        self.panel.latent_changed.connect(self._schedule_map)
        self.models.model_changed.connect(self._on_model_changed)
        self.caption = QLabel()
        self.caption.setContentsMargins(10, 4, 10, 6)
        self.travel = TravelPanel()  # in place of the sliders for a diffusion model
        self.side_stack = QStackedWidget()
        self.side_stack.addWidget(self.panel)
        self.side_stack.addWidget(self.travel)

        # The map: a grid of decodes around the point, in a tab beside the picture.
        self.map = LatentMap()
        self.map.settings_changed.connect(self._schedule_map)
        self.map.cell_chosen.connect(self.go_to_cell)
        self._map_key: Optional[tuple] = None  # (latent, settings) the map's pictures show
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

        # Keyframes, where they come from, and the morphs through them.
        self.keyframes = KeyframePanel()
        self.keyframes.add_requested.connect(self.add_keyframe)
        self.keyframes.problem.connect(jobs.error.show)
        self.sources = KeyframeSources(self)
        self.morphs = MorphActions(
            self.session.morphs, self.keyframes, self.canvas, self.caption, jobs.error, self._morph_keys, self
        )

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

        self.session.frame_ready.connect(self._on_frame)
        self.session.thumbnail_ready.connect(self._on_thumbnail)
        self.session.thumbnail_failed.connect(self.keyframes.give_up_thumbnail)
        self.session.map_decoded.connect(self._on_map_decoded)
        self.session.map_failed.connect(self._on_map_failed)
        self.session.idle.connect(self._idle_work)
        self.session.status.connect(self.caption.setText)

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
        self.session.set_model(model_id)  # the previous model's work: nobody will see it
        self._map_key, self._shown_cells = None, []
        self.map.clear()
        self.keyframes.clear()  # another model's latent space: the keys mean nothing here
        self.canvas.clear()
        self.caption.clear()
        self.keyframes.set_enabled_for_model(bool(model_id) and (self.is_diffusion() or self.latent_dim() is not None))
        self.keyframes.set_tools(not self.is_diffusion())
        self.views.setTabEnabled(self.views.indexOf(self.map), not self.is_diffusion())
        self.side_stack.setCurrentWidget(self.travel if self.is_diffusion() else self.panel)
        model = self.model_info()
        if not model_id or model is None:
            return
        if self.is_diffusion():
            suggested = model.suggested
            self.travel.set_defaults(
                suggested.steps if suggested.steps is not None else 20,
                suggested.guidance_scale if suggested.guidance_scale is not None else 7.0,
                suggested.size,
            )
            self.views.setCurrentWidget(self.canvas)
            self.canvas.set_placeholder(TRAVEL_PLACEHOLDER)
            return
        dim = self.latent_dim()
        if dim is None:
            self.panel.set_unavailable(UNKNOWN_SIZE)
            self.canvas.set_placeholder("")
            return
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
        if (
            self.canvas.image().isNull()
            and not self.session.is_decoding()
            and self.has_models()
            and not self.is_diffusion()
        ):
            self.request_decode(self.panel.latent())

    def is_diffusion(self) -> bool:
        """Whether the selected model is a diffusion image model (keyframes are prompt and seed)."""
        model = self.model_info()
        return model is not None and model.kind == "image"

    @Slot(object)
    def request_decode(self, latent: tuple) -> Optional[JobHandle]:
        """Decode the sliders' point for the canvas; None when this model has no sliders."""
        if not self.models.model_id() or self.latent_dim() is None or self.is_diffusion():
            return None
        return self.session.decode(latent)

    def _on_frame(self, job: JobHandle, image, latent: tuple, seconds: Optional[float]) -> None:
        qimage = to_qimage(image)
        self.keyframes.offer_thumbnail(latent, qimage)
        self.canvas.set_image(qimage)
        took = f" · {seconds * 1000:.0f} ms" if seconds is not None else ""
        self.caption.setText(f"{image.shape[1]}×{image.shape[0]}{took}")
        self.frame_shown.emit(job, latent)

    def _on_thumbnail(self, latent: tuple, image) -> None:
        self.keyframes.offer_thumbnail(latent, to_qimage(image))

    # -- keyframes ----------------------------------------------------------------------------------

    @Slot()
    def add_keyframe(self) -> Optional[str]:
        """Add the sliders' point as a keyframe, with the canvas's decode as its thumbnail when the
        canvas shows that point (else the decode on its way supplies it)."""
        if self.is_diffusion():
            return self.sources.add_travel_key()
        latent = self.panel.latent()
        if not latent:
            return None
        self.session.morphs.stop_playback()
        thumbnail = self.canvas.image() if self.session.shown_latent == latent else None
        name = self.keyframes.add_keyframe(latent, thumbnail)
        self.session.schedule_idle()
        return name

    def _morph_keys(self) -> MorphKeys:
        return MorphKeys(
            latents=self.keyframes.latents(),
            payloads=tuple(self.keyframes.payloads()),
            settings=self.keyframes.morph_settings(),
            travel=self.travel.settings(),
        )

    def finish_exports(self, patience_s: float = 30.0) -> None:
        """The window is closing: a morph being written is finished (or cancelled after `patience_s`)."""
        self.morphs.finish_exports(patience_s)

    # -- work done while the sliders rest: thumbnails, the map ---------------------------------------

    @Slot()
    def _idle_work(self) -> None:
        """One decode that is not a slider's, when none is on its way: the map when it is shown and
        out of date (after the point has rested MAP_DELAY_MS), else a keyframe's missing thumbnail
        (its point was added before its decode arrived, or the decode was replaced)."""
        if self.session.is_busy() or not self.models.model_id():
            return
        if self._map_wanted():
            if not self.map_timer.isActive():
                self._request_map()
            return
        latent = self.keyframes.missing_thumbnail()
        if latent is None:
            return
        key = self.keyframes.payload_of(latent)
        self.session.draw_thumbnail(latent, key, self.travel.settings() if key is not None else None)

    # -- the map -------------------------------------------------------------------------------------

    def _map_key_now(self) -> tuple:
        return (self.panel.latent(), self.map.settings())

    def _map_wanted(self) -> bool:
        return (
            self.views.currentWidget() is self.map
            and self.map.ready()
            and self.latent_dim() is not None
            and self._map_key != self._map_key_now()
        )

    @Slot()
    def _schedule_map(self, *_args) -> None:
        """The point or the map's settings changed: the map follows once things rest."""
        if self.views.currentWidget() is self.map:
            self.map_timer.start()

    def _request_map(self) -> Optional[JobHandle]:
        latent = self.panel.latent()
        cells = [
            tuple(float(v) for v in self.panel.directions.offset(latent, steps)) for steps in self.map.cell_steps()
        ]
        return self.session.decode_map(cells, self._map_key_now())

    def _on_map_decoded(self, images: list, cells: list[tuple], key: tuple) -> None:
        if key[1] != self.map.settings():
            return  # pictures made for other settings (the grid's size changed meanwhile) are not drawn
        self.map.set_images([to_qimage(image) for image in images])
        self._map_key = key
        self._shown_cells = cells

    def _on_map_failed(self, key: tuple) -> None:
        self._map_key = key  # not asked for again until the point or the settings change

    @Slot(int)
    def go_to_cell(self, index: int) -> None:
        """A click on a map cell: the sliders go to the point that cell shows (and the map
        re-centres on it)."""
        if 0 <= index < len(self._shown_cells):
            self.panel.set_latent(self._shown_cells[index])
