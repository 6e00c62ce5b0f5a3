"""Header checks on .safetensors files, each failure one sentence naming the file."""

import json
import struct

import pytest

from studio.core.errors import ModelFileError
from studio.models.safe_files import check_safetensors


def write_safetensors(path, header, data=b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_a_tensor_without_offsets_names_the_file_and_the_tensor(tmp_path):
    path = write_safetensors(tmp_path / "decoder.safetensors", {"layer.weight": {"dtype": "F32", "shape": [1]}})
    with pytest.raises(ModelFileError) as info:
        check_safetensors(path)
    assert info.value.message == (
        "decoder.safetensors is not a valid safetensors file (tensor 'layer.weight' has no offsets)."
    )
    with pytest.raises(ModelFileError, match=r"^unet/w\.safetensors is not a valid"):
        check_safetensors(path, "unet/w.safetensors")


def test_a_complete_file_passes_and_a_short_one_is_incomplete(tmp_path):
    header = {"__metadata__": {"x": "y"}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    check_safetensors(write_safetensors(tmp_path / "ok.safetensors", header, b"\0" * 8))
    with pytest.raises(ModelFileError, match="^short.safetensors is incomplete"):
        check_safetensors(write_safetensors(tmp_path / "short.safetensors", header, b"\0" * 4))


@pytest.mark.parametrize("make", ["directory", "missing"])
def test_a_file_that_cannot_be_read_is_one_sentence(tmp_path, make):
    path = tmp_path / "weights.safetensors"
    if make == "directory":
        path.mkdir()
    with pytest.raises(ModelFileError) as info:
        check_safetensors(path)
    message = info.value.message
    assert message.startswith("weights.safetensors cannot be read (") and message.endswith(".")
    assert "\n" not in message
