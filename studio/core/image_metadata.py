"""The settings every image the studio saves carries, as PNG text chunks.

An A1111-style `parameters` chunk (core/infotext.py writes it), which other tools read, and a
`studio` chunk with the full job spec as JSON (`spec.to_dict()`, with what the backend reported
about the run under "info"), which "use these settings" and `studio info` restore exactly:
infotext.read_settings reads both back. core/png.py writes the chunks and knows nothing of jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from studio.core.events import RunInfo
from studio.core.infotext import a1111_parameters
from studio.core.jobs import ImageJob
from studio.core.png import write_png


def image_chunks(spec: ImageJob, info: Union[RunInfo, Mapping, None] = None) -> dict[str, str]:
    """The text chunks of an image `spec` made: {"parameters": infotext, "studio": spec JSON}.

    `info` is what the backend reports about the run (model_hash, model_name, scheduler,
    lora_hashes, ...): it fills the infotext and is kept under "info" in the `studio` chunk,
    as `RunInfo.to_dict()`. A mapping (an "info" read back from an image) is written as it is."""
    data = spec.to_dict()
    data["info"] = _json_safe(info.to_dict() if isinstance(info, RunInfo) else info or {})
    return {"parameters": a1111_parameters(spec, info), "studio": json.dumps(data, sort_keys=True)}


def save_image(path: Path, rgb: np.ndarray, spec: ImageJob, info: Union[RunInfo, Mapping, None] = None) -> None:
    """Write a generated image atomically, with its parameters and full spec embedded."""
    write_png(path, rgb, image_chunks(spec, info))


def _json_safe(info: Mapping) -> dict[str, Any]:
    """The entries of `info` that JSON can hold exactly (no NaN, no objects), so the chunk always parses."""
    safe = {}
    for key, value in info.items():
        if not isinstance(key, str):
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):  # ValueError: NaN/inf or a circular reference
            continue
        safe[key] = value
    return safe
