"""PNG files with text chunks, in the standard library and numpy alone (core stays free of PIL).

A chunk reader and writer that knows nothing of jobs: which chunks an image of the studio
carries, and what they say, is core/image_metadata.py's (writing) and core/infotext.py's (reading).

Reading is done here too rather than through Qt: QImageReader.text() joins lines, and images come
from anywhere, so the reader checks every length against the buffer and caps what it unpacks."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from studio.core.atomic import write_atomic
from studio.core.errors import MetadataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MAX_FILE_BYTES = 64 * 1024 * 1024  # read_image_file refuses larger files before reading them
MAX_TEXT_BYTES = 1024 * 1024  # one text chunk, after unpacking (a larger plain one is skipped)
MAX_TOTAL_TEXT = 8 * 1024 * 1024  # all text chunks together
MAX_CHUNKS = 100_000  # enough for a 64 MB file cut into small IDATs; bounds the scan otherwise
_TEXT_KINDS = (b"tEXt", b"zTXt", b"iTXt")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _text_chunk(key: str, value: str) -> bytes:
    try:  # tEXt when the value is Latin-1, as A1111 writes it; iTXt (UTF-8) otherwise
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def encode_png(rgb: np.ndarray, text: Mapping[str, str] = {}) -> bytes:
    """uint8 H x W x 3 -> PNG bytes, with the given text chunks before the pixels."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)  # filter 0 per row
    out = [PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))]
    out += [_text_chunk(k, v) for k, v in text.items()]
    out += [_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)), _chunk(b"IEND", b"")]
    return b"".join(out)


def write_png(path: Path, rgb: np.ndarray, text: Mapping[str, str] = {}) -> None:
    """Write `encode_png(rgb, text)` to `path` atomically: a reader never sees half an image."""
    write_atomic(path, encode_png(rgb, text))


# --- reading -----------------------------------------------------------------------------------


def _inflate(name: str, packed: bytes) -> Optional[bytes]:
    """Unpack one zlib stream, never holding more than MAX_TEXT_BYTES + 1 of its output.

    None when the stream is damaged (that chunk is skipped); MetadataError for a bomb."""
    unpacker = zlib.decompressobj()
    try:
        out = unpacker.decompress(packed, MAX_TEXT_BYTES + 1)
    except zlib.error:
        return None
    if len(out) > MAX_TEXT_BYTES:
        raise MetadataError(f"{name} has a text chunk that unpacks to more than 1 MB, so it is not read.")
    return out if unpacker.eof else None  # a stream cut short is damaged, not a shorter text


def _parse_text_chunk(name: str, kind: bytes, body: bytes) -> Optional[tuple[str, str]]:
    """(key, text) of a tEXt, zTXt or iTXt body, or None when the chunk is malformed, or its plain
    text is over MAX_TEXT_BYTES: no settings are that long, and parsing megabytes of hostile
    infotext or graph would take seconds."""
    key, sep, rest = body.partition(b"\0")
    if not sep or not 1 <= len(key) <= 79:
        return None
    if kind == b"tEXt":
        return None if len(rest) > MAX_TEXT_BYTES else (key.decode("latin-1"), _latin_or_utf8(rest))
    if kind == b"zTXt":
        if rest[:1] != b"\0":  # compression method 0 (zlib) is the only one defined
            return None
        raw = _inflate(name, rest[1:])
        return None if raw is None else (key.decode("latin-1"), _latin_or_utf8(raw))
    # iTXt: flag, method, language\0, translated keyword\0, UTF-8 text
    if len(rest) < 2 or rest[0] not in (0, 1) or rest[1] != 0:
        return None
    compressed = rest[0] == 1
    parts = rest[2:].split(b"\0", 2)
    if len(parts) != 3:
        return None
    raw = _inflate(name, parts[2]) if compressed else parts[2]
    if raw is None or len(raw) > MAX_TEXT_BYTES:
        return None
    return key.decode("latin-1"), raw.decode("utf-8", errors="replace")


def read_png_text(data: bytes, name: str = "The image") -> dict[str, str]:
    """Every text chunk of a PNG as {key: text}; the first of duplicate keys wins.

    `name` is how error messages refer to the data (a file name). Raises MetadataError for
    anything that is not a whole PNG, or whose text would unpack past the caps."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if bytes(data[:8]) != PNG_SIGNATURE:
        raise MetadataError(f"{name} is not a PNG file.")
    texts: dict[str, str] = {}
    total = 0
    pos = 8
    for index in range(MAX_CHUNKS):
        if pos + 8 > len(data):
            raise MetadataError(f"{name} is cut short (it ends before its last chunk).")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if length > 0x7FFFFFFF or not kind.isalpha() or (index == 0 and kind != b"IHDR"):
            raise MetadataError(f"{name} is damaged (its chunk structure is not valid PNG).")
        end = pos + 12 + length
        if end > len(data):
            raise MetadataError(f"{name} is cut short (a chunk runs past the end of the file).")
        if kind == b"IEND":
            return texts
        if kind in _TEXT_KINDS:
            body = bytes(data[pos + 8 : pos + 8 + length])
            (crc,) = struct.unpack(">I", data[end - 4 : end])
            # A chunk whose checksum fails is damaged: skip it rather than trust its lengths.
            if zlib.crc32(kind + body) & 0xFFFFFFFF == crc:
                key = body.partition(b"\0")[0].decode("latin-1")
                if key not in texts:  # first wins; also spares unpacking a duplicate
                    parsed = _parse_text_chunk(name, kind, body)
                    if parsed is not None:
                        total += len(parsed[1])
                        if total > MAX_TOTAL_TEXT:
                            raise MetadataError(f"{name} holds more than 8 MB of text, so it is not read.")
                        texts[parsed[0]] = parsed[1]
        pos = end
    return texts  # chunk cap reached: what was found so far


def _latin_or_utf8(raw: bytes) -> str:
    """tEXt and zTXt are Latin-1 by the standard, but several tools (Stability Matrix, ComfyUI
    nodes) write UTF-8 there, and A1111's newer readers decode it so: UTF-8 when the bytes are
    valid UTF-8, Latin-1 otherwise (Latin-1 text with accents is almost never valid UTF-8)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_image_text(data: bytes, name: str = "The image") -> dict[str, str]:
    """The settings text of a PNG (its text chunks), or of a JPEG or WebP (their EXIF text, which
    exif_text reads): what other tools write into each."""
    from studio.core import exif_text

    if bytes(data[:8]) == PNG_SIGNATURE:
        return read_png_text(data, name)
    return exif_text.read_exif_text(data, name)  # says so when it is none of the three


def read_image_file(path: Path) -> dict[str, str]:
    """The text chunks of a PNG file, or the EXIF text of a JPEG or WebP (read_image_text);
    MetadataError (one sentence) if it cannot be read."""
    path = Path(path)
    too_large = MetadataError(f"{path.name} is larger than 64 MB, too large to read its settings from.")
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                raise too_large
            # Read one byte past the cap too: the file may have grown since fstat.
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise MetadataError(f"{path.name} could not be read ({exc.strerror or exc}).") from None
    if len(data) > MAX_FILE_BYTES:
        raise too_large
    return read_image_text(data, path.name)
