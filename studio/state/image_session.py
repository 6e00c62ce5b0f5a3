"""ImageSession: what the Image tab does with its jobs, without a widget in sight.

The workspace hands it plain values (the panel's spec, the mode, the canvas picture and mask as
numpy arrays) and binds its signals to the canvas, the gallery strip and the caption. The session
builds the job from them, follows each job's handle, and decides what reaches the canvas:

- A job's previews paint unless something newer is on the canvas (a later job's pixels, or a
  picture dropped since); a job that paints makes every older one stop.
- A cancelled or failed job that painted puts back what its first preview painted over: a
  half-done preview must not become the picture the next img2img or inpainting starts from.
- A finished image is on disk before it is shown: the gallery writer saves it, then the strip
  and (unless something newer is on the canvas) the canvas get it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from studio.core.errors import StudioError
from studio.core.events import ImageResult
from studio.core.jobs import ImageJob
from studio.state.gallery import Gallery, GalleryWriter
from studio.state.inputs import store_input
from studio.state.jobs import JobHandle, JobList

# Reads the picture on the canvas right now (None when it is empty): what a first preview covers.
CanvasReader = Callable[[], Optional[np.ndarray]]


class _CanvasJob(QObject):
    """One job of this session, as far as the canvas is concerned. A child of the session, so the
    handle's signals stop reaching it when the session goes (the job list outlives the window)."""

    def __init__(self, handle: JobHandle, spec: ImageJob, session: "ImageSession"):
        super().__init__(session)
        self._session = session
        self.handle = handle
        self.spec = spec  # as built here: the gallery saves it (the handle's may name the runtime picked)
        self.painted = False  # whether its previews have reached the canvas
        self.before: Optional[np.ndarray] = None  # what its first preview painted over (None: an empty canvas)
        handle.preview.connect(self._preview)
        handle.finished.connect(self._finished)
        handle.failed.connect(self._stopped)
        handle.cancelled.connect(self._stopped)

    @Slot(object)
    def _preview(self, picture: np.ndarray) -> None:
        self._session._on_preview(self, picture)

    @Slot(object)
    def _finished(self, result: object) -> None:
        self._session._on_finished(self, result)

    @Slot(str)
    def _stopped(self, _why: str) -> None:
        self._session._on_stopped(self)


class ImageSession(QObject):
    """The Image tab's jobs: built from the canvas and panel, followed by handle, shown in order."""

    preview_shown = Signal(object, int, int)  # the picture so far, the job's width and height (scale it to them)
    picture_restored = Signal(object)  # what a stopped job's previews covered (None: the canvas was empty)
    images_saved = Signal(list)  # [(Path, picture)] on disk, in batch order: for the gallery strip
    result_shown = Signal(object)  # a finished job's first picture, already on disk: for the canvas
    caption_changed = Signal(str)  # the line under the canvas, when it is about a job

    def __init__(self, jobs: JobList, gallery: Gallery, read_canvas: CanvasReader, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.jobs = jobs
        self.gallery = gallery
        self.writer = GalleryWriter(gallery, self)
        self.writer.failed.connect(jobs.error.show)
        self._read_canvas = read_canvas
        # Jobs that may still paint, oldest first: a job that paints drops the older ones, and a
        # picture from elsewhere drops them all.
        self._painters: list[_CanvasJob] = []
        self._on_canvas: Optional[_CanvasJob] = None  # whose pixels the canvas shows (None: not a job's)

    @property
    def on_canvas(self) -> Optional[JobHandle]:
        """The job whose preview or result is on the canvas; None when the picture came from elsewhere."""
        return self._on_canvas.handle if self._on_canvas is not None else None

    # -- commands ---------------------------------------------------------------------------------

    def generate(
        self, spec: ImageJob, mode: str, picture: Optional[np.ndarray] = None, mask: Optional[np.ndarray] = None
    ) -> Optional[JobHandle]:
        """Queue the panel's spec in `mode` ("txt2img", "img2img", "inpaint"), starting from the
        canvas `picture` (H x W x 3 uint8, None when empty) and `mask` (H x W or H x W x 3, non-zero
        = repaint) where the mode asks for them. Returns the job, or None when it could not be
        queued (the error bar says why)."""
        try:
            spec = self._with_canvas(spec, mode, picture, mask)
        except StudioError as exc:
            self.jobs.error.show(exc.message)
            return None
        handle = self.jobs.submit_or_report(spec)
        if handle is not None:
            self._painters.append(_CanvasJob(handle, spec, self))
        return handle

    def picture_placed(self) -> None:
        """A picture from elsewhere (dropped or pasted) is on the canvas: the jobs running now must
        not paint over it, and their results go to the gallery only."""
        self._painters.clear()
        self._on_canvas = None

    def set_gallery_folder(self, folder: Path) -> None:
        """Save new images in `folder` from now on; images already handed over go where they were headed."""
        self.writer.flush()
        self.gallery.folder = Path(folder)

    def finish_writes(self) -> None:
        """Let every finished image reach the disk (the window calls this as it closes)."""
        self.writer.close()

    # -- the spec ---------------------------------------------------------------------------------

    @staticmethod
    def _with_canvas(spec: ImageJob, mode: str, picture: Optional[np.ndarray], mask: Optional[np.ndarray]) -> ImageJob:
        """The spec with the canvas (and mask) as its starting pictures when the mode asks for them.

        img2img and inpainting work at the canvas's size (rounded down to a multiple of 8), so the
        result, its previews and the mask all line up with the picture they started from."""
        if mode == "txt2img":
            return spec
        if picture is None or picture.size == 0:
            raise StudioError(
                f"{'Inpainting' if mode == 'inpaint' else 'Image to image'} starts from the canvas: "
                "generate a picture first, or drop or paste one."
            )
        if mode == "inpaint" and (mask is None or not mask.any()):
            raise StudioError("Paint the area to repaint on the canvas first (the Brush tool above it).")
        if mode != "inpaint":
            mask = None
        height, width = picture.shape[:2]
        size = (max(8, width - width % 8), max(8, height - height % 8))
        if size != (width, height):
            picture = _resized(picture, size, smooth=True)
            mask = _resized(mask, size, smooth=False) if mask is not None else None
        spec = dataclasses.replace(spec, init_image=str(store_input(picture)), width=size[0], height=size[1])
        if mask is None:
            return spec
        grey = mask if mask.ndim == 3 else np.repeat(mask[..., None], 3, axis=2)  # grey as RGB: channels equal
        return dataclasses.replace(spec, mask=str(store_input(np.ascontiguousarray(grey, np.uint8))))

    # -- following a job --------------------------------------------------------------------------

    def _paint(self, job: _CanvasJob) -> bool:
        """Put `job` on the canvas if nothing newer is there; older jobs stop painting."""
        if job not in self._painters:
            return False
        del self._painters[: self._painters.index(job)]
        self._on_canvas = job
        return True

    def _on_preview(self, job: _CanvasJob, picture: np.ndarray) -> None:
        if job not in self._painters:
            return  # something newer is on the canvas
        if not job.painted:  # its first preview: keep what it paints over
            job.before = self._read_canvas()
            job.painted = True
        self._paint(job)
        handle, spec = job.handle, job.spec
        # Latent-resolution previews are enlarged by the canvas to the job's size: the canvas keeps
        # its size, so an inpainting mask stays where it was painted.
        self.preview_shown.emit(picture, spec.width, spec.height)
        step = f"step {handle.step} of {handle.total}" if handle.total else "starting"
        self.caption_changed.emit(f"{step} · seed {spec.seed}")

    def _on_finished(self, job: _CanvasJob, result: object) -> None:
        job.deleteLater()  # its handle has nothing more to say; the write below keeps what it needs
        if not isinstance(result, ImageResult) or not result.images:
            self._stop_painting(job)
            return
        # On disk before on screen: a picture the person has seen is never lost. Each image is
        # saved with the spec that makes it again alone (its own seed).
        spec = job.spec
        specs = [spec.one_image(i) for i in range(len(result.images))]
        self.writer.write(result.images, specs, result.info, on_saved=lambda paths: self._on_saved(job, result, paths))

    def _on_saved(self, job: _CanvasJob, result: ImageResult, paths: list[Path]) -> None:
        self.images_saved.emit(list(zip(paths, result.images)))
        shown = self._paint(job)
        self._stop_painting(job)
        job.before = None  # it finished: nothing to put back
        if not shown:
            return  # something newer is on the canvas (a later job, or a picture dropped since)
        self.result_shown.emit(result.images[0])
        self.caption_changed.emit(_result_caption(job.spec, result, paths))

    def _on_stopped(self, job: _CanvasJob) -> None:
        job.deleteLater()
        self._stop_painting(job)
        if self._on_canvas is job and job.painted:
            # Put back what its previews painted over: a half-done preview must not become the
            # picture the next img2img or inpainting starts from.
            self._on_canvas = None
            self.picture_restored.emit(job.before)
            self.caption_changed.emit(f"{job.handle.state.value.capitalize()} · the canvas shows what it had before")

    def _stop_painting(self, job: _CanvasJob) -> None:
        if job in self._painters:
            self._painters.remove(job)


def _result_caption(spec: ImageJob, result: ImageResult, paths: list[Path]) -> str:
    seconds = result.info.seconds
    took = f" · {seconds:.1f} s" if seconds is not None else ""
    count = f" · {len(result.images)} images" if len(result.images) > 1 else ""
    sampler = result.info.scheduler or spec.scheduler
    settings = (
        f"{spec.width}×{spec.height} · {sampler + ' · ' if sampler else ''}{spec.steps} steps · "
        f"CFG {spec.guidance_scale:g} · seed {spec.seed}"
    )
    return settings + count + took + (f" · {paths[0].name}" if paths else " · not saved")


def _resized(picture: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    """`picture` at `size` (width, height): smoothly for a photo, nearest-pixel for a mask."""
    from PIL import Image  # only a canvas whose sides are not multiples of 8 needs it

    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(np.ascontiguousarray(picture, np.uint8)).resize(size, resample))
