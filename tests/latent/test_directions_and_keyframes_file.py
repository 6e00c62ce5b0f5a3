"""Slider directions (axes, names, stored directions and their refusals) and keyframe files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from studio.core.errors import ModelFileError, StudioError
from studio.latent.directions import Directions, directions_for
from studio.latent.keyframes_file import read_keyframes, write_keyframes


def test_axes_set_a_coordinate_exactly_and_keep_the_rest():
    d = Directions.axes(4, ("smile",))
    assert d.names == ("smile", "z1", "z2", "z3")
    z = d.moved([0.3, 0.1, -2.0, 7.0], 0, 1.7)
    assert z.tolist() == [1.7, 0.1, -2.0, 7.0]
    assert d.coords(z).tolist() == [1.7, 0.1, -2.0, 7.0]
    assert d.offset(z, {1: 0.5, 3: -1.0}).tolist() == [1.7, 0.6, -2.0, 6.0]


def test_stored_directions_measure_in_sigma_from_the_mean(tmp_path):
    components = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], np.float32)  # normalised on load
    save_file(
        {
            "components": components,
            "sigma": np.array([2.0, 0.5], np.float32),
            "mean": np.array([1.0, 1.0, 1.0], np.float32),
        },
        str(tmp_path / "dirs.safetensors"),
    )
    d = directions_for(tmp_path, {"directions": {"file": "dirs.safetensors", "names": ["a", 5]}}, 3)
    assert d.names == ("a", "z1") and d.count == 2
    z = d.moved(d.mean, 0, 1.0)  # one σ (2.0) along (0.6, 0.8, 0)
    assert np.allclose(z, [1 + 1.2, 1 + 1.6, 1.0])
    assert np.allclose(d.coords(z), [1.0, 0.0])
    z = d.moved(z, 1, -2.0)
    assert np.allclose(d.coords(z), [1.0, -2.0])


@pytest.mark.parametrize(
    "tensors, entry, words",
    [
        ({"components": np.ones((2, 5), np.float32), "sigma": np.ones(2, np.float32)}, None, "(K, 3)"),
        ({"components": np.ones((2, 3), np.float32)}, None, "sigma"),
        ({"components": np.ones((2, 3), np.float32), "sigma": np.array([1, 0], np.float32)}, None, "not positive"),
        ({"components": np.zeros((1, 3), np.float32), "sigma": np.ones(1, np.float32)}, None, "length zero"),
        (None, {"file": "../outside.safetensors"}, "outside the model folder"),
        (None, {"file": "missing.safetensors"}, "missing"),
        (None, "smile", "must be an object"),
    ],
)
def test_a_broken_directions_entry_is_one_sentence(tmp_path, tensors, entry, words):
    if tensors is not None:
        save_file(tensors, str(tmp_path / "dirs.safetensors"))
    with pytest.raises(ModelFileError) as caught:
        directions_for(tmp_path, {"directions": entry or {"file": "dirs.safetensors"}}, 3)
    assert words in caught.value.message


def test_keyframes_round_trip_and_plain_lists_are_read(tmp_path):
    path = tmp_path / "keys.json"
    write_keyframes(path, "emoji-vae", ["A", "B"], [np.zeros(3), [1.0, 2.0, 3.5]])
    saved = read_keyframes(path)
    assert saved.model == "emoji-vae" and saved.names == ("A", "B")
    assert saved.latents.tolist() == [[0, 0, 0], [1, 2, 3.5]]
    path.write_text(json.dumps([[1, 2], [3, 4]]))
    saved = read_keyframes(path)
    assert saved.model == "" and saved.names == ("Key 1", "Key 2")


@pytest.mark.parametrize(
    "content, words",
    [
        ("not json", "not a keyframes file"),
        (json.dumps({"format": "other"}), "studio-keyframes"),
        (json.dumps([[1, 2], [3]]), "different lengths"),
        (json.dumps([[1, "x"]]), "finite numbers"),
        (json.dumps([]), "1 to 256"),
        ("[" * 100_000 + "]" * 100_000, "not a keyframes file"),
    ],
)
def test_a_bad_keyframes_file_is_one_sentence(tmp_path, content, words):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(StudioError) as caught:
        read_keyframes(path)
    assert words in caught.value.message
