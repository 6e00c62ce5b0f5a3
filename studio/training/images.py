"""Image helpers the emoji recipes share: the dataset as tensors, batches, grids, principal bases."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from studio.training.data.emoji_data import EmojiSet, load_emoji
from studio.training.loop import TrainOptions

TINY_IMAGES = 48  # tests: this many images


def load_images(options: TrainOptions, size: int = 64) -> EmojiSet:
    """The emoji set, or (tiny runs) a handful of it. Tests point STUDIO_TRAINING_CACHE at a
    folder holding small stand-ins for the npm packages (tests/fake_emoji.py), so nothing is fetched."""
    data = load_emoji(size)
    if options.tiny:
        keep = np.zeros(len(data), dtype=bool)
        keep[np.linspace(0, len(data) - 1, min(TINY_IMAGES, len(data))).astype(int)] = True
        data = data.subset(keep)
    return data


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1] on `device`."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).contiguous().to(device)


def batch(images: torch.Tensor, size: int, flip: bool = True, generator: Optional[torch.Generator] = None):
    """A random batch (indices, images), mirrored left-right at random when `flip`."""
    index = torch.randint(0, images.shape[0], (size,), generator=generator)
    x = images[index.to(images.device)]
    if flip:
        mirror = torch.rand(size, generator=generator) < 0.5
        x = torch.where(mirror.to(x.device)[:, None, None, None], x.flip(3), x)
    return index, x


def save_grid(path: Path, images: torch.Tensor, columns: int, pad: int = 2) -> None:
    """(N, 3, H, W) in [0, 1] -> one PNG, `columns` wide, on a light grey background."""
    from PIL import Image

    images = images.detach().float().clamp(0, 1).cpu()
    n, _, h, w = images.shape
    rows = (n + columns - 1) // columns
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 200, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        tile = (images[i].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


def principal_basis(latents: torch.Tensor) -> dict[str, torch.Tensor]:
    """PCA of (N, D) latents: mean (D), components (D, D) one direction per row, most variance
    first, and sigma (D), the standard deviation along each."""
    x = latents.double()
    mean = x.mean(0)
    # full_matrices: D directions even when there are fewer than D latents (tiny test runs); the
    # directions with no variance get a small floor σ, so whitening by them stays finite.
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=True)
    sigma = torch.zeros(x.shape[1], dtype=x.dtype)
    sigma[: s.numel()] = s / max(x.shape[0] - 1, 1) ** 0.5
    sigma = sigma.clamp_min(max(float(sigma[0]) * 1e-3, 1e-6))
    return {"mean": mean.float(), "components": vh.float(), "sigma": sigma.float()}


def fold_basis_into_input(linear: torch.nn.Linear, basis: dict[str, torch.Tensor]) -> None:
    """Make `linear` take principal coordinates u instead of raw latents z, where
    z = mean + Σ u_i σ_i components_i: W' = W Cᵀ diag(σ), b' = b + W mean."""
    with torch.no_grad():
        w = linear.weight.double()
        scaled = basis["components"].double().T * basis["sigma"].double()[None, :]
        linear.bias.copy_((linear.bias.double() + w @ basis["mean"].double()).float())
        linear.weight.copy_((w @ scaled).float())


def fold_basis_into_output(linear: torch.nn.Linear, basis: dict[str, torch.Tensor]) -> None:
    """Make `linear` (which gives raw latents z) give principal coordinates
    u = diag(1/σ) C (z - mean) instead."""
    with torch.no_grad():
        project = basis["components"].double() / basis["sigma"].double()[:, None]
        linear.weight.copy_((project @ linear.weight.double()).float())
        linear.bias.copy_((project @ (linear.bias.double() - basis["mean"].double())).float())
