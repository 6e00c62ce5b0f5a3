"""The pictures an img2img or inpainting job starts from: read from the files its spec names,
checked (they may come from anywhere), brought to the job's size, and the final composite that
keeps every pixel outside the mask exactly as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import SpecError

MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_INPUT_PIXELS = 8192 * 8192  # a larger picture is refused before it is decoded


def _open(field: str, path_text: str, mode: str, size: tuple[int, int]) -> Any:
    from PIL import Image, UnidentifiedImageError

    path = Path(path_text)
    try:
        if path.exists() and not path.is_file():  # a FIFO or a device would block the engine
            raise SpecError(field, f"names {path}, which is not a regular file.")
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise SpecError(field, f"names {path.name}, which is over {MAX_INPUT_BYTES >> 20} MB; use a smaller image.")
        with Image.open(path) as image:
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise SpecError(field, f"names {path.name}, which is {image.width}×{image.height}; too large to use.")
            image = image.convert("RGBA" if mode == "RGB" else mode)
            if mode == "RGB":  # transparent areas read as white paper, not as black
                paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(paper, image).convert("RGB")
    except SpecError:
        raise
    except FileNotFoundError:
        raise SpecError(field, f"names {path}, which does not exist.") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise SpecError(field, f"names {path.name}, which is not an image the studio can read ({exc}).") from None
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def load_picture(path: str, width: int, height: int, field: str = "image") -> Any:
    """Any picture a job names, as a PIL RGB image of the given size (transparency on white)."""
    return _open(field, path, "RGB", (width, height))


def load_init_image(path: str, width: int, height: int) -> Any:
    """The init image as a PIL RGB image of the job's size."""
    return _open("init_image", path, "RGB", (width, height))


def load_mask(path: str, width: int, height: int) -> Any:
    """The mask as a PIL greyscale image of the job's size: white is repainted, black is kept."""
    mask = _open("mask", path, "L", (width, height))
    if not np.asarray(mask).any():
        raise SpecError("mask", "is empty: paint the area to repaint first.")
    return mask


def keep_unmasked(generated: np.ndarray, original: Any, mask: Any) -> np.ndarray:
    """The generated pixels inside the mask, the original ones outside it, blended where the mask
    is grey: the VAE's round trip would otherwise soften and shift the whole picture."""
    m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    base = np.asarray(original, dtype=np.float32)
    out = generated.astype(np.float32) * m + base * (1.0 - m)
    return np.ascontiguousarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
