"""Helpers every backend shares: device choice and dtypes on torch, the uint8 image conversion,
the latent input check and a torch module's size for the model cache. torch is imported inside
the functions that need it."""

from __future__ import annotations

from typing import Any

import numpy as np

from studio.core.errors import SpecError
from studio.core.kinds import Device


def no_cuda() -> SpecError:
    """The error for asking for CUDA on a machine without a usable GPU, whatever the runtime."""
    return SpecError("device", "is cuda but no CUDA GPU is available; choose cpu or auto.")


def torch_device(requested: str) -> tuple[Device, str]:
    """(device, dtype) for a torch backend: CUDA in half precision when asked for or available.

    SpecError (bad input, naming `device`) when cuda is asked for on a machine without a GPU."""
    import torch

    if requested == Device.CUDA or (requested == Device.AUTO and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise no_cuda()
        return Device.CUDA, "float16"
    return Device.CPU, "float32"


def torch_dtype(dtype: str) -> Any:
    """The torch dtype for a dtype name ("float16", "bfloat16", "float32")."""
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


def to_uint8_image(array: np.ndarray) -> np.ndarray:
    """float image(s) in [0, 1], channels last -> uint8, contiguous."""
    return np.ascontiguousarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


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


def param_bytes(module: Any) -> int:
    """Memory held by a torch module's parameters and buffers, for the cache budget."""
    total = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        total += tensor.numel() * tensor.element_size()
    return total
