"""Model kind, format, runtime and device as enums that stay the strings they replaced."""

import json
import pickle

import pytest

from studio.core.kinds import ONNX_FORMATS, Device, ModelFormat, ModelKind, Runtime


@pytest.mark.parametrize(
    "member, text",
    [
        (ModelKind.IMAGE, "image"),
        (ModelFormat.SD_SINGLE_FILE, "sd-single-file"),
        (Runtime.ONNX, "onnx"),
        (Device.CUDA, "cuda"),
    ],
)
def test_a_member_is_its_string_everywhere_a_string_was_used(member, text):
    assert member == text and text == member and hash(member) == hash(text)
    assert {text: 1}[member] == 1 and {member: 1}[text] == 1  # dict keys either way
    assert f"{member}" == str(member) == text  # messages and f-strings show the value
    assert json.dumps({"x": member}) == json.dumps({"x": text})
    assert type(member)(text) is member  # read back from a file or a command line
    assert pickle.loads(pickle.dumps(member)) is member


def test_an_unknown_value_is_refused():
    with pytest.raises(ValueError):
        Runtime("tensorflow")


def test_the_onnx_formats_are_those_that_run_on_onnx_runtime_only():
    assert ONNX_FORMATS == {f for f in ModelFormat if f.startswith("onnx")}
