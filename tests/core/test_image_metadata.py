"""The chunks every saved image carries: infotext for other tools, the full spec for the studio."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np

from studio.core import png as png_module
from studio.core.image_metadata import image_chunks, save_image
from studio.core.infotext import read_settings
from studio.core.jobs import ImageJob
from studio.core.png import read_png_text


def test_save_image_writes_parameters_and_studio_chunks_before_the_pixels(tmp_path):
    from PIL import Image

    spec = ImageJob(model="emoji-sd", prompt="a cat", seed=3, width=64, height=64)
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    info = {"model_hash": "ab" * 32, "steps_run": 20, "bad": float("nan"), "obj": object(), 7: "int key"}
    save_image(tmp_path / "a.png", rgb, spec, info)
    data = (tmp_path / "a.png").read_bytes()
    chunks = read_png_text(data)
    assert chunks["parameters"].startswith("a cat\nSteps: 20, CFG scale: 7, Seed: 3, Size: 64x64, Model hash: abababab")
    studio = json.loads(chunks["studio"])
    assert studio.pop("info") == {"model_hash": "ab" * 32, "steps_run": 20}  # only JSON-safe entries
    assert studio == spec.to_dict()
    assert data.index(b"parameters") < data.index(b"IDAT") and data.index(b"studio") < data.index(b"IDAT")
    with Image.open(tmp_path / "a.png") as image:  # a real decoder agrees on pixels and text
        assert np.array_equal(np.asarray(image), rgb)
        assert image.text["parameters"] == chunks["parameters"]
    save_image(tmp_path / "b.png", rgb, spec)  # info stays optional
    assert json.loads(read_png_text((tmp_path / "b.png").read_bytes())["studio"])["info"] == {}


def test_the_chunks_read_back_as_the_spec_that_made_them(tmp_path):
    spec = ImageJob(
        model="m",
        prompt="a fox",
        negative_prompt="blur",
        seed=9,
        steps=12,
        scheduler="DDIM",
        loras=(("a.safetensors", 0.5),),
    )
    chunks = image_chunks(spec, {"model_hash": "cd" * 32})
    assert set(chunks) == {"parameters", "studio"}
    save_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8), spec, {"model_hash": "cd" * 32})
    assert read_settings(tmp_path / "a.png").spec == spec


def _imports(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }


def test_the_png_codec_knows_nothing_of_jobs_or_infotext():
    # infotext reads PNGs through png.py; png.py importing infotext back made a cycle.
    assert not {"studio.core.jobs", "studio.core.infotext", "studio.core.image_metadata"} & _imports(png_module)
