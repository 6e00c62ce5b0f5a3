"""Model hashes as AUTOMATIC1111 writes them, so Civitai and A1111 recognise our images' models.

- Model hash: SHA-256 of the whole checkpoint file (A1111 "AutoV2"; the infotext shows 10 hex).
  A diffusers folder has no single file; its UNet weights stand for it.
- LoRA hash: SHA-256 of the bytes after the safetensors header ("addnet" hash; 12 hex shown), so
  editing the metadata does not change it.
Hashing a 2-7 GB checkpoint takes seconds, so results are kept in a small JSON file in the cache
folder, keyed by path, size and modification time."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
import threading
from pathlib import Path
from typing import Any, Optional

from studio.core.atomic import write_atomic
from studio.models import paths

log = logging.getLogger(__name__)
_lock = threading.Lock()
CHUNK = 1 << 20


def _sha256(path: Path, start: int = 0) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(start)
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _read_store(store: Path) -> dict:
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return known if isinstance(known, dict) else {}


def _cached(path: Path, kind: str, compute) -> str:
    stat = path.stat()
    key = f"{kind}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    store = paths.cache_dir() / "hashes.json"
    with _lock:
        known = _read_store(store).get(key)
    if isinstance(known, str):
        return known
    value = compute()
    with _lock:
        merged = _read_store(store)  # read again: another thread or studio may have added entries
        merged[key] = value
        try:
            write_atomic(store, json.dumps(merged, indent=0).encode())
        except OSError as exc:  # a read-only cache only costs the next run a re-hash
            log.warning("could not save model hashes in %s: %s", store, exc)
    return value


def weights_file(path: Path) -> Optional[Path]:
    """The file whose hash names a model: the file itself, or a diffusers folder's UNet weights."""
    if path.is_file():
        return path
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        candidate = path / "unet" / name
        if candidate.is_file():
            return candidate
    return None


def exported_model_hash(folder: Path, recorded: Any = None) -> Optional[str]:
    """The model hash an ONNX export carries: `recorded`, its source's, which the export wrote into
    its studio.json (so its images name the model A1111 and Civitai know), else the hash of its
    own UNet graph."""
    if isinstance(recorded, str) and re.fullmatch(r"[0-9a-f]{64}", recorded):
        return recorded
    graph = Path(folder) / "unet" / "model.onnx"
    return _cached(graph, "sha256", lambda: _sha256(graph)) if graph.is_file() else None


def model_hash(path: Path) -> Optional[str]:
    """Full SHA-256 hex of a model's weights (A1111 shows the first 10), None if there is no file."""
    target = weights_file(path)
    if target is None:
        return None
    return _cached(target, "sha256", lambda: _sha256(target))


def lora_hash(path: Path) -> str:
    """A1111's addnet hash of a LoRA .safetensors: SHA-256 after the header, first 12 hex."""

    def compute() -> str:
        with path.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
        return _sha256(path, 8 + header_len)

    return _cached(path, "addnet", compute)[:12]
