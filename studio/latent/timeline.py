"""Keyframe timelines for morphs, and perceptually even frame spacing.

A morph is a path through latent space that passes through keyframes the explorer picked. The
timeline is the ordered list of those keys; `Timeline.at(u)` is the path itself, a function of a
position u ∈ [0, 1] over the whole morph, and `Timeline.sample(n)` cuts it into n frames that
include every keyframe exactly (so an exported morph really shows the images the person chose).

Equal steps in u are not equal steps on screen: a generator can change a lot over one stretch of
the path and hardly at all over another. `even_spacing` measures that from rendered frames and
returns positions whose frames differ about equally (reference §2.8: DiffMorpher's arc-length
reparameterisation, with latentblending's greedy refinement to find where the change happens).
It works on callables, so it needs no model and is tested with synthetic "renders".

Pure numpy, no torch, no Qt (docs/DESIGN.md §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np

from studio.core.errors import SpecError
from studio.latent.interpolate import lerp, slerp

METHODS = ("slerp", "lerp")
Render = TypeVar("Render")  # whatever even_spacing's render makes and its distance compares


@dataclass(frozen=True, eq=False)
class Keyframe:
    """One key of a morph: a name the person sees and the latent it stands for.

    The latent is stored as a read-only float copy, so changing the array it was made from (or
    the one read back) never changes a timeline behind its back."""

    name: str
    latent: np.ndarray = field(repr=False)

    def __post_init__(self):
        object.__setattr__(self, "name", _name(self.name))
        try:
            latent = np.array(self.latent)  # a copy: the caller's array stays theirs
        except (TypeError, ValueError):
            raise SpecError("latent", "must be an array of numbers.") from None
        if np.issubdtype(latent.dtype, np.integer):
            latent = latent.astype(np.float64)
        if latent.dtype == object or not np.issubdtype(latent.dtype, np.floating):
            raise SpecError("latent", "must be an array of numbers.")
        if latent.ndim == 0 or latent.size == 0:
            raise SpecError("latent", "must be a non-empty array, not a single number.")
        if not np.all(np.isfinite(latent)):
            raise SpecError("latent", "must hold only finite numbers (no NaN or infinity).")
        latent.flags.writeable = False
        object.__setattr__(self, "latent", latent)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.latent.shape


class Timeline:
    """An ordered list of keyframes whose latents all share one shape.

    Keys are addressed by index or by name; names are unique (they label keys in the UI and in
    saved morphs, so two keys called "sunset" would be ambiguous). Every edit validates first and
    changes nothing when it refuses.

    Time: by default each segment (key to next key) gets the same share of the morph; `durations`
    (one positive number per segment, only ratios matter) gives some segments more."""

    def __init__(self, keyframes: Sequence[Keyframe] = ()):
        self._keys: list[Keyframe] = []
        for key in keyframes:
            self._insert(key, len(self._keys))

    # --- reading ---

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[Keyframe]:
        return iter(tuple(self._keys))

    def __getitem__(self, key: int | str) -> Keyframe:
        return self._keys[self.index(key)]

    @property
    def keyframes(self) -> tuple[Keyframe, ...]:
        return tuple(self._keys)

    @property
    def names(self) -> list[str]:
        return [k.name for k in self._keys]

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The latent shape every key shares; None while the timeline is empty."""
        return self._keys[0].shape if self._keys else None

    def index(self, key: int | str) -> int:
        """The position of a key given by index (negative counts from the end) or by name."""
        if isinstance(key, str):
            for i, k in enumerate(self._keys):
                if k.name == key:
                    return i
            raise SpecError("keyframe", f"{key!r} is not in this timeline.")
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
            raise SpecError("keyframe", f"must be an index or a name, not {key!r}.")
        n = len(self._keys)
        if not -n <= key < n:
            raise SpecError("keyframe", f"index {key} is outside this timeline of {n} keyframes.")
        return int(key) % n

    # --- editing ---

    def add(self, name: str, latent, index: int | None = None) -> Keyframe:
        """Add a key (at the end, or before position `index`) and return it."""
        key = Keyframe(name, latent)
        if index is None:
            index = len(self._keys)
        elif isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index <= len(self._keys):
            raise SpecError("index", f"must be between 0 and {len(self._keys)}, not {index!r}.")
        self._insert(key, int(index))
        return key

    def move(self, key: int | str, to: int) -> None:
        """Move a key to position `to` (as counted after it is taken out); the others keep their order."""
        i = self.index(key)
        if isinstance(to, bool) or not isinstance(to, (int, np.integer)) or not 0 <= to < len(self._keys):
            raise SpecError("to", f"must be between 0 and {len(self._keys) - 1}, not {to!r}.")
        self._keys.insert(int(to), self._keys.pop(i))

    def reorder(self, order: Sequence[int | str]) -> None:
        """Put the keys in a new order: `order` names every key once (by index or name)."""
        indices = [self.index(k) for k in order]
        if sorted(indices) != list(range(len(self._keys))):
            raise SpecError("order", "must name every keyframe exactly once.")
        self._keys = [self._keys[i] for i in indices]

    def delete(self, key: int | str) -> Keyframe:
        """Remove a key and return it."""
        return self._keys.pop(self.index(key))

    def rename(self, key: int | str, name: str) -> Keyframe:
        """Give a key a new (unique) name and return the renamed key."""
        i = self.index(key)
        name = _name(name)
        if any(k.name == name for j, k in enumerate(self._keys) if j != i):
            raise SpecError("name", f"{name!r} is already a keyframe of this timeline.")
        self._keys[i] = Keyframe(name, self._keys[i].latent)
        return self._keys[i]

    def replace(self, key: int | str, latent) -> Keyframe:
        """Give a key a new latent (same shape as the others) and return the new key."""
        i = self.index(key)
        new = Keyframe(self._keys[i].name, latent)
        if len(self._keys) > 1 and new.shape != self.shape:
            raise SpecError("latent", f"has shape {new.shape}, but this timeline's keyframes have shape {self.shape}.")
        self._keys[i] = new
        return new

    def _insert(self, key: Keyframe, index: int) -> None:
        if not isinstance(key, Keyframe):
            raise SpecError("keyframes", f"must be Keyframe objects, not {type(key).__name__}.")
        if self._keys and key.shape != self.shape:
            raise SpecError("latent", f"has shape {key.shape}, but this timeline's keyframes have shape {self.shape}.")
        if key.name in self.names:
            raise SpecError("name", f"{key.name!r} is already a keyframe of this timeline.")
        self._keys.insert(index, key)

    # --- time ---

    def keyframe_positions(self, durations: Sequence[float] | None = None) -> np.ndarray:
        """Where each key sits on the morph, u ∈ [0, 1]: 0 for the first, 1 for the last, and the
        others at the cumulative share of `durations` (equal shares by default). A single key
        sits at 0."""
        n = self._require_keys()
        if n == 1:
            return np.zeros(1)
        d = _durations(durations, n - 1)
        pos = np.concatenate([[0.0], np.cumsum(d) / d.sum()])
        pos[-1] = 1.0
        return pos

    def frame_positions(self, frames: int, durations: Sequence[float] | None = None) -> np.ndarray:
        """The positions of `frames` frames that include every keyframe's position exactly and
        share the steps between keys out in proportion to the segments' durations (with equal
        durations and frames − 1 a multiple of the segment count, the steps are all equal).

        Needs at least one frame per key: fewer could not show every key. With a single key all
        positions are 0 (the morph is a still)."""
        n = self._require_keys()
        frames = _count("frames", frames, minimum=max(n, 1))
        if n == 1:
            return np.zeros(frames)
        keys = self.keyframe_positions(durations)
        steps = _share(frames - 1, np.diff(keys))
        parts = [keys[s] + (keys[s + 1] - keys[s]) * np.arange(m) / m for s, m in enumerate(steps)]
        out = np.concatenate(parts + [[1.0]])
        out[np.cumsum(np.concatenate([[0], steps]))] = keys  # exact, not a rounded sum
        return out

    def at(self, u, method: str = "slerp", durations: Sequence[float] | None = None) -> np.ndarray:
        """The morph's latent at position `u` (a number, or a 1-D sequence giving stacked rows).

        Between two keys the path is `slerp` (noise-space latents) or `lerp` (learned spaces such
        as StyleGAN W, or embeddings); a key's own position gives that key exactly."""
        n = self._require_keys()
        if method not in METHODS:
            raise SpecError("method", f"must be 'slerp' or 'lerp', not {method!r}.")
        us = np.asarray(u, dtype=np.float64)
        scalar = us.ndim == 0
        us = np.atleast_1d(us)
        if us.ndim != 1 or not np.all(np.isfinite(us)) or np.any(us < 0) or np.any(us > 1):
            raise SpecError("u", "must be a number or a flat list of numbers between 0 and 1.")
        first = self._keys[0].latent  # every key has its shape and dtype
        out = np.empty((len(us),) + first.shape, dtype=first.dtype)
        if n == 1:
            out[:] = first
            return out[0] if scalar else out
        keys = self.keyframe_positions(durations)
        segment = np.clip(np.searchsorted(keys, us, side="right") - 1, 0, n - 2)
        path = slerp if method == "slerp" else lerp
        for s in np.unique(segment):
            rows = segment == s
            t = (us[rows] - keys[s]) / (keys[s + 1] - keys[s])
            out[rows] = path(self._keys[s].latent, self._keys[s + 1].latent, np.clip(t, 0.0, 1.0))
        return out[0] if scalar else out

    def sample(self, frames: int, method: str = "slerp", durations: Sequence[float] | None = None) -> np.ndarray:
        """`frames` latents along the morph, shape (frames, *latent shape): the first is the
        first key, the last the last key, every key appears exactly, and the frames between keys
        are shared out by `frame_positions`. A single key gives `frames` copies of it."""
        return self.at(self.frame_positions(frames, durations), method, durations)

    def _require_keys(self) -> int:
        if not self._keys:
            raise SpecError("timeline", "has no keyframes; add at least one.")
        return len(self._keys)


def even_spacing(
    render: Callable[[float], Render],
    distance: Callable[[Render, Render], float],
    frames: int,
    *,
    max_renders: int | None = None,
) -> np.ndarray:
    """Positions 0 = u₀ < … < u_{frames−1} = 1 whose rendered frames differ about equally.

    `render(u)` draws the morph at position u (e.g. decode `timeline.at(u)`); `distance(x, y)`
    says how different two renders look (mean absolute pixel difference, LPIPS, …) as a finite
    number ≥ 0. Both are plain callables, so this needs no model.

    How (reference §2.8):
    1. render a coarse uniform sampling of the path;
    2. greedy refinement: render the midpoint of the neighbouring pair that differs most, and
       repeat while the render budget lasts (latentblending's insertion: the samples crowd where
       the picture changes fast);
    3. arc length: accumulate the neighbour distances into a curve D(u) and invert it piecewise-
       linearly at equal steps of D (DiffMorpher's AlphaScheduler), giving `frames` positions.

    The caller then renders the frames at the returned positions (a second pass), so the morph is
    made of fresh renders at exactly those positions.

    Bound: `render` is called at most `max_renders` times, 2 × frames by default, so an even
    export costs at most 3 × frames renders in all with the second pass. Intervals are not split
    below 1/(16·(frames − 1)) of the morph, so a hard cut (a jump no refinement can smooth) does
    not swallow the budget; refinement may then stop early with fewer renders. A path along
    which nothing changes gives equal steps. Exceptions from `render` (a cancel, say) pass
    through.

    Every render is kept until the end (any two neighbours may be compared again), so `render`
    may as well return a small thumbnail: 128 px is plenty to measure change, and the final
    frames come from the second pass anyway."""
    frames = _count("frames", frames, minimum=2)
    budget = 2 * frames if max_renders is None else _count("max_renders", max_renders, minimum=3)
    coarse = min(budget, max(3, frames // 2 + 1))
    min_width = 1.0 / (16 * (frames - 1))

    us = list(np.linspace(0.0, 1.0, coarse))
    images = [render(float(u)) for u in us]
    gaps = [_distance(distance, images[i], images[i + 1]) for i in range(coarse - 1)]
    renders = coarse
    while renders < budget:
        order = sorted(range(len(gaps)), key=lambda i: -gaps[i])
        split = next((i for i in order if us[i + 1] - us[i] >= 2 * min_width), None)
        if split is None or gaps[split] <= 0.0:
            break
        mid = 0.5 * (us[split] + us[split + 1])
        image = render(float(mid))
        renders += 1
        left = _distance(distance, images[split], image)
        right = _distance(distance, image, images[split + 1])
        us.insert(split + 1, mid)
        images.insert(split + 1, image)
        gaps[split : split + 1] = [left, right]

    cumulative = np.concatenate([[0.0], np.cumsum(gaps)])
    if not cumulative[-1] > 0.0:
        return np.linspace(0.0, 1.0, frames)
    return _invert(cumulative, np.asarray(us), frames)


def _invert(cumulative: np.ndarray, us: np.ndarray, frames: int) -> np.ndarray:
    """The positions where the accumulated change D(u) reaches equal fractions of its total,
    reading D as piecewise linear between samples. A stretch with no change is jumped over (the
    next step starts at its far end), which is what equal steps of change mean."""
    targets = np.linspace(0.0, cumulative[-1], frames)
    hi = np.clip(np.searchsorted(cumulative, targets, side="left"), 1, len(us) - 1)
    lo = hi - 1
    rise = cumulative[hi] - cumulative[lo]
    frac = np.divide(targets - cumulative[lo], rise, out=np.zeros_like(targets), where=rise > 0)
    positions = us[lo] + np.clip(frac, 0.0, 1.0) * (us[hi] - us[lo])
    positions[0], positions[-1] = 0.0, 1.0
    return positions


# --- helpers ---------------------------------------------------------------------------------


def _name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise SpecError("name", "must be a non-empty piece of text.")
    return name.strip()


def _count(what: str, n, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise SpecError(what, f"must be a whole number of at least {minimum}, not {n!r}.")
    return int(n)


def _durations(durations, segments: int) -> np.ndarray:
    if durations is None:
        return np.ones(segments)
    try:
        d = np.asarray(durations, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError("durations", "must be a list of numbers.") from None
    if d.shape != (segments,):
        raise SpecError("durations", f"must hold one number per segment between keyframes ({segments}), not {d.size}.")
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise SpecError("durations", "must all be positive numbers.")
    return d


def _share(steps: int, lengths: np.ndarray) -> np.ndarray:
    """Split `steps` frame steps over segments in proportion to their lengths, at least one each
    (largest remainder; ties go to the earlier segment)."""
    ideal = steps * lengths / lengths.sum()
    out = np.maximum(np.floor(ideal).astype(int), 1)
    while out.sum() < steps:
        out[int(np.argmax(ideal - out))] += 1
    while out.sum() > steps:
        spare = np.where(out > 1, ideal - out, np.inf)
        out[int(np.argmin(spare))] -= 1
    return out


def _distance(distance, x, y) -> float:
    d = distance(x, y)
    try:
        d = float(d)
    except (TypeError, ValueError):
        raise SpecError("distance", f"must return a number, not {type(d).__name__}.") from None
    if not math.isfinite(d) or d < 0:
        raise SpecError("distance", f"must return a finite number of at least 0, not {d}.")
    return d
