"""Pixels between numpy and Qt: the engine and the sessions hand out H x W x 3 uint8 arrays, widgets
paint QImages."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def to_qimage(array: np.ndarray) -> QImage:
    """uint8 H x W x 3 (or H x W grey) array -> a QImage that owns its pixels (safe across threads)."""
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 image, got shape {array.shape}")
    array = np.ascontiguousarray(array[..., :3], dtype=np.uint8)
    h, w = array.shape[:2]
    return QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def from_qimage(image: QImage) -> np.ndarray:
    """A QImage as an H x W x 3 uint8 array (rows copied past Qt's 4-byte line padding)."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w = image.height(), image.width()
    data = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
    return data.reshape(h, image.bytesPerLine())[:, : w * 3].reshape(h, w, 3).copy()
