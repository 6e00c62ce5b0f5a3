"""Fixtures the backend tests share."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def pictures(tmp_path):
    """Two different 64 px init images and a mask over the left half."""
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a", "b"):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(paths[name])
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    paths["mask"] = tmp_path / "mask.png"
    Image.fromarray(mask).save(paths["mask"])
    return paths
