"""Reading SWORD zText Bible modules (as packaged in Debian's sword-text-*), without libsword.

A zText module keeps each testament in three files: `.bzs` (one 12-byte entry per compressed
block: uint32 LE offset, compressed size, uncompressed size), `.bzv` (one entry per verse slot:
uint32 block, uint32 offset inside the uncompressed block, uint16 size; zText4 widens the size to
uint32) and `.bzz` (the compressed blocks). The verse slots follow the module's versification,
including empty slots for book and chapter introductions, so rather than carry versification
tables we take the structure from the OSIS markup itself: modules made by osis2mod keep the
source's `<div type="x-p">` paragraph milestones, `<chapter>` and `<div type="book">` markers and
`<lg>` stanza markers, which is exactly what a prose corpus needs. Notes, titles, speaker labels and
the front matter (preface, book introductions, glossary) are dropped; the words are kept.
"""

from __future__ import annotations

import bz2
import html
import lzma
import re
import struct
import unicodedata
import zlib
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["read_conf", "find_module", "read_module", "read_ztext", "verse_entries", "osis_paragraphs"]

# Elements whose whole content is dropped: apparatus and headings, not running text.
_DROP_CONTENT = {"note", "title", "speaker"}
# Division types that are front/back matter written by the editors rather than the text.
_FRONT_MATTER = {"front", "introduction", "glossary", "x-introduction", "preface", "colophon"}
# Markers that end a paragraph wherever they appear (start or end milestone, or container edge).
_BREAK_ELEMENTS = {"chapter", "lg", "p"}
_BREAK_DIV_TYPES = {"x-p", "paragraph", "book", "bookGroup", "chapter", "section", "majorSection", "subSection"}

_TOKEN = re.compile(r"<[^>]*>|[^<]+")
_TAG_NAME = re.compile(r"</?\s*([\w:.-]+)")
_ATTR = re.compile(r'([\w:.-]+)\s*=\s*"([^"]*)"')
_GAP = "\x00"  # where a dropped note or title sat; see _SILENT_GAP


def read_conf(path: Path) -> dict[str, str]:
    """A SWORD module .conf as a dict (the last value wins for repeated keys; `[name]` -> `_name`)."""
    conf: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            conf["_name"] = line[1:-1]
        elif "=" in line:
            key, value = line.split("=", 1)
            conf[key.strip()] = value.strip()
    return conf


def find_module(tree: Path, name: str) -> tuple[Path, dict[str, str]]:
    """The data folder and .conf of module `name` in an unpacked package (or a SWORD library root)."""
    for library in (tree / "usr" / "share" / "sword", tree):
        confs = [library / "mods.d" / f"{name.lower()}.conf", library / "mods.d" / f"{name}.conf"]
        for conf_path in confs:
            if conf_path.is_file():
                conf = read_conf(conf_path)
                data_path = conf.get("DataPath", "").lstrip("./")
                return library / data_path, conf
    raise FileNotFoundError(f"No SWORD module named {name} (mods.d/{name.lower()}.conf) was found under {tree}.")


def _decompress(data: bytes, compress: str) -> bytes:
    kind = compress.upper()
    if kind == "ZIP":
        return zlib.decompress(data)
    if kind == "BZIP2":
        return bz2.decompress(data)
    if kind == "XZ":
        return lzma.decompress(data)
    raise ValueError(f"SWORD compression type {compress!r} is not supported (only ZIP, BZIP2 and XZ).")


def verse_entries(
    module_dir: Path, *, compress: str = "ZIP", ztext4: bool = False, encoding: str = "utf-8"
) -> Iterator[str]:
    """Every verse slot's raw markup, Old Testament first, in versification order (empty slots too)."""
    entry = struct.Struct("<III" if ztext4 else "<IIH")
    for testament in ("ot", "nt"):
        paths = [module_dir / f"{testament}.{ext}" for ext in ("bzs", "bzv", "bzz")]
        if not all(p.is_file() for p in paths):
            continue
        blocks_index, verses_index, blob = (p.read_bytes() for p in paths)
        if len(blocks_index) % 12 or len(verses_index) % entry.size:
            raise ValueError(
                f"The {testament} index files in {module_dir} do not have whole 12/{entry.size}-byte entries."
            )
        blocks: dict[int, bytes] = {}
        for block, offset, size in entry.iter_unpack(verses_index):
            if size == 0:
                yield ""
                continue
            if block not in blocks:
                blocks.clear()  # verse slots run through the blocks in order; keep one in memory
                start, length, _ = struct.unpack_from("<III", blocks_index, block * 12)
                blocks[block] = _decompress(blob[start : start + length], compress)
            yield blocks[block][offset : offset + size].decode(encoding, errors="replace")


def _tag(token: str) -> tuple[str, bool, bool, dict[str, str]]:
    match = _TAG_NAME.match(token)
    name = match.group(1) if match else ""
    return name, token.startswith("</"), token.endswith("/>"), dict(_ATTR.findall(token))


def osis_paragraphs(entries: Iterable[str], *, max_verses: int = 30) -> list[str]:
    """Plain-text paragraphs from OSIS verse markup, broken at the markup's paragraph markers.

    A run of more than `max_verses` verses without any marker is broken at a verse boundary anyway,
    so a module without paragraph markup still yields paragraphs of a sensible size."""
    paragraphs: list[str] = []
    pieces: list[str] = []
    verses = 0
    drop_name, drop_depth = "", 0  # inside a note/title/...: which element, how deeply nested
    skip_until: str | None = None  # inside front matter: the milestone eID that ends it
    skip_div_depth = 0  # inside front matter given as a container <div>...</div>

    def flush() -> None:
        nonlocal verses
        text = _clean("".join(pieces))
        if text:
            paragraphs.append(text)
        pieces.clear()
        verses = 0

    for entry in entries:
        if not entry:
            continue
        for token in _TOKEN.findall(entry):
            if not token.startswith("<"):
                if not drop_depth and skip_until is None and not skip_div_depth:
                    pieces.append(token)
                continue
            name, closing, empty, attrs = _tag(token)
            if drop_depth:
                if name == drop_name and not empty:
                    drop_depth += -1 if closing else 1
                continue
            if skip_until is not None:
                if name == "div" and attrs.get("eID") == skip_until:
                    skip_until = None
                continue
            if skip_div_depth:
                if name == "div" and not empty:
                    skip_div_depth += -1 if closing else 1
                continue
            kind = attrs.get("type", "")
            if name == "div" and kind in _FRONT_MATTER and not closing:
                flush()
                if empty and "sID" in attrs:
                    skip_until = attrs["sID"]
                elif not empty:
                    skip_div_depth = 1
                continue
            if name in _DROP_CONTENT and not empty and not closing:
                drop_name, drop_depth = name, 1
                pieces.append(_GAP)
                continue
            if (
                name in _BREAK_ELEMENTS
                or (name == "div" and kind in _BREAK_DIV_TYPES)
                or (name == "lb" and kind == "x-p")
            ):
                flush()
            elif name in ("l", "lb", "item", "list"):
                pieces.append(" ")
            elif name == "q" and closing:
                pieces.append(_GAP)  # the source sometimes runs the next sentence into a quotation's end
        pieces.append(" ")  # verse boundary
        verses += 1
        if verses >= max_verses:
            flush()
    flush()
    return paragraphs


# A dropped note leaves no space after an opening quote or before closing punctuation, else one space
# ("Semeis,<note/>Colius" -> "Semeis, Colius"; "God<note/>created" -> "God created").
_SILENT_GAP = re.compile(rf"(?<=[\s“‘(\[]){_GAP}+|{_GAP}+(?=[\s,.;:!?’”)\]]|$)")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[,.;:!?])")


def _clean(text: str) -> str:
    text = _SILENT_GAP.sub("", text).replace(_GAP, " ")
    text = html.unescape(text)
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub("", text)
    # A paragraph with no letters (a stray verse number, a lone punctuation mark) is not prose.
    if not any(ch.isalpha() for ch in text):
        return ""
    return unicodedata.normalize("NFC", text)


def read_ztext(
    module_dir: Path,
    *,
    compress: str = "ZIP",
    ztext4: bool | None = None,
    encoding: str = "utf-8",
    max_verses: int = 30,
) -> list[str]:
    """The module's running text as paragraphs (notes, titles and front matter removed).

    `ztext4` is guessed from the verse index size when not given (10-byte zText entries unless the
    size only divides by 12); pass the values from the module's .conf (`find_module`) to be exact."""
    module_dir = Path(module_dir)
    if not any((module_dir / f"{t}.bzv").is_file() for t in ("ot", "nt")):
        raise FileNotFoundError(f"No zText module files (ot.bzv / nt.bzv) in {module_dir}.")
    if ztext4 is None:
        sizes = [(module_dir / f"{t}.bzv").stat().st_size for t in ("ot", "nt") if (module_dir / f"{t}.bzv").is_file()]
        ztext4 = all(s % 12 == 0 for s in sizes) and not all(s % 10 == 0 for s in sizes)
    entries = verse_entries(module_dir, compress=compress, ztext4=ztext4, encoding=encoding)
    return osis_paragraphs(entries, max_verses=max_verses)


def read_module(tree: Path, name: str, *, max_verses: int = 30) -> list[str]:
    """Paragraphs of module `name` found in an unpacked package tree, honouring its .conf."""
    module_dir, conf = find_module(tree, name)
    if conf.get("CipherKey"):
        raise ValueError(f"The SWORD module {name} is encrypted, and encrypted modules are not supported.")
    driver = conf.get("ModDrv", "zText")
    if driver not in ("zText", "zText4"):
        raise ValueError(f"The SWORD module {name} uses the {driver} driver; only zText and zText4 are supported.")
    if conf.get("SourceType", "OSIS").upper() not in ("OSIS", ""):
        raise ValueError(f"The SWORD module {name} uses {conf['SourceType']} markup; only OSIS is supported.")
    encoding = "utf-8" if conf.get("Encoding", "UTF-8").upper().replace("-", "") == "UTF8" else "latin-1"
    return read_ztext(
        module_dir,
        compress=conf.get("CompressType", "ZIP"),
        ztext4=driver == "zText4",
        encoding=encoding,
        max_verses=max_verses,
    )
