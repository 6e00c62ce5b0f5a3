"""Settings text in JPEG and WebP files, as A1111, Forge, SD.Next, ComfyUI savers and SwarmUI write
it (EXIF UserComment, ImageDescription, JPEG comments), read without decoding any pixel; broken
files give one sentence."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import MetadataError
from studio.core.exif_text import read_exif_text, user_comment
from studio.core.infotext import read_settings

INFOTEXT = (
    "a lighthouse at dusk, テスト\nNegative prompt: fog\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 347382230306562, Size: 64x48, "
    "Model: base"
)


def image_bytes(fmt: str, comment: bytes = b"", description: str = "", jpeg_comment: bytes = b"") -> bytes:
    exif = Image.Exif()
    if comment:
        exif.get_ifd(0x8769)[0x9286] = comment
    if description:
        exif[0x010E] = description
    out = io.BytesIO()
    options = {"exif": exif.tobytes()} if (comment or description) else {}
    if jpeg_comment:
        options["comment"] = jpeg_comment
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
def test_a_unicode_user_comment_reads_as_the_infotext(fmt, encoding):
    data = image_bytes(fmt, b"UNICODE\x00" + INFOTEXT.encode(encoding))
    assert read_exif_text(data)["parameters"] == INFOTEXT
    s = read_settings(data)
    assert (s.source, s.prompt, s.negative_prompt) == ("AUTOMATIC1111", "a lighthouse at dusk, テスト", "fog")
    assert (s.steps, s.guidance_scale, s.seed, s.width, s.height) == (20, 6.0, 347382230306562, 64, 48)


def test_ascii_and_bare_user_comments_and_other_places_tools_write():
    assert user_comment(b"ASCII\x00\x00\x00Steps: 20") == "Steps: 20"
    assert user_comment(b"\x00" * 8 + b"Steps: 20") == "Steps: 20"
    texts = read_exif_text(image_bytes("JPEG", description="from a description"))
    assert texts == {"ImageDescription": "from a description"}
    texts = read_exif_text(image_bytes("JPEG", jpeg_comment=INFOTEXT.encode("utf-8")))
    assert texts == {"Comment": INFOTEXT}


def test_a_file_without_settings_says_so_and_pixels_are_never_decoded(monkeypatch):
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("a pixel decoder was asked"))
    with pytest.raises(MetadataError, match="holds no generation parameters"):
        read_settings(image_bytes("JPEG"))


def test_broken_files_are_one_sentence():
    data = image_bytes("JPEG", b"UNICODE\x00" + INFOTEXT.encode("utf-16-be"))
    with pytest.raises(MetadataError, match=r"^The image is cut short \(a JPEG segment runs past the end"):
        read_exif_text(data[:40])
    with pytest.raises(MetadataError, match=r"^The image is not a PNG, JPEG or WebP file\.$"):
        read_settings(b"GIF89a" + bytes(40))
    webp = image_bytes("WEBP", b"UNICODE\x00" + INFOTEXT.encode("utf-16-be"))
    exif_at = webp.index(b"EXIF")
    cut = webp[: exif_at + 8] + b"\x00" * 4  # the EXIF chunk claims more than is there
    with pytest.raises(MetadataError, match="a WebP chunk runs past the end"):
        read_exif_text(cut)
    # An EXIF directory claiming a million entries is refused before they are read.
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 60_000)
    jpeg = b"\xff\xd8\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff + b"\xff\xd9"
    with pytest.raises(MetadataError, match="60,000 entries"):
        read_exif_text(jpeg)
