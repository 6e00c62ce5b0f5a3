"""Pictures that jobs start from (the canvas for img2img, the painted mask for inpainting), kept as
PNG files named by their content: a job spec names exactly the pixels it used, the gallery's copy
of that spec still finds them later ("use these settings"), and painting the same canvas twice
stores it once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np

from studio.core.atomic import write_atomic
from studio.core.errors import StudioError
from studio.core.png import encode_png
from studio.models import paths


def store_input(rgb: np.ndarray, folder: Optional[Path] = None) -> Path:
    """Save an H x W x 3 uint8 picture (a mask is grey, all channels equal) and return its path."""
    data = encode_png(rgb)
    folder = folder or paths.inputs_dir()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:24]}.png"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except OSError as exc:
        raise StudioError(f"Could not keep the canvas picture in {folder} ({exc.strerror or exc}).") from None
    return path
