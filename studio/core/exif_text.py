"""The generation settings other tools write into JPEG and WebP files, as text, read in pure Python.

AUTOMATIC1111, Forge, SD.Next, ComfyUI's saver nodes, SwarmUI and others write the same infotext
they put in a PNG's "parameters" chunk into EXIF: the Exif IFD's UserComment (tag 0x9286), whose
first 8 bytes name its encoding ("UNICODE\\0" is UTF-16, big-endian as piexif writes it, though
some tools write little-endian; "ASCII\\0\\0\\0"; eight zero bytes: undefined). Some put it in the
first IFD's ImageDescription (0x010E) or Windows' XPComment (0x9C9C, UTF-16LE) instead, or in a
JPEG comment segment. `read_exif_text` returns them as {key: text} the way png.read_png_text
returns a PNG's text chunks, so the same readers take it from there: UserComment as "parameters".

Only the container's structure is walked (JPEG segments up to the image data, WebP's RIFF chunks)
and the EXIF's TIFF structure: every offset and count is checked against the bytes there, the
number of entries read is capped, and nothing is decoded but text. No pixel decoder sees the file."""

from __future__ import annotations

import struct
from typing import Optional

from studio.core.errors import MetadataError

JPEG_START = b"\xff\xd8"
MAX_SEGMENTS = 1000  # a JPEG's segments before its image data: real files have a dozen
MAX_IFD_ENTRIES = 1000  # entries per EXIF directory: real ones have a few dozen
MAX_TEXT_BYTES = 8 * 1024 * 1024  # one text value; an infotext is a few kilobytes

USER_COMMENT, IMAGE_DESCRIPTION, XP_COMMENT, EXIF_IFD = 0x9286, 0x010E, 0x9C9C, 0x8769
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


def is_jpeg(data: bytes) -> bool:
    return data[:2] == JPEG_START


def is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def read_exif_text(data: bytes, name: str = "The image") -> dict[str, str]:
    """A JPEG's or WebP's settings text as {key: text} ("parameters" for the UserComment, and
    "ImageDescription", "XPComment", "Comment" where present); MetadataError (one sentence) for
    a file whose structure is broken."""
    if is_jpeg(data):
        exif, comments = _jpeg_segments(data, name)
    elif is_webp(data):
        exif, comments = _webp_chunks(data, name), []
    else:
        raise MetadataError(f"{name} is not a PNG, JPEG or WebP file.")
    texts: dict[str, str] = {}
    if exif is not None:
        texts.update(_tiff_texts(exif, name))
    if comments and "Comment" not in texts:
        texts["Comment"] = comments[0]
    return texts


def _jpeg_segments(data: bytes, name: str) -> tuple[Optional[bytes], list[str]]:
    """The EXIF block (the TIFF bytes after "Exif\\0\\0") and the comment segments' texts, from the
    segments before the image data."""
    pos, exif, comments = 2, None, []
    for _ in range(MAX_SEGMENTS):
        if pos + 2 > len(data):
            raise MetadataError(f"{name} is cut short (it ends inside its JPEG header).")
        if data[pos] != 0xFF:
            raise MetadataError(f"{name} is damaged (its JPEG segments do not follow one another).")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill bytes between segments
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata
            return exif, comments
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        end = pos + 2 + (struct.unpack(">H", data[pos + 2 : pos + 4])[0] if pos + 4 <= len(data) else 0)
        if end < pos + 4 or end > len(data):
            raise MetadataError(f"{name} is cut short (a JPEG segment runs past the end of the file).")
        body = data[pos + 4 : end]
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00" and exif is None:
            exif = body[6:]
        elif marker == 0xFE:
            comments.append(_text(body))
        pos = end
    raise MetadataError(
        f"{name} has more than {MAX_SEGMENTS} JPEG segments before its image, which no camera or tool writes."
    )


def _webp_chunks(data: bytes, name: str) -> Optional[bytes]:
    """The EXIF chunk of a WebP's RIFF container (without an "Exif\\0\\0" prefix some tools add)."""
    (size,) = struct.unpack("<I", data[4:8])
    end = min(len(data), 8 + size)
    pos = 12
    while pos + 8 <= end:
        kind, length = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body_end = pos + 8 + length
        if body_end > len(data):
            raise MetadataError(f"{name} is cut short (a WebP chunk runs past the end of the file).")
        if kind == b"EXIF":
            body = data[pos + 8 : body_end]
            return body[6:] if body[:6] == b"Exif\x00\x00" else body
        pos = body_end + (length & 1)  # chunks are padded to an even size
    return None


def _tiff_texts(tiff: bytes, name: str) -> dict[str, str]:
    """UserComment (as "parameters"), ImageDescription and XPComment from an EXIF TIFF block."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        raise MetadataError(f"{name} has an EXIF block that is not TIFF data.")
    (first,) = struct.unpack(order + "I", tiff[4:8])
    texts: dict[str, str] = {}
    ifd0 = _entries(tiff, first, order, name)
    if IMAGE_DESCRIPTION in ifd0:
        texts["ImageDescription"] = _text(ifd0[IMAGE_DESCRIPTION])
    if XP_COMMENT in ifd0:
        texts["XPComment"] = ifd0[XP_COMMENT].decode("utf-16-le", "replace").rstrip("\x00")
    if EXIF_IFD in ifd0 and len(ifd0[EXIF_IFD]) >= 4:
        (offset,) = struct.unpack(order + "I", ifd0[EXIF_IFD][:4])
        exif = _entries(tiff, offset, order, name)
        if USER_COMMENT in exif:
            comment = user_comment(exif[USER_COMMENT])
            if comment:
                texts["parameters"] = comment
    return {key: text for key, text in texts.items() if text.strip()}


def _entries(tiff: bytes, offset: int, order: str, name: str) -> dict[int, bytes]:
    """One IFD's entries as {tag: value bytes}, each bounded by the block."""
    if offset + 2 > len(tiff):
        raise MetadataError(f"{name} has an EXIF directory past the end of its EXIF block.")
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    if count > MAX_IFD_ENTRIES:
        raise MetadataError(f"{name} has an EXIF directory of {count:,} entries, more than any tool writes.")
    entries: dict[int, bytes] = {}
    for i in range(count):
        at = offset + 2 + 12 * i
        if at + 12 > len(tiff):
            raise MetadataError(f"{name} has an EXIF directory that runs past the end of its EXIF block.")
        tag, kind, number = struct.unpack(order + "HHI", tiff[at : at + 8])
        size = TYPE_SIZES.get(kind, 1) * number
        if size > MAX_TEXT_BYTES:
            continue  # nothing the studio reads is this large
        if size <= 4:
            value = tiff[at + 8 : at + 8 + size]
        else:
            (where,) = struct.unpack(order + "I", tiff[at + 8 : at + 12])
            if where + size > len(tiff):
                continue  # a value past the block: left out, the rest still read
            value = tiff[where : where + size]
        entries.setdefault(tag, value)
    return entries


def user_comment(value: bytes) -> str:
    """EXIF UserComment text: an 8-byte encoding name, then the text in it."""
    head, body = value[:8], value[8:]
    if head.startswith(b"UNICODE"):
        return _utf16(body).rstrip("\x00")
    if head.startswith(b"ASCII") or head == b"\x00" * 8:
        return _text(body)
    return _text(value)  # no encoding name: some tools write the text bare


def _utf16(body: bytes) -> str:
    """UTF-16 of either byte order: a BOM says which; otherwise the order whose high bytes are the
    zeros (infotexts are mostly ASCII) wins, big-endian (piexif's, A1111's) on a tie."""
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return body[2:].decode("utf-16-be" if body[:2] == b"\xfe\xff" else "utf-16-le", "replace")
    even_zeros = body[0::2].count(0)
    odd_zeros = body[1::2].count(0)
    return body.decode("utf-16-le" if odd_zeros > even_zeros else "utf-16-be", "replace")


def _text(value: bytes) -> str:
    """Text that is UTF-8 when it decodes as such (newer tools), else Latin-1 (older ones)."""
    value = value.rstrip(b"\x00")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
