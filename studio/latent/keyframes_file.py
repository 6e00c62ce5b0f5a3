"""Keyframes on disk: the explorer's Save/Open, and `studio morph --latents FILE.json`.

    {"format": "studio-keyframes", "version": 1, "model": "emoji-vae",
     "keyframes": [{"name": "Key 1", "latent": [0.1, ...]}, ...]}

A plain JSON list of lists (one latent per row) is read as well, with names "Key 1", "Key 2", ...
Written atomically; a file that is not one of these, or holds too much, is one sentence."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.core.atomic import write_text_atomic
from studio.core.errors import StudioError

FORMAT = "studio-keyframes"
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_KEYFRAMES = 256  # as MorphJob
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class KeyframeSet:
    model: str  # the model whose latent space the keyframes are in ("" when not recorded)
    names: tuple[str, ...]
    latents: np.ndarray  # (K, D) float64


def write_keyframes(path: Path, model: str, names, latents) -> None:
    rows = [[float(v) for v in latent] for latent in latents]
    data = {
        "format": FORMAT,
        "version": 1,
        "model": model,
        "keyframes": [{"name": name, "latent": row} for name, row in zip(names, rows)],
    }
    try:
        write_text_atomic(Path(path), json.dumps(data) + "\n")
    except OSError as exc:
        raise StudioError(f"Could not save the keyframes to {path} ({exc.strerror or exc}).") from None


def read_keyframes(path: Path) -> KeyframeSet:
    path = Path(path)
    what = f"{path.name} is not a keyframes file"
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise StudioError(f"{path.name} is over {MAX_FILE_BYTES // 2**20} MB, too large for a keyframes file.")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StudioError(f"Could not open {path} ({exc.strerror or exc}).") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise StudioError(f"{what} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}).") from None
    model = ""
    if isinstance(data, dict):
        if data.get("format") != FORMAT or not isinstance(data.get("keyframes"), list):
            raise StudioError(f'{what}: it needs "format": "{FORMAT}" and a "keyframes" list.')
        given_model = data.get("model")
        model = given_model if isinstance(given_model, str) else ""
        entries = data["keyframes"]
        if not all(isinstance(e, dict) for e in entries):
            raise StudioError(f'{what}: each keyframe must be an object with "name" and "latent".')
        names = [e.get("name") if isinstance(e.get("name"), str) else "" for e in entries]
        rows = [e.get("latent") for e in entries]
    elif isinstance(data, list):
        names, rows = [""] * len(data), data
    else:
        raise StudioError(f"{what}: expected a JSON object or a list of latents.")
    if not 1 <= len(rows) <= MAX_KEYFRAMES:
        raise StudioError(f"{what}: it must hold 1 to {MAX_KEYFRAMES} keyframes, not {len(rows)}.")
    if not all(isinstance(r, list) and r and all(_real(v) for v in r) for r in rows):
        raise StudioError(f"{what}: every latent must be a non-empty list of finite numbers.")
    if len({len(r) for r in rows}) != 1:
        raise StudioError(f"{what}: its latents have different lengths.")
    names = [(n.strip()[:MAX_NAME_CHARS] or f"Key {i + 1}") for i, n in enumerate(names)]
    return KeyframeSet(model, tuple(names), np.asarray(rows, np.float64))


def _real(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
