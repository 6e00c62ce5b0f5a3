"""Paths and mixes between latents: slerp, lerp and the norm-preserving N-way blend.

Why there are two interpolations. A generator's input noise z ~ N(0, I_d) lives on a thin shell
of radius about √d; the model was trained only there. A straight line between two such points
(lerp) cuts through the inside of the shell: at t = ½ its norm is about √d/√2, and a diffusion
sampler or a GAN turns that under-scaled noise into washed-out, blurry frames. Walking along the
great circle (slerp) keeps the path on the shell. Lerp is still the right tool in learned,
non-Gaussian spaces (StyleGAN's W, text embeddings, LoRA scales) and for pixel crossfades, so
both are here, and the caller picks by the space it works in.

Every function takes a whole latent as one vector: an array of any shape is flattened for the
angle (one θ for the whole tensor) and the result has the input's shape. Maths runs in float64;
results come back in the inputs' floating dtype (float32 in, float32 out).

Pure numpy: no torch, no Qt (docs/DESIGN.md §1). Bad arguments raise `SpecError`, a ValueError whose
message is one sentence naming the argument, which the CLI and the UI show as it is.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from studio.core.errors import SpecError

# |cos θ| above this counts as (anti)parallel: the slerp weights become 0/0 there, and lerp is
# the same path to within rounding (the usual 0.9995 of the references, i.e. θ < ~1.8°).
PARALLEL_COS = 0.9995


def lerp(a, b, t):
    """The straight line (1 − t)·a + t·b between two latents of one shape.

    `t` is a number or a 1-D sequence of numbers in [0, 1]; with a sequence the results are
    stacked along a new first axis. t = 0 gives exactly `a`, t = 1 exactly `b`.

    Right for learned spaces (StyleGAN W, text embeddings, LoRA scales); for Gaussian noise use
    `slerp`, because the line's midpoint has only about 1/√2 of the endpoints' norm."""
    pair = _Pair(a, b)
    ts, scalar = _ts(t)
    return pair.finish(_lerp_rows(pair.a, pair.b, ts), ts, scalar)


def slerp(a, b, t, *, parallel_cos: float = PARALLEL_COS):
    """Great-circle interpolation between two latents of one shape, with the norm interpolated
    linearly from |a| to |b|.

    The direction moves along the great circle from â to b̂ (Shoemake's slerp on unit vectors) and
    the length goes (1 − t)|a| + t|b|. Plain slerp on raw vectors keeps the norm only when
    |a| = |b|; real Gaussian latents differ in norm by a little (and DDIM-inverted ones by more),
    so lerping the norm keeps every frame between the two endpoints' shells instead of bulging
    outside them. For two unit vectors this is exactly the textbook slerp.

    Where a and b are (anti)parallel within `parallel_cos` (|cos θ| > 0.9995 by default), or one
    of them is zero, the direction is undefined or the formula is 0/0, and it falls back to
    `lerp`, which is the same path there (for exactly opposite vectors there is no single great
    circle, and the line through the origin is the honest answer).

    `t` is a number or a 1-D sequence of numbers in [0, 1]; with a sequence the results are
    stacked along a new first axis. t = 0 gives exactly `a`, t = 1 exactly `b`, bit for bit."""
    pair = _Pair(a, b)
    a, b = pair.a, pair.b
    ts, scalar = _ts(t)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        out = _lerp_rows(a, b, ts)
    else:
        ua, ub = a / na, b / nb
        cos = float(np.clip(np.dot(ua, ub), -1.0, 1.0))
        if abs(cos) > parallel_cos:
            out = _lerp_rows(a, b, ts)
        else:
            theta = np.arccos(cos)
            sin = np.sin(theta)
            wa = np.sin((1.0 - ts) * theta) / sin
            wb = np.sin(ts * theta) / sin
            norm = (1.0 - ts) * na + ts * nb
            out = (norm * wa)[:, None] * ua[None, :] + (norm * wb)[:, None] * ub[None, :]
    return pair.finish(out, ts, scalar)


def blend(latents: Sequence, weights: Sequence[float]):
    """The norm-preserving weighted mix Σ wᵢ zᵢ / √(Σ wᵢ²) of latents of one shape.

    For independent zᵢ ~ N(0, I) the plain weighted sum Σ wᵢ zᵢ is N(0, Σ wᵢ² · I): with
    weights summing to 1 it is *under*-scaled (four equal parents give half the standard
    deviation), so the child falls inside the shell the model knows. Dividing by √(Σ wᵢ²)
    brings the variance back to 1 (COG, arXiv 2408.08558): the crossbreed of Gaussian seeds is
    again a typical Gaussian seed. The weights are first normalised to sum to 1, so only their
    ratios matter; a single latent, or one weight with all others zero, gives that latent back.

    Use it for noise-space latents (seed grids, crossbreeding, centroids); in a learned space
    such as W, an ordinary weighted average is right instead.

    Refuses, with one sentence naming the argument: no latents, latents of different shapes or
    with non-finite numbers, a weight count that differs from the latent count, and weights that
    are negative, non-finite or all zero."""
    latents = list(latents)
    if not latents:
        raise SpecError("latents", "must hold at least one latent.")
    arrays = [_array("latents", z) for z in latents]
    shape = arrays[0].shape
    for z in arrays[1:]:
        if z.shape != shape:
            raise SpecError("latents", f"must all have one shape; got {shape} and {z.shape}.")
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError("weights", "must be a list of numbers.") from None
    if w.ndim != 1 or len(w) != len(arrays):
        raise SpecError("weights", f"must hold one number per latent ({len(arrays)}), not {w.size}.")
    if not np.all(np.isfinite(w)):
        raise SpecError("weights", "must be finite numbers.")
    if np.any(w < 0):
        raise SpecError("weights", "must not be negative.")
    total = float(w.sum())
    if total <= 0.0:
        raise SpecError("weights", "must not all be zero.")
    w = w / total
    stacked = np.stack([z.astype(np.float64, copy=False).ravel() for z in arrays])
    mixed = (w @ stacked) / np.sqrt(float(np.sum(w * w)))
    dtype = np.result_type(*arrays)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.float64
    return mixed.reshape(shape).astype(dtype, copy=False)


# --- helpers ---------------------------------------------------------------------------------


def _array(name: str, x) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError):
        raise SpecError(name, "must be an array of numbers.") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise SpecError(name, "must be an array of numbers.")
    if arr.size == 0:
        raise SpecError(name, "must not be empty.")
    if not np.all(np.isfinite(arr)):
        raise SpecError(name, "must hold only finite numbers (no NaN or infinity).")
    return arr


class _Pair:
    """Two latents checked to share a shape: flat float64 copies for the maths, the originals to
    return bit for bit at t = 0 and 1, and the dtype and shape to return."""

    def __init__(self, a, b):
        self.a_in, self.b_in = _array("a", a), _array("b", b)
        if self.a_in.shape != self.b_in.shape:
            raise SpecError("b", f"has shape {self.b_in.shape}, but `a` has shape {self.a_in.shape}.")
        self.shape = self.a_in.shape
        dtype = np.result_type(self.a_in, self.b_in)
        self.dtype = dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)
        self.a = self.a_in.astype(np.float64).ravel()
        self.b = self.b_in.astype(np.float64).ravel()

    def finish(self, rows: np.ndarray, ts: np.ndarray, scalar: bool) -> np.ndarray:
        out = rows.astype(self.dtype, copy=False).reshape((len(ts),) + self.shape)
        # Exact endpoints: a keyframe shown at t = 0 or 1 must be the keyframe itself, not a
        # rounded copy, so a timeline passes through its keys bit for bit.
        out[ts == 0.0] = self.a_in
        out[ts == 1.0] = self.b_in
        return out[0] if scalar else out


def _ts(t):
    """`t` as a 1-D float64 array in [0, 1], and whether it was a single number."""
    try:
        ts = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError("t", "must be a number or a list of numbers between 0 and 1.") from None
    scalar = ts.ndim == 0
    if ts.ndim > 1:
        raise SpecError("t", "must be a number or a flat list of numbers, not a table.")
    ts = np.atleast_1d(ts)
    if not np.all(np.isfinite(ts)) or np.any(ts < 0.0) or np.any(ts > 1.0):
        raise SpecError("t", "must be between 0 and 1.")
    return ts, scalar


def _lerp_rows(a: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
    return (1.0 - ts)[:, None] * a[None, :] + ts[:, None] * b[None, :]
