"""The gallery folder: every finished image is written here, with its parameters, before it is shown,
so closing the window or a crash never loses a picture the person has seen."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from PySide6.QtCore import QObject, Signal

from studio.core.errors import StudioError
from studio.core.jobs import ImageJob
from studio.core.png import save_image
from studio.models import paths

log = logging.getLogger(__name__)


class Gallery:
    """The folder finished images are saved in (the data folder's "gallery" unless told)."""

    def __init__(self, folder: Optional[Path] = None):
        self.folder = folder or paths.data_dir() / "gallery"

    def save(self, rgb: np.ndarray, spec: ImageJob, info: Optional[Mapping[str, Any]] = None) -> Path:
        """Write one image as PNG (A1111 `parameters` + full spec); StudioError if the disk says no.

        `spec` must be the spec of this one image (ImageJob.one_image), so its settings make it again."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self._free_name(f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.seed}")
            save_image(path, rgb, spec, info)
        except OSError as exc:
            log.error("could not save an image in %s", self.folder, exc_info=exc)
            raise StudioError(f"Could not save the image in {self.folder} ({exc.strerror or exc}).") from None
        return path

    def _free_name(self, stem: str) -> Path:
        path = self.folder / f"{stem}.png"
        n = 2
        while path.exists():
            path = self.folder / f"{stem}-{n}.png"
            n += 1
        return path


class GalleryWriter(QObject):
    """Writes finished images to the gallery off the GUI thread, one batch after another, and says
    when each batch is on disk: encoding a large PNG takes a noticeable fraction of a second, and
    the window must not stall for it. The workspace shows an image only after `saved`."""

    saved = Signal(int, list, object)  # job id, [Path] written, the images (tuple of arrays)
    failed = Signal(int, str)  # job id, one sentence

    def __init__(self, gallery: Gallery, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.gallery = gallery
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gallery-writer")
        self._closed = False

    def write(self, job_id: int, images: tuple, specs: list[ImageJob], info: Mapping[str, Any]) -> None:
        if self._closed:  # a result that arrives while the window closes is still saved, here and now
            self._write(job_id, images, specs, dict(info))
        else:
            self._pool.submit(self._write, job_id, images, specs, dict(info))

    def _write(self, job_id: int, images: tuple, specs: list[ImageJob], info: dict) -> None:
        written: list[Path] = []
        try:
            for image, spec in zip(images, specs):
                written.append(self.gallery.save(image, spec, info))
        except StudioError as exc:
            self.failed.emit(job_id, exc.message)
        except Exception as exc:  # noqa: BLE001 - a writer thread that dies would lose every later image
            log.exception("gallery write failed")
            self.failed.emit(job_id, f"Could not save the image ({type(exc).__name__}: {exc}).")
        self.saved.emit(job_id, written, images)

    def flush(self) -> None:
        """Wait until every image handed over so far is on disk."""
        if not self._closed:
            self._pool.submit(lambda: None).result()

    def close(self) -> None:
        """Wait for the images handed over so far; later ones are written at once, by the caller."""
        self._closed = True
        self._pool.shutdown(wait=True)
