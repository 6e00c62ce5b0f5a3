"""The gallery folder: every finished image is written here, with its parameters, before it is shown,
so closing the window or a crash never loses a picture the person has seen."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

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
