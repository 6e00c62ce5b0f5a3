"""The directions a latent model's sliders move along (GANSpace-style), and their names.

A slider's value is a coordinate in units of σ along one direction: moving slider k from c to c'
adds (c' − c)·σₖ·uₖ to the latent and leaves everything else where it was, so a latent that came
from elsewhere (a keyframe, an encoded picture, Randomise) keeps its own position along the other
directions (GANSpace's "reset projects the current latent onto the components").

Where the directions come from, in a studio-latent folder's studio.json:
  - nothing: the latent's own axes, σ = 1. The shipped models are trained that way: PCA is
    folded into their weights, so axis i is principal direction i in units of σ.
  - "directions": {"names": ["smile", "age", ...]}: the same axes, named (unnamed ones by index).
  - "directions": {"file": "directions.safetensors", "names": [...]}: stored directions, the
    tensors "components" (K, D), one direction per row, "sigma" (K) and optionally "mean" (D).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from studio.core.errors import ModelFileError

MAX_NAME_CHARS = 40
MIN_SIGMA = 1e-6  # a smaller σ would put ordinary latents millions of σ out


@dataclass(frozen=True, eq=False)
class Directions:
    components: np.ndarray  # (K, D): unit rows; (0, D) for the latent's own axes (no D×D matrix)
    sigma: np.ndarray  # (K,): the spread of the model's latents along each
    mean: np.ndarray  # (D,): the origin the coordinates are measured from
    names: tuple[str, ...]  # (K,)
    plain_axes: bool = False  # the latent's own axes, σ = 1, mean 0: coordinates are the numbers

    @classmethod
    def axes(cls, dim: int, names: Sequence[Any] = ()) -> "Directions":
        """The latent's own axes as directions, σ = 1 (models trained in principal coordinates).
        `names` as studio.json gives them: any that is not a non-empty string becomes "z{i}"."""
        return cls(np.zeros((0, dim)), np.ones(dim), np.zeros(dim), _names(names, dim), plain_axes=True)

    @property
    def count(self) -> int:
        return len(self.sigma)

    def coords(self, latent) -> np.ndarray:
        """Where a latent sits along each direction, in σ."""
        z = np.asarray(latent, np.float64)
        if self.plain_axes:
            return z.copy()
        return self.components @ (z - self.mean) / self.sigma

    def moved(self, latent, k: int, value: float) -> np.ndarray:
        """The latent with its coordinate along direction k set to `value` (σ)."""
        return self.with_coords(latent, {k: value})

    def with_coords(self, latent, targets: dict[int, float]) -> np.ndarray:
        """The latent with the coordinates in `targets` set exactly, by the smallest change.

        Along the latent's own axes that is setting the numbers. Stored directions need not be
        orthogonal (directions found by regression are not), so setting one coordinate may move
        another: the change solves for all the given coordinates together, Δz = Uₛᵀ(UₛUₛᵀ)⁻¹r with
        r = σₛ(target − now), which keeps each given one exact (a locked one, say)."""
        z = np.array(latent, np.float64)
        if not targets:
            return z
        if self.plain_axes:
            for k, value in targets.items():
                z[k] = value
            return z
        keys = sorted(targets)
        rows = self.components[keys]
        now = rows @ (z - self.mean) / self.sigma[keys]
        r = self.sigma[keys] * (np.array([targets[k] for k in keys]) - now)
        # lstsq: the minimum-norm solution, and no failure for two identical directions.
        step, *_ = np.linalg.lstsq(rows, r, rcond=None)
        return z + step

    def offset(self, latent, steps: dict[int, float]) -> np.ndarray:
        """The latent moved by `steps[k]` σ along each direction k (the latent map's cells)."""
        z = np.array(latent, np.float64)
        for k, step in steps.items():
            if self.plain_axes:
                z[k] += step
            else:
                z += step * self.sigma[k] * self.components[k]
        return z


def _names(given: Any, count: int) -> tuple[str, ...]:
    """The model's names for its first directions, and "z{i}" for the rest."""
    names = [str(n).strip()[:MAX_NAME_CHARS] if isinstance(n, str) and n.strip() else "" for n in list(given)[:count]]
    names += [""] * (count - len(names))
    return tuple(name or f"z{i}" for i, name in enumerate(names))


def directions_for(folder: Optional[Path], manifest: dict[str, Any], dim: int) -> Directions:
    """A latent model's directions from its studio.json; a broken entry is one sentence
    (ModelFileError) naming what is wrong."""
    entry = manifest.get("directions")
    if entry is None:
        return Directions.axes(dim)
    if not isinstance(entry, dict):
        raise ModelFileError('studio.json\'s "directions" must be an object, e.g. {"names": ["smile"]}.')
    names = entry.get("names", [])
    if not isinstance(names, list):
        raise ModelFileError('studio.json\'s "directions" names must be a list of strings.')
    if entry.get("file") is None:
        return Directions.axes(dim, names)
    if folder is None:
        raise ModelFileError("studio.json names a directions file, but the model has no folder to hold it.")
    return _load(Path(folder), entry["file"], names, dim)


def _load(folder: Path, name: Any, names: list, dim: int) -> Directions:
    from safetensors.numpy import load_file

    from studio.models.safe_files import check_safetensors, model_file

    path = model_file(folder, name, "directions")
    check_safetensors(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is a broken file
        raise ModelFileError(f"{path.name} cannot be read as directions ({exc}).") from None
    components = tensors.get("components")
    sigma = tensors.get("sigma")
    mean = tensors.get("mean", np.zeros(dim))
    if components is None or components.ndim != 2 or components.shape[1] != dim or not 1 <= components.shape[0] <= dim:
        raise ModelFileError(f'{path.name} needs a "components" tensor of shape (K, {dim}), one direction per row.')
    count = components.shape[0]
    if sigma is None or sigma.shape != (count,):
        raise ModelFileError(f'{path.name} needs a "sigma" tensor of {count} numbers, one per direction.')
    if mean.shape != (dim,):
        raise ModelFileError(f'{path.name}\'s "mean" must hold {dim} numbers.')
    components, sigma, mean = (np.asarray(t, np.float64) for t in (components, sigma, mean))
    if not all(np.all(np.isfinite(t)) for t in (components, sigma, mean)) or np.any(sigma < MIN_SIGMA):
        raise ModelFileError(
            f"{path.name} holds non-finite numbers or a σ that is not positive (at least {MIN_SIGMA:g})."
        )
    lengths = np.linalg.norm(components, axis=1)
    if np.any(lengths == 0):
        raise ModelFileError(f"{path.name} has a direction of length zero.")
    return Directions(components / lengths[:, None], sigma, mean, _names(names, count))
