"""ImageWorkspace: the artist's tab. A paint canvas with its tools on the left, the gallery strip
under it, the PromptPanel on the right.

txt2img paints previews and then the image on the canvas; img2img and inpainting start from what
is on the canvas (and the mask painted over it). Every finished image is written to the gallery
before it is shown. Clicking a gallery image shows it with its settings; "Use these settings"
puts them back in the panel, so Generate makes the same image again. Dropping a PNG made by
A1111, Forge, Fooocus, ComfyUI, InvokeAI or the studio fills the panel from its metadata."""

from __future__ import annotations

import dataclasses
import html
import logging
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.core.errors import StudioError
from studio.core.events import ImageResult
from studio.core.infotext import ImportedSettings, read_settings
from studio.core.jobs import ImageJob
from studio.ui.images import from_qimage, to_qimage
from studio.models.registry import ModelInfo
from studio.state.gallery import Gallery, GalleryWriter
from studio.state.inputs import store_input
from studio.state.jobs import JobList, JobState
from studio.state.settings_store import SettingsStore
from studio.ui.common import Workspace
from studio.ui.gallery_strip import GalleryStrip
from studio.ui.paint_canvas import PaintCanvas
from studio.ui.paint_tools import PaintTools
from studio.ui.prompt_panel import PromptPanel

log = logging.getLogger(__name__)


MAX_DROPPED_SIDE = 2048  # a larger picture is scaled down on arrival: bigger jobs are rarely meant


def _workable(image: QImage) -> QImage:
    """A dropped picture at a size a job can use: both sides scaled by one factor (no squashing)
    to at most MAX_DROPPED_SIDE, then each rounded down to a multiple of 8."""
    scale = min(1.0, MAX_DROPPED_SIDE / max(image.width(), image.height(), 1))
    width, height = (max(8, int(v * scale) // 8 * 8) for v in (image.width(), image.height()))
    if (width, height) == (image.width(), image.height()):
        return image
    return image.scaled(width, height, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)


class ImageWorkspace(Workspace):
    kind = "image"
    noun = "image"

    def __init__(self, jobs: JobList, gallery: Optional[Gallery] = None, parent: Optional[QWidget] = None):
        super().__init__(jobs, parent)
        self.gallery = gallery or Gallery()
        self.writer = GalleryWriter(self.gallery, self)
        self.writer.saved.connect(self._on_saved)
        self.writer.failed.connect(lambda _job, message: self.jobs.error.show(message))
        self.canvas = PaintCanvas("Write a prompt and press Generate, or drop or paste a picture.\n"
                                  "Wheel zooms, drag pans, double-click fits.")
        self.tools = PaintTools(self.canvas)
        self.caption = QLabel()
        self.caption.setObjectName("caption")
        self.caption.setTextFormat(Qt.TextFormat.PlainText)  # prompts and file names come from anywhere
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption.setWordWrap(True)
        self.use_settings = QPushButton("Use these settings")
        self.use_settings.setToolTip("Put this image's settings in the panel: Generate then makes it again")
        self.use_settings.setEnabled(False)
        self.use_settings.clicked.connect(lambda: self.apply_shown_settings())  # not clicked's bool
        self.strip = GalleryStrip()
        self.strip.image_chosen.connect(self.show_gallery_image)
        self.panel = PromptPanel(self.models, self.runtimes)
        self.panel.generate_requested.connect(self.generate)
        self.models.activated.connect(self._on_model_picked)
        self.canvas.image_dropped.connect(self._on_dropped)
        self.canvas.drop_refused.connect(self.jobs.error.show)

        self.panel.setMinimumWidth(280)
        self.set_content(self._layout())

        self._mine: dict[int, ImageJob] = {}  # jobs this workspace queued, by id
        self._shown = 0  # id of the job whose pixels are on the canvas
        self._shown_settings: Optional[ImportedSettings] = None
        self._results: dict[int, tuple[ImageJob, ImageResult]] = {}  # finished, being written
        self._before: dict[int, QImage] = {}  # what each running job's previews painted over
        self._shown_path = ""
        self._gallery_chosen = False  # True once the person picks a folder: only then is it remembered
        jobs.preview.connect(self._on_preview)
        jobs.finished.connect(self._on_finished)
        jobs.job_changed.connect(self._on_changed)
        self.strip.load_folder(self.gallery.folder)

    def _layout(self) -> QWidget:
        from studio.ui.common import canvas_beside_panel

        caption_row = QWidget()
        row = QHBoxLayout(caption_row)
        row.setContentsMargins(10, 4, 10, 4)
        row.addWidget(self.caption, 1)
        row.addWidget(self.use_settings)
        below = QWidget()
        below_layout = QVBoxLayout(below)
        below_layout.setContentsMargins(0, 0, 0, 0)
        below_layout.setSpacing(0)
        below_layout.addWidget(caption_row)
        below_layout.addWidget(self.strip)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(0)
        left_layout.addWidget(self.tools)
        left_layout.addWidget(self.canvas, 1)
        return canvas_beside_panel(left, below, self.panel)

    # -- models -----------------------------------------------------------------------------------

    @Slot(int)
    def _on_model_picked(self, _index: int) -> None:
        # Only when the person picks a model (not on start-up): their remembered size wins there.
        model = self.model_info()
        if model is not None:
            self.panel.width_.setValue(model.default_size)
            self.panel.height_.setValue(model.default_size)
            # The model's suggested steps and CFG (studio.json "defaults"), as `studio generate` uses them.
            suggested = model.manifest.get("defaults")
            if isinstance(suggested, dict):
                if isinstance(suggested.get("steps"), int):
                    self.panel.steps.setValue(suggested["steps"])
                if isinstance(suggested.get("guidance_scale"), (int, float)):
                    self.panel.guidance.setValue(float(suggested["guidance_scale"]))

    def set_loras(self, loras: list[ModelInfo]) -> None:
        self.panel.loras.set_available([(m.title, str(m.path)) for m in loras])

    # -- generating -------------------------------------------------------------------------------

    @Slot(object)
    def generate(self, spec: ImageJob) -> Optional[int]:
        try:
            spec = self._with_canvas(spec)
        except StudioError as exc:
            self.jobs.error.show(exc.message)
            return None
        job_id = self.jobs.submit_or_report(spec)
        if job_id is not None:
            self._mine[job_id] = spec
        return job_id

    def _with_canvas(self, spec: ImageJob) -> ImageJob:
        """The spec with the canvas (and mask) as its starting pictures when the mode asks for them.

        img2img and inpainting work at the canvas's size (rounded down to a multiple of 8), so the
        result, its previews and the mask all line up with the picture they started from."""
        mode = self.panel.mode_key()
        if mode == "txt2img":
            return spec
        image = self.canvas.image()
        if image.isNull():
            raise StudioError(f"{'Inpainting' if mode == 'inpaint' else 'Image to image'} starts from the canvas: "
                              "generate a picture first, or drop or paste one.")
        if mode == "inpaint" and not self.canvas.has_mask():
            raise StudioError("Paint the area to repaint on the canvas first (the Brush tool above it).")
        width, height = (max(8, v - v % 8) for v in (image.width(), image.height()))
        mask = self.canvas.mask_image() if mode == "inpaint" else None
        if (width, height) != (image.width(), image.height()):
            image = image.scaled(width, height, Qt.AspectRatioMode.IgnoreAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
            mask = mask.scaled(width, height) if mask is not None else None
        spec = dataclasses.replace(spec, init_image=str(store_input(from_qimage(image))), width=width, height=height)
        if mask is None:
            return spec
        grey = from_qimage(mask)  # grey to RGB: all three channels equal
        return dataclasses.replace(spec, mask=str(store_input(grey)))

    @Slot(int, QImage)
    def _on_preview(self, job_id: int, image: QImage) -> None:
        if job_id in self._mine and job_id >= self._shown:
            if job_id not in self._before:  # this job's first preview: keep what it paints over
                self._before[job_id] = self.canvas.image()
            self._shown = job_id
            spec = self._mine[job_id]
            if (image.width(), image.height()) != (spec.width, spec.height):
                # Latent-resolution previews, enlarged with square pixels to the job's size: the
                # canvas keeps its size, so an inpainting mask stays where it was painted.
                image = image.scaled(spec.width, spec.height, Qt.AspectRatioMode.IgnoreAspectRatio,
                                     Qt.TransformationMode.FastTransformation)
            self.canvas.set_image(image)
            record = self.jobs.get(job_id)
            step = f"step {record.step} of {record.total}" if record and record.total else "starting"
            self.caption.setText(f"{step} · seed {spec.seed}")

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        spec = self._mine.pop(job_id, None)
        if spec is None or not isinstance(result, ImageResult) or not result.images:
            return
        # On disk before on screen: a picture the person has seen is never lost. Each image is
        # saved with the spec that makes it again alone (its own seed).
        self._results[job_id] = (spec, result)
        self.writer.write(job_id, result.images, [spec.one_image(i) for i in range(len(result.images))], result.info)

    @Slot(int, list, object)
    def _on_saved(self, job_id: int, saved: list, images: object) -> None:
        spec, result = self._results.pop(job_id, (None, None))
        self._before.pop(job_id, None)
        if spec is None:
            return
        for path, image in reversed(list(zip(saved, result.images))):
            self.strip.add_image(path, to_qimage(image))
        if job_id < self._shown:
            return  # something newer is on the canvas (a later job, or a picture dropped since)
        self._shown = job_id
        self.canvas.set_image(to_qimage(result.images[0]))
        seconds = result.info.get("seconds")
        took = f" · {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
        count = f" · {len(result.images)} images" if len(result.images) > 1 else ""
        sampler = result.info.get("scheduler") or spec.scheduler
        settings = (f"{spec.width}×{spec.height} · {sampler + ' · ' if sampler else ''}{spec.steps} steps · "
                    f"CFG {spec.guidance_scale:g} · seed {spec.seed}")
        self.caption.setText(settings + count + took + (f" · {saved[0].name}" if saved else " · not saved"))
        self._shown_settings = None
        self.use_settings.setEnabled(False)

    @Slot(int)
    def _on_changed(self, job_id: int) -> None:
        record = self.jobs.get(job_id)
        if job_id in self._mine and record is not None and record.state in (JobState.FAILED, JobState.CANCELLED):
            self._mine.pop(job_id, None)  # failed or cancelled: nothing more will arrive
            before = self._before.pop(job_id, None)
            if before is not None and self._shown == job_id:
                # Put back what its previews painted over: a half-done preview must not become the
                # picture the next img2img or inpainting starts from.
                self.canvas.set_image(before)
                self.caption.setText(f"{record.state.value.capitalize()} · the canvas shows what it had before")

    # -- images from the gallery and from elsewhere -------------------------------------------------

    @Slot(str)
    def show_gallery_image(self, path: str) -> None:
        image = QImage(path)
        if image.isNull():
            self.jobs.error.show(f"{Path(path).name} cannot be read as an image.")
            return
        self.canvas.set_image(image)
        self._show_settings_of(path)

    def _show_settings_of(self, path: str) -> Optional[ImportedSettings]:
        """Read a PNG's generation settings (untrusted) and say what they are under the canvas."""
        self._shown_path = path
        try:
            settings = read_settings(Path(path))
        except StudioError as exc:
            self._shown_settings = None
            self.use_settings.setEnabled(False)
            self.caption.setText(f"{Path(path).name} · {exc.message}")
            return None
        self._shown_settings = settings
        self.use_settings.setEnabled(True)
        summary = f"{settings.source}: {settings.prompt[:120]}" if settings.prompt else settings.source
        details = [f"{settings.width}×{settings.height}" if settings.width and settings.height else "",
                   settings.scheduler, f"{settings.steps} steps" if settings.steps else "",
                   f"seed {settings.seed}" if settings.seed is not None else ""]
        self.caption.setText(" · ".join([Path(path).name, summary] + [d for d in details if d]))
        self.caption.setToolTip(html.escape(settings.text))  # tooltips guess at rich text: never let them
        return settings

    def apply_shown_settings(self, restore_canvas: bool = True) -> None:
        """The shown image's settings into the panel; with `restore_canvas`, the picture (and mask)
        its job started from onto the canvas, so img2img and inpainting repeat exactly too."""
        settings = self._shown_settings
        if settings is None:
            return
        spec = settings.spec or self._spec_from(settings)
        changed = self.panel.apply(spec, model_id=spec.model)
        if changed:
            self.jobs.error.show(f"Restored, but {', '.join(changed)} could not be set exactly; "
                                 "the image will differ.")
        if spec.init_image and restore_canvas:
            # Paths from an image's settings are untrusted: only regular files (a FIFO would block).
            init = QImage(spec.init_image) if Path(spec.init_image).is_file() else QImage()
            if init.isNull():
                self.jobs.error.show(f"The picture this image started from ({Path(spec.init_image).name}) is gone; "
                                     "the canvas shows the result instead.")
                self.panel.set_mode("txt2img")
                return
            self.canvas.set_image(init)
            if spec.mask and Path(spec.mask).is_file():
                mask = QImage(spec.mask)
                if not mask.isNull():
                    self.canvas.set_mask(mask)

    def _spec_from(self, settings: ImportedSettings) -> ImageJob:
        """A spec from another tool's settings; the panel's current values fill what they lack."""
        current = self.panel.build_spec()
        values = {"prompt": settings.prompt, "negative_prompt": settings.negative_prompt,
                  "steps": settings.steps, "guidance_scale": settings.guidance_scale, "seed": settings.seed,
                  "width": settings.width, "height": settings.height, "scheduler": settings.scheduler,
                  "strength": settings.strength}
        for side in ("width", "height"):  # other tools allow any size; ours must be a multiple of 8
            if isinstance(values[side], int):
                values[side] = max(8, values[side] - values[side] % 8)
        return dataclasses.replace(current, count=1, loras=self._known_loras(settings.loras), init_image="", mask="",
                                   **{k: v for k, v in values.items() if v not in (None, "") or k == "negative_prompt"})

    def _known_loras(self, wanted: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
        """Another tool's LoRAs (by name) matched to LoRA files the studio knows; the rest are named."""
        known = {Path(path).stem: path for path in self.panel.loras.available_paths()}
        found = tuple((known[name], weight) for name, weight in wanted if name in known)
        missing = [name for name, _ in wanted if name not in known]
        if missing:
            self.jobs.error.show(f"This image used LoRA{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(missing)}, not found in the models folders.")
        return found

    @Slot(QImage, str)
    def _on_dropped(self, image: QImage, path: str) -> None:
        """A picture dropped or pasted on the canvas: it becomes the canvas (for img2img and
        inpainting), and a PNG's generation settings fill the panel."""
        image = _workable(image)
        self.canvas.set_image(image)
        self._shown = max(self._mine, default=0) + 1  # a running job's previews must not paint over it
        self.panel.width_.setValue(image.width())
        self.panel.height_.setValue(image.height())
        settings = self._show_settings_of(path) if path.lower().endswith(".png") else None
        if settings is not None:
            mode = self.panel.mode_key()
            self.apply_shown_settings(restore_canvas=False)  # the dropped picture stays on the canvas
            self.panel.set_mode(mode)
        elif not path:
            self.caption.setText(f"Pasted picture · {image.width()}×{image.height()}")

    # -- settings ---------------------------------------------------------------------------------

    def set_gallery_folder(self, folder: Path) -> None:
        """Save new images in `folder` from now on, and show its images in the strip."""
        self.writer.flush()  # images already handed over go where they were headed
        self.gallery.folder = Path(folder)
        self.strip.load_folder(self.gallery.folder)
        self._gallery_chosen = True

    @Slot()
    def choose_gallery_folder(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Gallery folder", str(self.gallery.folder))
        if folder:
            self.set_gallery_folder(Path(folder))

    def finish_writes(self) -> None:
        """Let every finished image reach the disk (the window calls this as it closes)."""
        self.writer.close()

    def save_settings(self, store: SettingsStore) -> None:
        super().save_settings(store)
        self.panel.save_settings(store)
        self.tools.save_settings(store)
        if self._gallery_chosen:
            store.set("image/gallery_dir", str(self.gallery.folder))

    def restore_settings(self, store: SettingsStore) -> None:
        super().restore_settings(store)
        self._on_model_picked(0)  # the model's own size, unless a remembered one follows
        self.panel.restore_settings(store)
        self.tools.restore_settings(store)
        folder = store.get("image/gallery_dir", "")
        if folder:
            self.set_gallery_folder(Path(folder))
