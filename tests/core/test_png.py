"""PNG text chunks: our writer, and a reader that must survive anything a file can hold."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.core.errors import ErrorKind, MetadataError
from studio.core.png import PNG_SIGNATURE, encode_png, read_image_file, read_png_text, write_png

IHDR = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(*chunks: bytes) -> bytes:
    """A 1x1 PNG with the given chunks between IHDR and IDAT."""
    idat = chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
    return PNG_SIGNATURE + chunk(b"IHDR", IHDR) + b"".join(chunks) + idat + chunk(b"IEND", b"")


def text(key: str, value: str) -> bytes:
    return chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))


def ztext(key: str, value: bytes) -> bytes:
    return chunk(b"zTXt", key.encode("latin-1") + b"\0\0" + zlib.compress(value))


def itext(key: str, value: str, compressed: bool = False) -> bytes:
    raw = value.encode("utf-8")
    body = zlib.compress(raw) if compressed else raw
    return chunk(b"iTXt", key.encode("latin-1") + b"\0" + bytes([compressed, 0]) + b"en\0Key\0" + body)


def test_reads_text_ztxt_and_itxt_chunks():
    data = png(
        text("parameters", "a café\nSteps: 20"),
        ztext("zipped", "grüße".encode("latin-1")),
        itext("plain", "猫 and 🐱"),
        itext("packed", "line one\nline two ✓", compressed=True),
    )
    assert read_png_text(data) == {
        "parameters": "a café\nSteps: 20",  # newlines kept, unlike QImageReader.text()
        "zipped": "grüße",
        "plain": "猫 and 🐱",
        "packed": "line one\nline two ✓",
    }


def test_first_key_wins_and_chunks_after_the_pixels_are_read():
    data = png(text("parameters", "first"), text("parameters", "second"))
    late = data[:-12] + text("late", "after IDAT") + data[-12:]
    assert read_png_text(late) == {"parameters": "first", "late": "after IDAT"}


def test_damaged_or_malformed_text_chunks_are_skipped():
    data = png(
        chunk(b"tEXt", b"bad\0crc", crc=1234),
        chunk(b"tEXt", b"no separator"),
        chunk(b"zTXt", b"method\0\x07" + zlib.compress(b"x")),  # unknown compression method
        chunk(b"zTXt", b"broken\0\0not zlib at all"),
        chunk(b"zTXt", b"cut\0\0" + zlib.compress(b"hello world" * 50)[:-6]),
        chunk(b"iTXt", b"flag\0\x05\0\0\0x"),
        text("good", "kept"),
    )
    assert read_png_text(data) == {"good": "kept"}


def test_invalid_utf8_in_itxt_is_replaced_not_raised():
    data = png(chunk(b"iTXt", b"k\0\0\0\0\0ok \xff\xfe end"))
    assert read_png_text(data) == {"k": "ok \ufffd\ufffd end"}


@pytest.mark.parametrize(
    "data, words",
    [
        (b"GIF89a not a png at all", "is not a PNG file"),
        (b"", "is not a PNG file"),
        (PNG_SIGNATURE, "is cut short"),
        (png(text("parameters", "x"))[:-20], "is cut short"),  # IDAT cut in the middle
        (png()[:-12], "is cut short"),  # no IEND
        (PNG_SIGNATURE + chunk(b"tEXt", b"a\0b") + chunk(b"IEND", b""), "is damaged"),  # IHDR not first
        (PNG_SIGNATURE + chunk(b"IHDR", IHDR) + b"\xff\xff\xff\xffIDAT", "is damaged"),  # length > 2**31
        (PNG_SIGNATURE + chunk(b"IHDR", IHDR) + chunk(b"1234", b""), "is damaged"),  # chunk type not letters
    ],
)
def test_bad_pngs_raise_one_sentence_naming_the_file(data, words):
    with pytest.raises(MetadataError) as info:
        read_png_text(data, "x.png")
    message = info.value.message
    assert message.startswith("x.png ") and words in message and message.endswith(".")
    assert "\n" not in message and info.value.kind is ErrorKind.BAD_INPUT


def _zeros_bomb(megabytes: int) -> bytes:
    """zlib stream of `megabytes` MB of zeros, built a megabyte at a time (about 100 KB)."""
    packer = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _zeros_bomb(100)


@pytest.mark.parametrize("kind", ["zTXt", "iTXt"])
def test_decompression_bomb_is_refused_quickly_and_small(bomb, kind):
    header = b"bomb\0\0" if kind == "zTXt" else b"bomb\0\x01\0\0\0"
    data = png(chunk(kind.encode(), header + bomb))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(MetadataError, match="more than 1 MB"):
            read_png_text(data, "bomb.png")
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 8 * 1024 * 1024  # the 100 MB is never unpacked


def test_a_text_of_exactly_the_cap_is_read():
    value = b"a" * (1024 * 1024)
    assert read_png_text(png(ztext("big", value))) == {"big": value.decode()}


def test_total_text_is_capped():
    one_mb = b"b" * (1024 * 1024)
    data = png(*(ztext(f"k{i}", one_mb) for i in range(9)))
    with pytest.raises(MetadataError, match="more than 8 MB"):
        read_png_text(data)
    # Duplicates are skipped before unpacking, so they do not count.
    assert len(read_png_text(png(*(ztext("same", one_mb) for _ in range(20))))["same"]) == len(one_mb)


def test_the_number_of_chunks_scanned_is_capped(monkeypatch):
    import studio.core.png as png_module

    monkeypatch.setattr(png_module, "MAX_CHUNKS", 12)
    data = png(text("early", "read"), *(chunk(b"abcd", b"") for _ in range(20)), text("late", "never reached"))
    assert read_png_text(data) == {"early": "read"}


def test_read_image_file_refuses_large_and_missing_files(tmp_path):
    big = tmp_path / "huge.png"
    with open(big, "wb") as f:
        f.write(png())
        f.truncate(64 * 1024 * 1024 + 1)  # sparse: no 64 MB written
    with pytest.raises(MetadataError, match=r"^huge\.png is larger than 64 MB"):
        read_image_file(big)
    with pytest.raises(MetadataError, match=r"^gone\.png could not be read"):
        read_image_file(tmp_path / "gone.png")
    ok = tmp_path / "ok.png"
    ok.write_bytes(png(text("a", "b")))
    assert read_image_file(ok) == {"a": "b"}


def test_encode_png_round_trips_through_the_reader():
    data = encode_png(np.zeros((2, 3, 3), np.uint8), {"latin": "é", "wide": "€"})
    assert read_png_text(data) == {"latin": "é", "wide": "€"}
    assert b"tEXtlatin" in data and b"iTXtwide" in data  # Latin-1 as tEXt, the rest as UTF-8 iTXt


def test_write_png_puts_the_encoded_image_on_disk(tmp_path):
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    write_png(tmp_path / "a.png", rgb, {"k": "v"})
    assert (tmp_path / "a.png").read_bytes() == encode_png(rgb, {"k": "v"})
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left beside it


# --- anything at all ----------------------------------------------------------------------------


def _only_metadata_errors(data: bytes) -> None:
    try:
        result = read_png_text(data)
    except MetadataError as exc:
        assert exc.message.endswith(".") and "\n" not in exc.message
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_metadata_error(data):
    _only_metadata_errors(data)
    _only_metadata_errors(PNG_SIGNATURE + data)
    _only_metadata_errors(PNG_SIGNATURE + chunk(b"IHDR", IHDR) + data)


_payload = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=100).map(zlib.compress),
    st.tuples(st.binary(max_size=20), st.binary(max_size=3), st.binary(max_size=100)).map(
        lambda t: t[0] + b"\0" + t[1] + zlib.compress(t[2])
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IDAT", b"abcd"]), _payload, st.booleans()),
        max_size=6,
    ),
    st.integers(0, 40),
)
def test_random_chunk_payloads_only_raise_metadata_error(chunks, cut):
    data = png(*(chunk(kind, body, None if good_crc else 0) for kind, body, good_crc in chunks))
    _only_metadata_errors(data)
    _only_metadata_errors(data[: len(data) - cut])
