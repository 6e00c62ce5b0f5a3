"""Writing a model folder the way the studio ships it: fp16 safetensors, mode 0644, a manifest.

diffusers and transformers `save_pretrained` write safetensors with mode 0600, which would make a
system-wide install unreadable for other users; `finish_folder` fixes the modes of everything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from studio.core.atomic import write_atomic


def save_fp16(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Float tensors as float16 (others unchanged), contiguous, written atomically."""
    from safetensors.torch import save as save_bytes

    converted = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in tensors.items()
    }
    write_atomic(path, save_bytes(converted))


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def finish_folder(folder: Path) -> int:
    """Make every file 0644 and every folder 0755; return the folder's total size in bytes."""
    total = 0
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            path = Path(root) / name
            os.chmod(path, 0o644)
            total += path.stat().st_size
    return total
