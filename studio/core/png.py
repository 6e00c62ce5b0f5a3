"""PNG files with text chunks, in the standard library alone (core stays free of PIL).

Images carry an A1111-style `parameters` chunk, which other tools read, and a `studio` chunk with
the full job spec as JSON, which "use these settings" restores exactly."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from studio.core.atomic import write_atomic
from studio.core.jobs import ImageJob

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _text_chunk(key: str, value: str) -> bytes:
    try:  # tEXt when the value is Latin-1, as A1111 writes it; iTXt (UTF-8) otherwise
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def encode_png(rgb: np.ndarray, text: Mapping[str, str] = {}) -> bytes:
    """uint8 H x W x 3 -> PNG bytes, with the given text chunks before the pixels."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)  # filter 0 per row
    out = [PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))]
    out += [_text_chunk(k, v) for k, v in text.items()]
    out += [_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)), _chunk(b"IEND", b"")]
    return b"".join(out)


def a1111_parameters(spec: ImageJob) -> str:
    """The generation parameters in AUTOMATIC1111's infotext layout."""
    lines = [spec.prompt]
    if spec.negative_prompt:
        lines.append(f"Negative prompt: {spec.negative_prompt}")
    fields = [
        ("Steps", spec.steps),
        ("CFG scale", f"{spec.guidance_scale:g}"),
        ("Seed", spec.seed),
        ("Size", f"{spec.width}x{spec.height}"),
        ("Model", Path(spec.model).name),
    ]
    lines.append(", ".join(f"{k}: {v}" for k, v in fields))
    return "\n".join(lines)


def save_image(path: Path, rgb: np.ndarray, spec: ImageJob) -> None:
    """Write a generated image atomically, with its parameters and full spec embedded."""
    write_atomic(path, encode_png(rgb, {"parameters": a1111_parameters(spec), "studio": spec.to_json()}))
