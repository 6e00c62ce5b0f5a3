"""Latent models of our own ("studio-latent" manifests) on torch: decode latent vectors to images.

The network is built from studio.json (studio.models.nets) and its weights are read from a
.safetensors file inside the model folder. Tiny networks like these compute in float32, which also
keeps them identical to their ONNX exports. torch is imported inside functions, not at module top."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import ModelFileError, SpecError
from studio.engine.backends.base import param_bytes, to_uint8_image, torch_device
from studio.models.formats import MANIFEST

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit


def resolve_inside(folder: Path, name: Any, key: str) -> Path:
    """`folder / name` for a file named in studio.json, refused if it would leave the folder."""
    if not isinstance(name, str) or not name.strip():
        raise ModelFileError(f"{folder / MANIFEST} has no {key!r} file name; add one (e.g. \"decoder.safetensors\").")
    root = folder.resolve()
    path = (root / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(root):
        raise ModelFileError(f"{folder / MANIFEST} names {key} {name!r} outside the model folder, which is refused.")
    if not path.is_file():
        raise ModelFileError(f"{name} is missing from {folder}; copy it into the model folder.")
    return path


def check_safetensors_complete(path: Path) -> None:
    """One sentence if a .safetensors file is cut short or is not safetensors at all (stdlib only)."""
    size = path.stat().st_size
    incomplete = ModelFileError(f"{path.name} is incomplete: check its size and copy it again.")
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise incomplete
            (header_len,) = struct.unpack("<Q", head)
            if header_len > MAX_HEADER_BYTES:
                raise ModelFileError(f"{path.name} is not a valid safetensors file (its header size is impossible).")
            if 8 + header_len > size:
                raise incomplete
            header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path.name} is not a valid safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path.name} is not a valid safetensors file (its header is not a JSON object).")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ModelFileError(f"{path.name} is not a valid safetensors file (tensor {name!r} has no offsets).")
        end = max(end, offsets[1])
    if 8 + header_len + end > size:
        raise incomplete


def load_weights(path: Path) -> dict[str, Any]:
    """A safetensors file as a dict of float32 CPU tensors, with one sentence when it is broken."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors_complete(path)
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as exc:
        detail = str(exc).removeprefix("Error while deserializing header: ").strip()
        raise ModelFileError(f"{path.name} is not a valid safetensors file ({detail}).") from None


def _list(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def apply_weights(net: Any, weights: dict[str, Any], file_name: str) -> None:
    """Load `weights` into `net` strictly, or one sentence saying how they do not match."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(
        f"{k} {'x'.join(map(str, weights[k].shape))} vs {'x'.join(map(str, expected[k].shape))}"
        for k in set(expected) & set(weights)
        if tuple(weights[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_list(wrong)}")
    if problems:
        raise ModelFileError(f"{file_name} does not match the architecture in {MANIFEST} ({'; '.join(problems)}).")
    import torch

    net.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()}, strict=True)


def build_from_manifest(model_path: Path, manifest: dict[str, Any]) -> Any:
    """The decoder network described by a studio-latent manifest, weights loaded, in eval mode."""
    from studio.models import nets

    try:
        net = nets.build_decoder(nets.part_config(manifest, "decoder"))
    except ValueError as exc:
        raise ModelFileError(f"{model_path / MANIFEST} cannot describe a decoder: {exc}.") from None
    weights_path = resolve_inside(model_path, manifest.get("weights"), "weights")
    apply_weights(net, load_weights(weights_path), weights_path.name)
    return net.eval()


def check_latents(latents: np.ndarray, latent_dim: int) -> np.ndarray:
    """latents as a contiguous float32 (N, latent_dim) array, or SpecError naming `latent`."""
    array = np.ascontiguousarray(latents, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != latent_dim or array.shape[0] == 0:
        raise SpecError("latent", f"has shape {tuple(array.shape)}; this model takes (N, {latent_dim}).")
    if not np.isfinite(array).all():
        raise SpecError("latent", "must hold only finite numbers.")
    return array


class TorchLatentBackend:
    """A studio-latent decoder on torch (float32)."""

    runtime = "torch"

    def __init__(self, net: Any, device: str):
        self.net = net
        self.device = device
        self.latent_dim = int(net.latent_dim)
        self.image_size = int(net.image_size)
        self.memory_bytes = param_bytes(net)
        self.info = {"runtime": "torch", "device": device, "dtype": "float32"}

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        device, _ = torch_device(requested)
        return device, "float32"  # tiny decoders gain nothing from half precision

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "TorchLatentBackend":
        path = Path(model.path)
        if not path.is_dir():
            raise ModelFileError(f"{path} should be a folder with {MANIFEST}, weights and (optionally) ONNX files.")
        net = build_from_manifest(path, model.manifest)
        return cls(net.to(device), device)

    def decode_float(self, latents: np.ndarray) -> np.ndarray:
        """float32 (N, D) -> float32 (N, H, W, 3) in [0, 1]."""
        import torch

        array = check_latents(latents, self.latent_dim)
        with torch.inference_mode():
            images = self.net(torch.from_numpy(array).to(self.device))
            return images.permute(0, 2, 3, 1).float().cpu().numpy()

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """float32 (N, D) -> uint8 (N, H, W, 3)."""
        return to_uint8_image(self.decode_float(latents))

    def close(self) -> None:
        self.net = None
