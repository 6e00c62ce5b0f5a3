"""The Fréchet distance between two feature sets, each summarised by a Gaussian (mean, covariance):

    FD = |μa − μb|² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½)

`studio eval` computes it on the 128-d features of our own emoji classifier and calls it
"FD-emoji". It is the same formula as FID, but NOT FID: FID uses Inception-v3 features, and
FD-emoji numbers cannot be compared with published FID scores, only with each other (and with
the real-vs-real floor that `studio eval` prints next to them).

Plain float64 numpy: the matrix square roots come from symmetric eigen-decompositions, with the
tiny negative eigenvalues that rounding leaves on (near-)singular covariances clipped to zero."""

from __future__ import annotations

import numpy as np

NAME = "FD-emoji"


def _as_features(x: np.ndarray, which: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{which} must be an (N, D) array of features, not shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{which} needs at least 2 samples to have a covariance, not {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError(f"{which} holds NaN or infinite values")
    return x


def _covariance(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(0)
    return centred.T @ centred / (x.shape[0] - 1)


def _psd_eigen(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0) and eigenvectors of a matrix that should be symmetric PSD."""
    values, vectors = np.linalg.eigh((m + m.T) / 2)
    return np.clip(values, 0.0, None), vectors


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between the Gaussians fitted to feature sets `a` (Na, D) and `b` (Nb, D).

    ValueError when the shapes do not fit or a set has fewer than two samples."""
    a, b = _as_features(a, "a"), _as_features(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two feature sets differ in width ({a.shape[1]} vs {b.shape[1]})")
    diff = a.mean(0) - b.mean(0)
    cov_a, cov_b = _covariance(a), _covariance(b)
    values, vectors = _psd_eigen(cov_a)
    root_a = (vectors * np.sqrt(values)) @ vectors.T  # Σa^½
    inner, _ = _psd_eigen(root_a @ cov_b @ root_a)
    trace_root = float(np.sqrt(inner).sum())  # tr((Σa^½ Σb Σa^½)^½)
    distance = float(diff @ diff) + float(np.trace(cov_a)) + float(np.trace(cov_b)) - 2.0 * trace_root
    return max(distance, 0.0)
