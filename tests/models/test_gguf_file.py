"""GGUF header checks: valid files written by the gguf package read back as written, and every
crafted way a header can lie is refused with one sentence naming the file and what is wrong."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import gguf
import numpy as np
import pytest
from gguf.constants import GGML_QUANT_SIZES

from studio.core.errors import ModelFileError
from studio.models import gguf_file
from studio.models.formats import MAX_CHAT_TEMPLATE_CHARS
from studio.models.gguf_file import (
    ARRAY,
    FILE_TYPES,
    GGML_TYPES,
    STRING,
    UINT8,
    UINT32,
    UINT64,
    ArrayInfo,
    check_loadable,
    loading_bytes,
    read_header,
)

# --- valid files, written by the gguf package -------------------------------------------------


def write_gguf(path: Path, tensors: dict[str, Any], *, arch: str = "llama", extra=None) -> Path:
    """A GGUF file from the gguf package's own writer; `extra(writer)` adds metadata."""
    writer = gguf.GGUFWriter(path, arch)
    if extra is not None:
        extra(writer)
    for name, tensor in tensors.items():
        if isinstance(tensor, tuple):  # (quantised blocks as bytes, their type)
            data, qtype = tensor
            writer.add_tensor(name, data, raw_dtype=qtype)
        else:
            writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def q8_0(rows: int, cols: int):
    weights = np.linspace(-1, 1, rows * cols, dtype=np.float32).reshape(rows, cols)
    return gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0


def test_a_valid_file_reads_back_as_written(tmp_path):
    def extra(w):
        w.add_context_length(4096)
        w.add_chat_template("{{ messages }}")
        w.add_array("general.tags", ["a", "b"])

    path = write_gguf(
        tmp_path / "small.gguf",
        {
            "embed": np.ones((8, 16), dtype=np.float32),
            "norm": np.ones(16, dtype=np.float16),
            "proj": q8_0(4, 64),
        },
        extra=extra,
    )
    header = read_header(path)
    assert header.version == 3
    assert header.architecture == "llama"
    assert header.context_length == 4096
    assert header.chat_template == "{{ messages }}"
    assert header.metadata["general.tags"] == ["a", "b"]  # short arrays are kept whole
    assert header.parameter_count == 8 * 16 + 16 + 4 * 64
    assert header.weights_bytes == 8 * 16 * 4 + 16 * 2 + 4 * (64 // 32) * 34
    assert header.quantisation == "F32"  # no general.file_type: the type holding the most bytes
    assert header.file_size == path.stat().st_size
    assert {t.name: (t.shape, t.type_name) for t in header.tensors} == {
        "embed": ((16, 8), "F32"),  # ggml order: the row length first
        "norm": ((16,), "F16"),
        "proj": ((64, 4), "Q8_0"),
    }
    # The gguf package's own reader places every tensor at the same bytes.
    theirs = {t.name: (int(t.data_offset), int(t.n_bytes), int(t.n_elements)) for t in gguf.GGUFReader(path).tensors}
    assert {t.name: (t.offset, t.nbytes, t.element_count) for t in header.tensors} == theirs


@pytest.mark.parametrize(
    ("tensors", "file_type", "expected"),
    [
        ({"w": np.ones((2, 32), dtype=np.float16)}, None, "F16"),
        ({"w": q8_0(8, 64), "norm": np.ones(64, dtype=np.float32)}, None, "Q8_0"),
        ({"w": np.ones(4, dtype=np.float32)}, 15, "Q4_K_M"),
        ({"w": np.ones(4, dtype=np.float32)}, 7 | 1024, "Q8_0"),  # a guessed file type is still its type
        ({"w": np.ones(4, dtype=np.float16)}, 999, "F16"),  # a file type the studio does not know
    ],
)
def test_the_quantisation_comes_from_the_file_type_else_the_tensors(tmp_path, tensors, file_type, expected):
    extra = None if file_type is None else (lambda w: w.add_file_type(file_type))
    assert read_header(write_gguf(tmp_path / "m.gguf", tensors, extra=extra)).quantisation == expected


def test_a_custom_alignment_places_the_data_on_it(tmp_path):
    path = write_gguf(
        tmp_path / "m.gguf",
        {"a": np.ones(3, dtype=np.float32), "b": np.ones(5, dtype=np.float32)},
        extra=lambda w: w.add_custom_alignment(256),
    )
    header = read_header(path)
    assert header.data_offset % 256 == 0
    assert all(t.offset % 256 == 0 for t in header.tensors)


def test_a_large_vocabulary_is_checked_but_kept_only_as_its_length(tmp_path):
    tokens = [f"tok{i}" for i in range(150_000)]
    merges = [f"t{i} k{i}" for i in range(100_000)]

    def extra(w):
        w.add_token_list(tokens)
        w.add_token_merges(merges)
        w.add_token_scores([0.5] * 150_000)

    header = read_header(write_gguf(tmp_path / "vocab.gguf", {"w": np.ones(4, dtype=np.float32)}, extra=extra))
    assert header.metadata["tokenizer.ggml.tokens"] == ArrayInfo(STRING, 150_000)
    assert header.metadata["tokenizer.ggml.merges"] == ArrayInfo(STRING, 100_000)
    assert header.metadata["tokenizer.ggml.scores"] == ArrayInfo(gguf_file.FLOAT32, 150_000)


def test_the_loading_budget_counts_weights_and_the_kv_cache(tmp_path):
    def extra(w):
        w.add_block_count(2)
        w.add_embedding_length(64)
        w.add_head_count(8)
        w.add_head_count_kv(2)  # grouped-query attention: keys and values for a quarter of the heads

    header = read_header(write_gguf(tmp_path / "m.gguf", {"w": np.ones((64, 64), dtype=np.float32)}, extra=extra))
    weights = 64 * 64 * 4
    assert loading_bytes(header, 0) == weights
    assert loading_bytes(header, 1000) == weights + 2 * 2 * (64 * 2 // 8) * 1000 * 2
    with pytest.raises(ModelFileError, match=r"^m\.gguf needs about .* 1,000-token context.* only 20 KB is free"):
        check_loadable(header, 1000, available=20_000)
    check_loadable(header, 1000, available=10**12)
    check_loadable(header, 1000, available=None)  # the machine does not say: nothing to refuse on


def test_the_loading_budget_asks_the_machine_by_default(tmp_path, monkeypatch):
    header = read_header(write_gguf(tmp_path / "m.gguf", {"w": np.ones(64, dtype=np.float32)}))
    monkeypatch.setattr(gguf_file, "available_bytes", lambda: 100)
    with pytest.raises(ModelFileError, match="needs about 256 bytes"):
        check_loadable(header, 8)
    monkeypatch.setattr(gguf_file, "available_bytes", lambda: 10**9)
    check_loadable(header, 8)


def test_the_module_imports_neither_numpy_nor_gguf():
    code = "import sys, studio.models.gguf_file; print(sorted({'numpy', 'gguf'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_ggml_type_table_agrees_with_the_gguf_package():
    for ggml_type, (name, block, block_bytes) in GGML_TYPES.items():
        theirs = gguf.GGMLQuantizationType(ggml_type)
        assert theirs.name == name
        if name == "Q8_1":  # ggml's block_q8_1 holds two f16; the Python package counts two f32
            assert GGML_QUANT_SIZES[theirs] == (32, 40) and block_bytes == 2 + 2 + 32
            continue
        assert GGML_QUANT_SIZES[theirs] == (block, block_bytes)
    for file_type, name in FILE_TYPES.items():
        assert gguf.LlamaFileType(file_type).name in (f"MOSTLY_{name}", f"ALL_{name}")


# --- crafted files, byte by byte --------------------------------------------------------------


def gstr(text: "str | bytes", length: Optional[int] = None) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def kv(key: "str | bytes", vtype: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", vtype) + payload


def u32_kv(key: str, value: int) -> bytes:
    return kv(key, UINT32, struct.pack("<I", value))


def str_kv(key: str, value: "str | bytes", length: Optional[int] = None) -> bytes:
    return kv(key, STRING, gstr(value, length))


def array(etype: int, count: int, elements: bytes = b"") -> bytes:
    return struct.pack("<IQ", etype, count) + elements


ARCH = str_kv("general.architecture", "llama")


def tensor_info(name: "str | bytes", dims=(4,), ggml_type: int = 0, offset: int = 0, n_dims=None) -> bytes:
    n = len(dims) if n_dims is None else n_dims
    return (
        gstr(name) + struct.pack("<I", n) + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", ggml_type, offset)
    )


def craft(
    path: Path,
    kvs: tuple[bytes, ...] = (ARCH,),
    tensors: tuple[bytes, ...] = (tensor_info("w"),),
    *,
    data: int = 16,
    alignment: int = 32,
    magic: bytes = b"GGUF",
    version: int = 3,
    tensor_count: Optional[int] = None,
    kv_count: Optional[int] = None,
) -> Path:
    """A GGUF file written field by field: header, key-value pairs, tensor infos, padding to
    `alignment`, then `data` bytes of tensor data. Each knob can be set to something broken."""
    head = magic + struct.pack(
        "<IQQ",
        version,
        len(tensors) if tensor_count is None else tensor_count,
        len(kvs) if kv_count is None else kv_count,
    )
    body = head + b"".join(kvs) + b"".join(tensors)
    body += b"\0" * (-len(body) % alignment)
    path.write_bytes(body + b"\x11" * data)
    return path


def refused(path: Path, **kwargs) -> str:
    with pytest.raises(ModelFileError) as info:
        read_header(path, **kwargs)
    return info.value.message


def test_a_crafted_file_with_nothing_wrong_reads(tmp_path):
    header = read_header(craft(tmp_path / "model.gguf"))
    assert header.metadata == {"general.architecture": "llama"}
    assert header.tensors == (gguf_file.GgufTensor("w", (4,), 0, header.data_offset, 16),)
    assert header.data_offset % 32 == 0


def test_a_file_that_is_not_gguf_says_so(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", magic=b"GGML"))
    assert message == "model.gguf is not a GGUF file (it does not start with the bytes 'GGUF')."
    (tmp_path / "tiny.gguf").write_bytes(b"GG")
    assert refused(tmp_path / "tiny.gguf").startswith("tiny.gguf is not a GGUF file")


@pytest.mark.parametrize("version", [0, 1, 4, 0xFFFFFFFF])
def test_an_unsupported_version_is_refused(tmp_path, version):
    message = refused(craft(tmp_path / "model.gguf", version=version))
    assert message.startswith(f"model.gguf is GGUF version {version:,}, which the studio cannot load")


def test_a_big_endian_file_is_named_as_such(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", version=0x03000000))
    assert message == "model.gguf is a big-endian GGUF file, which the studio cannot load."


def test_every_cut_of_a_valid_file_is_refused_as_truncated(tmp_path):
    whole = craft(
        tmp_path / "whole.gguf",
        kvs=(ARCH, kv("general.tags", ARRAY, array(STRING, 2, gstr("a") + gstr("bc"))), u32_kv("n", 1)),
        tensors=(tensor_info("w"), tensor_info("v", dims=(2, 2), offset=32)),
        data=48,
    ).read_bytes()
    cut = tmp_path / "cut.gguf"
    for size in range(4, len(whole)):
        cut.write_bytes(whole[:size])
        assert refused(cut).startswith("cut.gguf is truncated: "), size
    cut.write_bytes(whole)
    assert len(read_header(cut).tensors) == 2


def test_tensor_data_past_the_end_names_where_it_ends(tmp_path):
    path = craft(tmp_path / "model.gguf", tensors=(tensor_info("w", dims=(1000,)),), data=100)
    header_end = path.stat().st_size - 100
    assert refused(path) == (
        f"model.gguf is truncated: its tensor data ends at byte {header_end + 4000:,} but the file has "
        f"{header_end + 100:,} bytes."
    )


def test_a_tensor_offset_far_past_the_end_is_truncated(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info("w", offset=2**64 - 32),)))
    assert "model.gguf is truncated: its tensor data ends at byte 18,446,744," in message


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ({"tensor_count": 65_537}, "model.gguf declares 65,537 tensors, more than the 65,536"),
        ({"kv_count": 2**64 - 1}, "model.gguf declares 18,446,744,073,709,551,615 metadata entries, more than"),
    ],
)
def test_absurd_counts_are_refused_before_any_entry_is_read(tmp_path, field, expected):
    # The file holds one entry of each: had the count been looped over, the file would be truncated.
    assert refused(craft(tmp_path / "model.gguf", **field)).startswith(expected)


def test_a_key_longer_than_a_key_may_be_is_refused(tmp_path):
    long_key = kv("k" * 65_536, UINT8, b"\0")
    assert refused(craft(tmp_path / "model.gguf", kvs=(ARCH, long_key))).startswith(
        "model.gguf has a metadata key of 65,536 bytes at byte "
    )
    declared = gstr(b"key", length=2**63)  # refused by its length before the file's end is reached
    assert "metadata key of 9,223,372,036,854,775,808 bytes" in refused(craft(tmp_path / "model.gguf", kvs=(declared,)))


def test_a_text_value_longer_than_the_limit_is_refused_unread(tmp_path):
    path = craft(tmp_path / "model.gguf", kvs=(ARCH, str_kv("general.name", "x", length=16 * 1024 * 1024 + 1)))
    assert refused(path) == (
        "model.gguf has a text value of 16,777,217 bytes in the value of 'general.name', more than the "
        "16,777,216 bytes the studio reads."
    )


def test_a_text_value_past_the_end_of_the_file_is_truncated(tmp_path):
    path = craft(tmp_path / "model.gguf", kvs=(ARCH, str_kv("general.name", "x", length=1_000_000)), tensors=())
    message = refused(path)
    assert message.startswith("model.gguf is truncated: the value of 'general.name' at byte ")
    assert message.endswith(f"needs 1,000,000 bytes, but the file has only {path.stat().st_size:,} bytes.")


def test_a_header_over_the_budget_is_refused_before_reading_past_it(tmp_path):
    path = craft(tmp_path / "model.gguf", kvs=(ARCH, str_kv("general.name", "x" * 5000)))
    assert read_header(path).metadata["general.name"] == "x" * 5000
    message = refused(path, max_header_bytes=4096)
    assert message.startswith("model.gguf has a header larger than the 4.1 KB the studio reads (the value of")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (array(UINT64, 2**61), "model.gguf is truncated: the value of 'big' at byte "),
        (array(STRING, 2**60), "model.gguf is truncated: the value of 'big' at byte "),
        (array(ARRAY, 2**60), "model.gguf is truncated: the value of 'big' at byte "),
        (array(UINT8, 3000, b"\0" * 3000), "model.gguf has a header larger than"),
    ],
)
def test_an_array_larger_than_the_file_or_budget_is_refused_before_it_is_read(tmp_path, values, expected):
    path = craft(tmp_path / "model.gguf", kvs=(ARCH, kv("big", ARRAY, values)))
    assert refused(path, max_header_bytes=2048).startswith(expected)


def test_a_string_in_a_long_array_past_the_limit_is_refused(tmp_path):
    strings = gstr("a") * 100 + gstr("b", length=2**40)
    path = craft(tmp_path / "model.gguf", kvs=(ARCH, kv("tokenizer.ggml.tokens", ARRAY, array(STRING, 101, strings))))
    assert "text value of 1,099,511,627,776 bytes in the value of 'tokenizer.ggml.tokens'" in refused(path)


def test_a_key_that_is_not_utf8_is_refused(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", kvs=(ARCH, kv(b"general.\xff", UINT8, b"\0"))))
    assert message.startswith("model.gguf has a metadata key at byte ")
    assert message.endswith("that is not UTF-8 text (b'general.\\xff').")


def test_a_text_value_that_is_not_utf8_is_kept_with_replacements(tmp_path):
    path = craft(tmp_path / "model.gguf", kvs=(ARCH, str_kv("general.name", b"caf\xe9")))
    assert read_header(path).metadata["general.name"] == "caf\ufffd"


def test_a_duplicate_key_is_refused(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", kvs=(ARCH, u32_kv("n", 1), u32_kv("n", 2))))
    assert message == "model.gguf has the metadata key 'n' twice."


def test_a_duplicate_tensor_name_is_refused(tmp_path):
    tensors = (tensor_info("w"), tensor_info("w", offset=32))
    assert refused(craft(tmp_path / "model.gguf", tensors=tensors, data=48)) == "model.gguf has two tensors named 'w'."


def test_an_unknown_value_type_is_refused(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", kvs=(ARCH, kv("odd", 13, b"\0" * 8))))
    assert message == "model.gguf gives the metadata key 'odd' a value of unknown type 13."
    message = refused(craft(tmp_path / "model.gguf", kvs=(ARCH, kv("odd", ARRAY, array(99, 1, b"\0")))))
    assert message == "model.gguf gives the metadata key 'odd' an array of unknown element type 99."


def test_arrays_nest_two_deep_but_no_deeper(tmp_path):
    inner = array(UINT8, 2, b"\x01\x02")
    two = kv("two", ARRAY, array(ARRAY, 2, inner + inner))
    assert read_header(craft(tmp_path / "ok.gguf", kvs=(ARCH, two))).metadata["two"] == [[1, 2], [1, 2]]
    three = kv("three", ARRAY, array(ARRAY, 1, array(ARRAY, 1, inner)))
    message = refused(craft(tmp_path / "model.gguf", kvs=(ARCH, three)))
    assert message == "model.gguf has arrays nested more than 2 deep in the metadata key 'three'."


@pytest.mark.parametrize("ggml_type", [4, 5, 31, 36, 1000])
def test_an_unknown_ggml_type_is_refused(tmp_path, ggml_type):
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info("w", ggml_type=ggml_type),)))
    assert message == f"model.gguf gives tensor 'w' the ggml type {ggml_type:,}, which the studio does not know."


@pytest.mark.parametrize("n_dims", [0, 5, 2**32 - 1])
def test_a_dimension_count_out_of_range_is_refused(tmp_path, n_dims):
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info("w", dims=(), n_dims=n_dims),)))
    assert message == f"model.gguf gives tensor 'w' {n_dims:,} dimensions; a GGUF tensor has 1 to 4."


@pytest.mark.parametrize("dims", [(0,), (4, 0), (2**40 + 1,), (4, 2**64 - 1)])
def test_a_dimension_of_zero_or_absurd_size_is_refused(tmp_path, dims):
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info("w", dims=dims),)))
    bad = next(d for d in dims if d == 0 or d > 2**40)
    assert message == f"model.gguf gives tensor 'w' a dimension of {bad:,}; each must be from 1 to 2^40."


def test_too_many_elements_are_refused(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info("w", dims=(2**25, 2**24)),)))
    assert message == f"model.gguf gives tensor 'w' {2**49:,} elements, more than the 2^48 a tensor may have."


def test_a_row_that_is_not_whole_blocks_is_refused(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info("w", dims=(33, 2), ggml_type=8),)))
    assert message == "model.gguf gives tensor 'w' of type Q8_0 rows of 33 elements, not a multiple of its block of 32."


def test_a_quantised_tensor_is_sized_by_its_blocks(tmp_path):
    path = craft(tmp_path / "model.gguf", tensors=(tensor_info("w", dims=(512, 3), ggml_type=12),), data=2 * 3 * 144)
    assert read_header(path).tensors[0].nbytes == 2 * 3 * 144  # Q4_K: 144 bytes per 256 elements


def test_a_tensor_name_longer_than_ggml_allows_is_refused(tmp_path):
    assert read_header(craft(tmp_path / "ok.gguf", tensors=(tensor_info("n" * 63),))).tensors[0].name == "n" * 63
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info("n" * 64),)))
    assert message.startswith("model.gguf has a tensor name of 64 bytes at byte ")
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info(b"w\xfe"),)))
    assert message.startswith("model.gguf has a tensor name at byte ")
    assert message.endswith(" that is not UTF-8 text (b'w\\xfe').")


def test_overlapping_tensors_are_refused(tmp_path):
    tensors = (tensor_info("a", dims=(8,), offset=0), tensor_info("b", dims=(4,), offset=32))
    assert len(read_header(craft(tmp_path / "ok.gguf", tensors=tensors, data=64)).tensors) == 2
    tensors = (tensor_info("b", dims=(4,), offset=32), tensor_info("a", dims=(16,), offset=0))  # 64 bytes from 0
    message = refused(craft(tmp_path / "model.gguf", tensors=tensors, data=64))
    assert message.startswith("model.gguf has tensors 'a' and 'b' whose data overlap (bytes ")


def test_a_misaligned_tensor_is_refused(tmp_path):
    message = refused(craft(tmp_path / "model.gguf", tensors=(tensor_info("w", offset=8),), data=64))
    assert message == "model.gguf puts tensor 'w' at offset 8, which is not a multiple of the file's alignment (32)."


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (u32_kv("general.alignment", 0), "0 (uint32)"),
        (u32_kv("general.alignment", 48), "48 (uint32)"),
        (u32_kv("general.alignment", 2**21), "2097152 (uint32)"),
        (kv("general.alignment", UINT64, struct.pack("<Q", 32)), "32 (uint64)"),
        (str_kv("general.alignment", "32"), "'32' (string)"),
    ],
    ids=["zero", "not-a-power-of-two", "too-large", "uint64", "string"],
)
def test_a_bad_alignment_is_refused(tmp_path, value, shown):
    message = refused(craft(tmp_path / "model.gguf", kvs=(ARCH, value)))
    assert message == (
        f"model.gguf has general.alignment {shown}, but it must be a uint32 power of two from 1 to 1,048,576."
    )


def test_a_good_alignment_is_used(tmp_path):
    path = craft(tmp_path / "model.gguf", kvs=(ARCH, u32_kv("general.alignment", 64)), alignment=64)
    assert read_header(path).data_offset % 64 == 0


@pytest.mark.parametrize("arch", [None, u32_kv("general.architecture", 1), str_kv("general.architecture", "")])
def test_a_file_without_an_architecture_is_refused(tmp_path, arch):
    kvs = () if arch is None else (arch,)
    message = refused(craft(tmp_path / "model.gguf", kvs=kvs))
    assert message == "model.gguf names no architecture (general.architecture)."


def test_a_chat_template_too_long_or_not_text_is_refused(tmp_path):
    longest = str_kv("tokenizer.chat_template", "x" * MAX_CHAT_TEMPLATE_CHARS)
    assert read_header(craft(tmp_path / "ok.gguf", kvs=(ARCH, longest))).chat_template == "x" * MAX_CHAT_TEMPLATE_CHARS
    too_long = str_kv("tokenizer.chat_template", "x" * (MAX_CHAT_TEMPLATE_CHARS + 1))
    message = refused(craft(tmp_path / "model.gguf", kvs=(ARCH, too_long)))
    assert (
        message == "The chat template in model.gguf is 100,001 characters long, more than the 100,000 the studio reads."
    )
    number = u32_kv("tokenizer.chat_template", 1)
    assert refused(craft(tmp_path / "model.gguf", kvs=(ARCH, number))) == (
        "model.gguf has a tokenizer.chat_template that is not text."
    )


def test_a_blank_chat_template_is_none(tmp_path):
    path = craft(tmp_path / "model.gguf", kvs=(ARCH, str_kv("tokenizer.chat_template", "  \n")))
    assert read_header(path).chat_template is None


def test_a_header_that_takes_too_long_is_refused(tmp_path):
    assert refused(craft(tmp_path / "model.gguf"), time_limit_s=-1) == (
        "model.gguf took more than -1 seconds to check (its header is too large or too slow to read), so it was refused."
    )


def test_a_long_array_keeps_to_the_time_limit(tmp_path, monkeypatch):
    # A second passes at each look at the clock: the reader starts at 0 and looks at 1 and 2 for
    # the two keys, at 3 for the tokens' first string and at 4 some thousands of strings later.
    clock = iter(range(10**6))
    monkeypatch.setattr(gguf_file, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    tokens = kv("tokenizer.ggml.tokens", ARRAY, array(STRING, 20_000, gstr("t") * 20_000))
    message = refused(craft(tmp_path / "model.gguf", kvs=(ARCH, tokens)), time_limit_s=3.5)
    assert message.startswith("model.gguf took more than 3.5 seconds to check")
    assert next(clock) == 5  # refused at the fourth look, not after walking every string


def test_something_other_than_a_file_is_refused(tmp_path):
    (tmp_path / "folder.gguf").mkdir()
    assert "folder.gguf cannot be read (it is a folder, not a regular file)" in refused(tmp_path / "folder.gguf")
    os.mkfifo(tmp_path / "pipe.gguf")
    assert "pipe.gguf cannot be read (it is a named pipe, not a regular file)" in refused(tmp_path / "pipe.gguf")
    assert refused(tmp_path / "missing.gguf") == "missing.gguf cannot be read (No such file or directory)."


def test_a_read_error_is_one_sentence(tmp_path, monkeypatch):
    class Failing(io.FileIO):
        def read(self, *args):
            raise OSError(5, "Input/output error")

    path = craft(tmp_path / "model.gguf")
    monkeypatch.setattr(gguf_file.untrusted, "open_regular", lambda *args: Failing(path))
    assert refused(path) == (
        "model.gguf cannot be read (Input/output error): check the file's permissions and copy it again."
    )


def test_a_file_name_with_control_characters_is_shown_safely(tmp_path):
    path = craft(tmp_path / "evil\x1b[2J.gguf", magic=b"NOPE")
    assert refused(path).startswith("evil\ufffd[2J.gguf is not a GGUF file")
