"""The gallery folder: every finished image is written here, with its parameters, before it is shown,
so closing the window or a crash never loses a picture the person has seen."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QObject, Signal

from studio.core.errors import StudioError
from studio.core.events import RunInfo
from studio.core.image_metadata import save_image
from studio.core.jobs import ImageJob
from studio.models import paths

log = logging.getLogger(__name__)

SavedCallback = Callable[[list[Path]], None]  # the paths one write put on disk


class Gallery:
    """The folder finished images are saved in (the data folder's "gallery" unless told)."""

    def __init__(self, folder: Optional[Path] = None):
        self.folder = folder or paths.data_dir() / "gallery"

    def save(self, rgb: np.ndarray, spec: ImageJob, info: Optional[RunInfo] = None) -> Path:
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
    the window must not stall for it. Each write reports to its own `on_saved`, on the writer's
    thread; whoever shows an image shows it only then."""

    saved = Signal(list)  # [Path] one write put on disk (fewer than its images when the disk said no)
    failed = Signal(str)  # one sentence: the disk said no
    _written = Signal(object, list, str)  # from the writer thread: on_saved, [Path] written, error ("" for none)

    def __init__(self, gallery: Gallery, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.gallery = gallery
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gallery-writer")
        self._closed = False
        # Queued from the writer thread, direct from a write made while closing: either way the
        # report reaches whoever asked on the thread this writer lives on.
        self._written.connect(self._report)

    def write(
        self, images: tuple, specs: list[ImageJob], info: RunInfo, on_saved: Optional[SavedCallback] = None
    ) -> None:
        """Save `images`, each with its own spec, then call `on_saved([Path] written)`: all of them,
        or those before the disk said no (`failed` says why)."""
        if self._closed:  # a result that arrives while the window closes is still saved, here and now
            self._write(images, specs, info, on_saved)
        else:
            self._pool.submit(self._write, images, specs, info, on_saved)

    def _write(self, images: tuple, specs: list[ImageJob], info: RunInfo, on_saved: Optional[SavedCallback]) -> None:
        written: list[Path] = []
        error = ""
        try:
            for image, spec in zip(images, specs):
                written.append(self.gallery.save(image, spec, info))
        except StudioError as exc:
            error = exc.message
        except Exception as exc:  # noqa: BLE001 - a writer thread that dies would lose every later image
            log.exception("gallery write failed")
            error = f"Could not save the image ({type(exc).__name__}: {exc})."
        self._written.emit(on_saved, written, error)

    def _report(self, on_saved: Optional[SavedCallback], written: list, error: str) -> None:
        if error:
            self.failed.emit(error)
        if on_saved is not None:
            on_saved(written)
        self.saved.emit(written)

    def flush(self) -> None:
        """Wait until every image handed over so far is on disk."""
        if not self._closed:
            self._pool.submit(lambda: None).result()

    def close(self) -> None:
        """Wait for the images handed over so far; later ones are written at once, by the caller."""
        self._closed = True
        self._pool.shutdown(wait=True)
