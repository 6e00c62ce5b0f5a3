"""ImageWorkspace: the artist's tab. A paint canvas with its tools on the left, the gallery strip
under it, the PromptPanel on the right.

The widgets bind to an ImageSession (studio/state/image_session.py), which does everything with
jobs: Generate hands it the panel's spec, the mode and the canvas picture and mask; it says which
previews and results reach the canvas (every finished image is in the gallery before it is shown)
and what to put back when a job is cancelled. The widget paints what it is told.

Clicking a gallery image shows it with its settings; "Use these settings" puts them back in the
panel, so Generate makes the same image again. Dropping a PNG made by A1111, Forge, Fooocus,
ComfyUI, InvokeAI or the studio fills the panel from its metadata."""

from __future__ import annotations

import dataclasses
import html
import logging
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.core.errors import StudioError
from studio.core.infotext import ImportedSettings, read_settings
from studio.core.jobs import ImageJob
from studio.models.registry import ModelInfo
from studio.state.gallery import Gallery
from studio.state.image_session import ImageSession
from studio.state.jobs import JobHandle, JobList
from studio.state.settings_store import SettingsStore
from studio.ui.common import Workspace
from studio.ui.gallery_strip import GalleryStrip
from studio.ui.images import from_qimage, to_qimage
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
        self.session = ImageSession(jobs, gallery or Gallery(), read_canvas=self._canvas_picture, parent=self)
        self.canvas = PaintCanvas(
            "Write a prompt and press Generate, or drop or paste a picture.\nWheel zooms, drag pans, double-click fits."
        )
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

        self._shown_settings: Optional[ImportedSettings] = None  # of the gallery image or PNG shown
        self._shown_path = ""
        self._gallery_chosen = False  # True once the person picks a folder: only then is it remembered
        self.session.preview_shown.connect(self._on_preview)
        self.session.picture_restored.connect(self._on_restored)
        self.session.images_saved.connect(self._on_saved)
        self.session.result_shown.connect(self._on_result)
        self.session.caption_changed.connect(self.caption.setText)
        self.strip.load_folder(self.session.gallery.folder)

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
            suggested = model.suggested  # the model's own size, steps and CFG, as `studio generate` uses them
            self.panel.width_.setValue(suggested.size)
            self.panel.height_.setValue(suggested.size)
            if suggested.steps is not None:
                self.panel.steps.setValue(suggested.steps)
            if suggested.guidance_scale is not None:
                self.panel.guidance.setValue(suggested.guidance_scale)

    def set_loras(self, loras: list[ModelInfo]) -> None:
        self.panel.loras.set_available([(m.title, str(m.path)) for m in loras])

    # -- generating -------------------------------------------------------------------------------

    @Slot(object)
    def generate(self, spec: ImageJob) -> Optional[JobHandle]:
        mode = self.panel.mode_key()
        if mode == "txt2img":
            return self.session.generate(spec, mode)
        mask = from_qimage(self.canvas.mask_image()) if mode == "inpaint" and self.canvas.has_mask() else None
        return self.session.generate(spec, mode, self._canvas_picture(), mask)

    def _canvas_picture(self) -> Optional[np.ndarray]:
        image = self.canvas.image()
        return None if image.isNull() else from_qimage(image)

    @Slot(object, int, int)
    def _on_preview(self, picture: np.ndarray, width: int, height: int) -> None:
        image = to_qimage(picture)
        if (image.width(), image.height()) != (width, height):
            # Latent-resolution previews, enlarged with square pixels to the job's size: the
            # canvas keeps its size, so an inpainting mask stays where it was painted.
            image = image.scaled(
                width, height, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation
            )
        self.canvas.set_image(image)

    @Slot(object)
    def _on_restored(self, picture: Optional[np.ndarray]) -> None:
        self.canvas.set_image(QImage() if picture is None else to_qimage(picture))

    @Slot(list)
    def _on_saved(self, saved: list) -> None:
        for path, picture in reversed(saved):  # the strip shows the newest first
            self.strip.add_image(path, to_qimage(picture))

    @Slot(object)
    def _on_result(self, picture: np.ndarray) -> None:
        self.canvas.set_image(to_qimage(picture))
        self._shown_settings = None  # the session's caption says what made it
        self.use_settings.setEnabled(False)

    # -- images from the gallery and from elsewhere -------------------------------------------------

    @Slot(str)
    def show_gallery_image(self, path: str) -> None:
        image = QImage(path)
        if image.isNull():
            self.jobs.error.show(f"{Path(path).name} cannot be read as an image.")
            return
        self.canvas.set_image(image)
        self._show_settings_of(path)

    def _show_no_settings(self) -> None:
        self._shown_path, self._shown_settings = "", None
        self.use_settings.setEnabled(False)

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
        details = [
            f"{settings.width}×{settings.height}" if settings.width and settings.height else "",
            settings.scheduler,
            f"{settings.steps} steps" if settings.steps else "",
            f"seed {settings.seed}" if settings.seed is not None else "",
        ]
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
            self.jobs.error.show(f"Restored, but {', '.join(changed)} could not be set exactly; the image will differ.")
        if spec.init_image and restore_canvas:
            # Paths from an image's settings are untrusted: only regular files (a FIFO would block).
            init = QImage(spec.init_image) if Path(spec.init_image).is_file() else QImage()
            if init.isNull():
                self.jobs.error.show(
                    f"The picture this image started from ({Path(spec.init_image).name}) is gone; "
                    "the canvas shows the result instead."
                )
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
        values = {
            "prompt": settings.prompt,
            "negative_prompt": settings.negative_prompt,
            "steps": settings.steps,
            "guidance_scale": settings.guidance_scale,
            "seed": settings.seed,
            "width": settings.width,
            "height": settings.height,
            "scheduler": settings.scheduler,
            "strength": settings.strength,
        }
        for side in ("width", "height"):  # other tools allow any size; ours must be a multiple of 8
            if isinstance(values[side], int):
                values[side] = max(8, values[side] - values[side] % 8)
        return dataclasses.replace(
            current,
            count=1,
            loras=self._known_loras(settings.loras),
            init_image="",
            mask="",
            **{k: v for k, v in values.items() if v not in (None, "") or k == "negative_prompt"},
        )

    def _known_loras(self, wanted: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
        """Another tool's LoRAs (by name) matched to LoRA files the studio knows; the rest are named."""
        known = {Path(path).stem: path for path in self.panel.loras.available_paths()}
        found = tuple((known[name], weight) for name, weight in wanted if name in known)
        missing = [name for name, _ in wanted if name not in known]
        if missing:
            self.jobs.error.show(
                f"This image used LoRA{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}, not found in the models folders."
            )
        return found

    @Slot(QImage, str)
    def _on_dropped(self, image: QImage, path: str) -> None:
        """A picture dropped or pasted on the canvas: it becomes the canvas (for img2img and
        inpainting), and the generation settings of a dropped PNG, JPEG or WebP fill the panel. A
        picture with none (pasted, or a file without readable settings) leaves none shown: the
        previous picture's settings must not stay offered under this one."""
        image = _workable(image)
        self.canvas.set_image(image)
        self.session.picture_placed()  # a running job's previews must not paint over it
        self.panel.width_.setValue(image.width())
        self.panel.height_.setValue(image.height())
        settings = self._show_settings_of(path) if path else self._show_no_settings()
        if settings is not None:
            mode = self.panel.mode_key()
            self.apply_shown_settings(restore_canvas=False)  # the dropped picture stays on the canvas
            self.panel.set_mode(mode)
        elif not path:
            self.caption.setText(f"Pasted picture · {image.width()}×{image.height()}")

    # -- settings ---------------------------------------------------------------------------------

    def set_gallery_folder(self, folder: Path) -> None:
        """Save new images in `folder` from now on, and show its images in the strip."""
        self.session.set_gallery_folder(Path(folder))
        self.strip.load_folder(self.session.gallery.folder)
        self._gallery_chosen = True

    @Slot()
    def choose_gallery_folder(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Gallery folder", str(self.session.gallery.folder))
        if folder:
            self.set_gallery_folder(Path(folder))

    def finish_writes(self) -> None:
        """Let every finished image reach the disk (the window calls this as it closes)."""
        self.session.finish_writes()

    def save_settings(self, store: SettingsStore) -> None:
        super().save_settings(store)
        self.panel.save_settings(store)
        self.tools.save_settings(store)
        if self._gallery_chosen:
            store.set("image/gallery_dir", str(self.session.gallery.folder))

    def restore_settings(self, store: SettingsStore) -> None:
        super().restore_settings(store)
        self._on_model_picked(0)  # the model's own size, unless a remembered one follows
        self.panel.restore_settings(store)
        self.tools.restore_settings(store)
        folder = store.get("image/gallery_dir", "")
        if folder:
            self.set_gallery_folder(Path(folder))
