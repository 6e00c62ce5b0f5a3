"""slerp, lerp and the norm-preserving blend (reference §2.1)."""

import numpy as np
import pytest

from studio.core.errors import SpecError
from studio.latent import blend, lerp, slerp


def gaussian(seed, d=4096, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(d).astype(dtype)


@pytest.mark.parametrize("path", [slerp, lerp])
def test_endpoints_are_the_inputs_bit_for_bit(path):
    a, b = gaussian(1, 512, np.float32), gaussian(2, 512, np.float32)
    assert np.array_equal(path(a, b, 0.0), a) and path(a, b, 0.0).dtype == np.float32
    assert np.array_equal(path(a, b, 1.0), b)
    rows = path(a, b, [0.0, 0.5, 1.0])
    assert rows.shape == (3, 512)
    assert np.array_equal(rows[0], a) and np.array_equal(rows[2], b)


def test_slerp_midpoint_keeps_the_norm_of_orthogonal_vectors_where_lerp_shrinks_it():
    a = np.array([3.0, 0.0, 0.0])
    b = np.array([0.0, 3.0, 0.0])
    mid = slerp(a, b, 0.5)
    assert np.linalg.norm(mid) == pytest.approx(3.0)
    assert np.allclose(mid, [3 / np.sqrt(2), 3 / np.sqrt(2), 0.0])
    assert np.linalg.norm(lerp(a, b, 0.5)) == pytest.approx(3.0 / np.sqrt(2))
    # Along the whole path, not only the middle.
    assert np.allclose(np.linalg.norm(slerp(a, b, np.linspace(0, 1, 11)), axis=1), 3.0)


def test_slerp_lerps_the_norm_between_different_norms():
    a = np.array([2.0, 0.0])
    b = np.array([0.0, 4.0])
    ts = np.linspace(0, 1, 9)
    assert np.allclose(np.linalg.norm(slerp(a, b, ts), axis=1), 2.0 + 2.0 * ts)
    # ...and the direction moves at a constant angular speed.
    angles = np.arctan2(*slerp(a, b, ts).T[::-1])
    assert np.allclose(np.diff(angles), np.pi / 2 / 8)


def test_gaussian_latents_stay_on_their_shell():
    a, b = gaussian(3), gaussian(4)
    d = a.size
    assert np.linalg.norm(slerp(a, b, 0.5)) == pytest.approx(np.sqrt(d), rel=0.05)
    assert np.linalg.norm(lerp(a, b, 0.5)) == pytest.approx(np.sqrt(d / 2), rel=0.05)


def test_parallel_and_opposite_vectors_fall_back_to_lerp():
    a = np.array([1.0, 2.0, 3.0])
    for b in (2.5 * a, 2.5 * a + 1e-9, -a, np.zeros(3)):
        ts = np.linspace(0, 1, 5)
        out = slerp(a, b, ts)
        assert np.all(np.isfinite(out))
        assert np.allclose(out, lerp(a, b, ts))


def test_any_shape_is_one_vector():
    a, b = gaussian(5, 2 * 4 * 4).reshape(2, 4, 4), gaussian(6, 2 * 4 * 4).reshape(2, 4, 4)
    out = slerp(a, b, [0.25, 0.75])
    assert out.shape == (2, 2, 4, 4)
    assert np.allclose(out[0].ravel(), slerp(a.ravel(), b.ravel(), 0.25))


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: slerp([1.0, 0.0], [1.0, 0.0, 0.0], 0.5), "`b` has shape"),
        (lambda: slerp([1.0, np.nan], [0.0, 1.0], 0.5), "`a` must hold only finite numbers"),
        (lambda: slerp([1.0, 0.0], [0.0, 1.0], 1.5), "`t` must be between 0 and 1"),
        (lambda: lerp([1.0, 0.0], [0.0, 1.0], [[0.5]]), "`t` must be a number or a flat list"),
        (lambda: lerp([], [], 0.5), "`a` must not be empty"),
    ],
)
def test_bad_arguments_are_refused_in_one_sentence(call, words):
    with pytest.raises(SpecError) as info:
        call()
    message = str(info.value)
    assert message.startswith(words)
    assert "\n" not in message and message.endswith(".")


def test_blend_keeps_gaussian_norm():
    d = 4096
    parents = [gaussian(seed, d) for seed in range(4)]
    child = blend(parents, [0.25, 0.25, 0.25, 0.25])
    assert np.linalg.norm(child) == pytest.approx(np.sqrt(d), rel=0.05)
    plain = np.mean(parents, axis=0)  # the under-scaled mix that the rescale fixes
    assert np.linalg.norm(plain) == pytest.approx(np.sqrt(d) / 2, rel=0.05)
    # Uneven weights, and weights that do not sum to one: only the ratios matter.
    uneven = blend(parents[:3], [3, 1, 1])
    assert np.linalg.norm(uneven) == pytest.approx(np.sqrt(d), rel=0.05)
    assert np.allclose(uneven, blend(parents[:3], [0.6, 0.2, 0.2]))
    assert np.std(uneven) == pytest.approx(1.0, rel=0.05)


def test_blend_of_one_parent_is_that_parent():
    a, b = gaussian(7, 64, np.float32), gaussian(8, 64, np.float32)
    assert np.array_equal(blend([a], [2.0]), a)
    assert np.allclose(blend([a, b], [1.0, 0.0]), a)
    assert blend([a, b], [1, 1]).dtype == np.float32


@pytest.mark.parametrize(
    "latents, weights, words",
    [
        ([], [], "`latents` must hold at least one latent."),
        ([np.zeros(3), np.zeros(4)], [1, 1], "`latents` must all have one shape"),
        ([np.zeros(3), np.full(3, np.inf)], [1, 1], "`latents` must hold only finite numbers"),
        ([np.zeros(3), np.ones(3)], [1], "`weights` must hold one number per latent (2), not 1."),
        ([np.zeros(3), np.ones(3)], [1, -1], "`weights` must not be negative."),
        ([np.zeros(3), np.ones(3)], [0, 0], "`weights` must not all be zero."),
        ([np.zeros(3), np.ones(3)], [1, np.nan], "`weights` must be finite numbers."),
        ([np.zeros(3), np.ones(3)], ["a", "b"], "`weights` must be a list of numbers."),
    ],
)
def test_blend_refuses_in_one_sentence_naming_the_argument(latents, weights, words):
    with pytest.raises(ValueError) as info:
        blend(latents, weights)
    assert isinstance(info.value, SpecError)
    assert str(info.value).startswith(words)
    assert "\n" not in str(info.value)
