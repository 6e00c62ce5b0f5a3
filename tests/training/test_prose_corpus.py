"""The prose corpus readers and recipe, on tiny inputs written here: no network, no Debian packages.

The R lazy-load database and the SWORD module are written byte for byte the way R and osis2mod lay
them out, so the readers are tested against the formats rather than against themselves."""

from __future__ import annotations

import bz2
import gzip
import struct
import zlib
from pathlib import Path
from typing import Callable

import pytest

from studio.training.data import prose_corpus
from studio.training.data.prose_corpus import (
    SOURCES,
    Source,
    SourceText,
    assemble,
    load_prose,
    paragraphs_from_lines,
    sections_from_lines,
    strip_gutenberg,
)
from studio.training.data.rdata import read_rdata, unserialize
from studio.training.data.sword import read_module, read_ztext

# --- an XDR serializer for the few R types the tests need -----------------------------------------

NILVALUE, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, STRSXP, VECSXP, REFSXP = 254, 1, 2, 9, 10, 13, 16, 19, 255


class RWriter:
    """serialize(x, NULL, xdr = TRUE, version = 3), for named lists of character/integer vectors."""

    def __init__(self) -> None:
        self.symbols: dict[str, int] = {}

    @staticmethod
    def int(value: int) -> bytes:
        return struct.pack(">i", value)

    def flags(self, kind: int, *, attr: bool = False, tag: bool = False, levels: int = 0) -> bytes:
        return self.int(kind | (attr << 9) | (tag << 10) | (levels << 12))

    def charsxp(self, text: str | None) -> bytes:
        if text is None:
            return self.flags(CHARSXP) + self.int(-1)
        raw = text.encode("utf-8")
        levels = 1 << 6 if text.isascii() else 1 << 3  # ASCII_MASK / UTF8_MASK
        return self.flags(CHARSXP, levels=levels) + self.int(len(raw)) + raw

    def symbol(self, name: str) -> bytes:
        if name in self.symbols:  # R writes repeated symbols as references into its table
            return self.int((self.symbols[name] << 8) | REFSXP)
        self.symbols[name] = len(self.symbols) + 1
        return self.flags(SYMSXP) + self.charsxp(name)

    def attributes(self, attrs: dict[str, bytes]) -> bytes:
        out = b""
        for name, value in attrs.items():
            out += self.flags(LISTSXP, tag=True) + self.symbol(name) + value
        return out + self.int(NILVALUE)

    def strings(self, values: list[str | None]) -> bytes:
        return self.flags(STRSXP) + self.int(len(values)) + b"".join(self.charsxp(v) for v in values)

    def ints(self, values: list[int], kind: int = INTSXP) -> bytes:
        return self.flags(kind) + self.int(len(values)) + b"".join(self.int(v) for v in values)

    def named_list(self, items: dict[str, bytes]) -> bytes:
        body = self.flags(VECSXP, attr=True) + self.int(len(items)) + b"".join(items.values())
        return body + self.attributes({"names": self.strings(list(items))})

    @staticmethod
    def header() -> bytes:
        return b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"

    def serialize(self, body_of: Callable[[RWriter], bytes]) -> bytes:
        self.symbols = {}
        return self.header() + body_of(self)


def write_lazyload_db(folder: Path, values: dict[str, list[str | None]], compressed: int = 1) -> None:
    """`data/Rdata.rdx` + `Rdata.rdb` as tools:::makeLazyLoadDB writes them (compress = TRUE or 2)."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = b""
    keys: dict[str, tuple[int, int]] = {}
    for name, lines in values.items():
        data = RWriter().serialize(lambda w, lines=lines: w.strings(lines))
        if compressed == 1:
            blob = struct.pack(">I", len(data)) + zlib.compress(data)
        else:
            blob = struct.pack(">I", len(data)) + b"2" + bz2.compress(data)
        keys[name] = (len(blobs), len(blob))
        blobs += blob
    (folder / "Rdata.rdb").write_bytes(blobs)

    def index(w: RWriter) -> bytes:
        variables = w.named_list({name: w.ints(list(key)) for name, key in keys.items()})
        references = w.named_list({})
        flag = w.ints([1], LGLSXP) if compressed == 1 else w.ints([compressed])
        return w.named_list({"variables": variables, "references": references, "compressed": flag})

    (folder / "Rdata.rdx").write_bytes(gzip.compress(RWriter().serialize(index)))  # saveRDS: gzip


@pytest.mark.parametrize("compressed", [1, 2])
def test_read_rdata_reads_named_character_vectors(tmp_path, compressed):
    values = {
        "emma": ["EMMA", "", "Emma Woodhouse, handsome, clever, and rich,", None, "caf\u00e9"],
        "persuasion": ["Chapter 1", "Sir Walter Elliot"],
    }
    write_lazyload_db(tmp_path / "pkg" / "data", values, compressed)
    result = read_rdata(tmp_path / "pkg")
    assert result == values
    assert read_rdata(tmp_path / "pkg" / "data", names=["persuasion"]) == {"persuasion": values["persuasion"]}


def test_unserialize_keeps_attributes_and_shared_symbols():
    def body(w: RWriter) -> bytes:
        inner = w.flags(STRSXP, attr=True) + w.int(1) + w.charsxp("text") + w.attributes({"names": w.strings(["a"])})
        return w.named_list({"x": inner, "n": w.ints([1, -(2**31)])})

    value = unserialize(RWriter().serialize(body))
    assert value.names == ["x", "n"]
    assert value[0] == ["text"] and value[0].names == ["a"]  # the second "names" symbol was a REFSXP
    assert value[1] == [1, None]  # NA_integer_


def test_unserialize_names_an_unsupported_type():
    with pytest.raises(ValueError, match="closure"):
        unserialize(RWriter.header() + RWriter.int(3))


# --- a tiny SWORD zText module --------------------------------------------------------------------


def write_ztext(module_dir: Path, verses: list[str]) -> None:
    """One testament (ot) whose verse slots all live in one zlib block, as osis2mod writes zText."""
    module_dir.mkdir(parents=True, exist_ok=True)
    raw = b""
    index = b""
    for verse in ["", ""] + verses:  # slot 0 and the module heading slot are empty
        data = verse.encode("utf-8")
        index += struct.pack("<IIH", 0, len(raw) if data else 0, len(data))
        raw += data
    compressed = zlib.compress(raw)
    (module_dir / "ot.bzs").write_bytes(struct.pack("<III", 0, len(compressed), len(raw)))
    (module_dir / "ot.bzv").write_bytes(index)
    (module_dir / "ot.bzz").write_bytes(compressed)


VERSES = [
    '<div sID="gen1" type="front"/><title>Preface</title><div sID="gen2" type="x-p"/>Editors wrote this.'
    '<div eID="gen2" type="x-p"/><div eID="gen1" type="front"/> <chapter osisID="Gen.1" sID="Gen.1"/>',
    '<div sID="gen3" type="x-p"/><w lemma="strong:H7225">In</w> the <w lemma="strong:H7225">beginning</w>, '
    'God<note placement="foot"><reference type="annotateRef">1:1 </reference>A footnote.</note>'
    '<w lemma="strong:H1254">created</w> the heavens &amp; the earth. ',
    '<title type="psalm">A heading</title>The earth was formless.<div eID="gen3" type="x-p"/>',
    '<div sID="gen4" type="x-p"/>He said, <q marker="" who="God">“Let there be light.”</q>And there was light. ',
]


def test_read_ztext_strips_markup_and_keeps_paragraphs(tmp_path):
    write_ztext(tmp_path / "mod", VERSES)
    paragraphs = read_ztext(tmp_path / "mod")
    assert paragraphs == [
        "In the beginning, God created the heavens & the earth. The earth was formless.",
        "He said, “Let there be light.” And there was light.",
    ]


def test_read_module_follows_the_conf(tmp_path):
    library = tmp_path / "usr" / "share" / "sword"
    write_ztext(library / "modules" / "texts" / "ztext" / "mine", VERSES)
    (library / "mods.d").mkdir(parents=True)
    (library / "mods.d" / "mine.conf").write_text(
        "[Mine]\nDataPath=./modules/texts/ztext/mine/\nModDrv=zText\nSourceType=OSIS\nCompressType=ZIP\n"
    )
    assert len(read_module(tmp_path, "Mine")) == 2


# --- line joining -----------------------------------------------------------------------------------


def test_paragraphs_from_lines_joins_wrapped_lines():
    lines = [
        "CHAPTER 1",
        "",
        "It is a truth universally",
        "acknowledged, that a _single_ man",
        "   in possession",
        "",
        "",
        "Chapter XII",
        '"Yes."',
        "",
        "* * * * *",
        "",
        "CHAPTER 3. Loomings.",
        "Call me",
        "Ishmael.",
    ]
    assert paragraphs_from_lines(lines) == [
        "It is a truth universally acknowledged, that a single man in possession",
        '"Yes."',
        "Call me Ishmael.",
    ]
    sections = sections_from_lines(lines)
    assert [heading for heading, _ in sections] == [None, "CHAPTER 1", "Chapter XII", "CHAPTER 3. Loomings."]


def test_strip_gutenberg_drops_header_and_licence():
    text = (
        "The Project Gutenberg EBook of X\r\n\r\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n"
        "Produced by Someone\r\n\r\nThe story.\r\n\r\nEnd of Project Gutenberg's X\r\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nLicence text.\r\n"
    )
    assert paragraphs_from_lines(strip_gutenberg(text).split("\n")) == ["The story."]


# --- the recipe, on synthetic packages -------------------------------------------------------------


def _persuasion() -> list[str]:
    lines = ["Persuasion", "", "by", "", "Jane Austen", ""]
    for chapter in range(1, 25):
        lines += [f"Chapter {chapter}", "", f"Chapter {chapter} begins, and the prose", "runs on.", "", '"Yes."', ""]
    return lines + ["Finis"]


def _write_packages(root: Path) -> dict[str, Path]:
    roots = {source.package: root / source.package for source in SOURCES}
    r_library = Path("usr/lib/R/site-library")
    write_lazyload_db(
        roots["r-cran-janeaustenr"] / r_library / "janeaustenr" / "data",
        {
            "emma": ["EMMA", "", "VOLUME I", "", "CHAPTER I", "", "Emma Woodhouse, handsome,", "clever."],
            "persuasion": _persuasion(),
        },
    )
    gutenberg = (
        "The Project Gutenberg EBook of Moby Dick\r\n*** START OF THIS PROJECT GUTENBERG EBOOK ***\r\n"
        "Original Transcriber's Notes:\r\n\r\nETYMOLOGY.\r\n\r\nCHAPTER 1. Loomings.\r\n\r\nCall me\r\n"
        "Ishmael.\r\n*** END OF THIS PROJECT GUTENBERG EBOOK ***\r\nThe Project Gutenberg License.\r\n"
    )
    write_lazyload_db(roots["r-cran-tokenizers"] / r_library / "tokenizers" / "data", {"mobydick": [gutenberg]})
    library = roots["sword-text-web"] / "usr" / "share" / "sword"
    write_ztext(library / "modules" / "texts" / "ztext" / "engWEB2015eb", VERSES)
    (library / "mods.d").mkdir(parents=True)
    (library / "mods.d" / "engweb2015eb.conf").write_text(
        "[engWEB2015eb]\nDataPath=./modules/texts/ztext/engWEB2015eb/\nModDrv=zText\nSourceType=OSIS\n"
    )
    dictd = roots["dict-devil"] / "usr" / "share" / "dictd"
    dictd.mkdir(parents=True)
    entries = [
        ("00-database-info", "The header.\n"),
        ("abasement", "ABASEMENT, n.  A decent and\ncustomary attitude.\n\n"),
        ("brute", "BRUTE, n.  See {HUSBAND}.\n\n"),
    ]
    data, index = b"", []
    for headword, text in entries:
        raw = text.encode()
        index.append(f"{headword.replace('-', '')}\t{_b64(len(data))}\t{_b64(len(raw))}")
        data += raw
    (dictd / "devil.dict.dz").write_bytes(gzip.compress(data))
    (dictd / "devil.index").write_text("\n".join(index) + "\n")
    return roots


def _b64(number: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    digits = ""
    while True:
        number, digit = divmod(number, 64)
        digits = alphabet[digit] + digits
        if not number:
            return digits


def test_load_prose_holds_out_persuasion_and_caches(tmp_path, monkeypatch):
    roots = _write_packages(tmp_path / "packages")
    monkeypatch.setenv("STUDIO_TRAINING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(prose_corpus, "debian_package", lambda name: roots[name])
    corpus = load_prose()

    train_texts = {text for _, text in corpus.train}
    heldout = corpus.heldout.split("\n\n")
    assert heldout[0] == "Chapter 13 begins, and the prose runs on."
    assert heldout[-1] == '"Yes."' and "Finis" not in heldout
    assert not train_texts & set(heldout)  # '"Yes."' occurs in both halves and was dropped from train
    assert "Chapter 12 begins, and the prose runs on." in train_texts
    assert "Persuasion" in corpus.heldout_name and "13" in corpus.heldout_name
    by_source = {name: [t for n, t in corpus.train if n == name] for name in {n for n, _ in corpus.train}}
    assert by_source["moby-dick"] == ["ETYMOLOGY.", "Call me Ishmael."]
    assert by_source["devils-dictionary"] == [
        "ABASEMENT, n. A decent and customary attitude.",
        "BRUTE, n. See HUSBAND.",
    ]
    assert "Emma Woodhouse, handsome, clever." in by_source["austen"]
    assert not any("EMMA" == t or "Jane Austen" == t for t in by_source["austen"])
    bible = prose_corpus.read_web_bible(roots["sword-text-web"]).paragraphs  # 30% of these are in train
    assert bible == [
        "In the beginning, God created the heavens & the earth. The earth was formless.",
        "He said, “Let there be light.” And there was light.",
    ]
    assert set(by_source.get("web-bible", [])) <= set(bible)

    # The second load comes from the JSON cache, without touching the packages.
    assert (tmp_path / "cache" / "prose-v1.json").is_file()
    monkeypatch.setattr(prose_corpus, "debian_package", lambda name: pytest.fail("fetched again"))
    again = load_prose()
    assert again.train == corpus.train and again.heldout == corpus.heldout
    small = load_prose(limit_chars=60)
    assert 0 < sum(len(t) for _, t in small.train) < sum(len(t) for _, t in corpus.train)
    assert small.heldout and small.heldout in corpus.heldout


def test_fractional_weight_samples_a_fixed_share():
    paragraphs = [f"Verse number {i} of the sample." for i in range(2000)]
    sources = [Source("bible", "t", "pd", "p", 0.3), Source("book", "t", "pd", "p", 2.0)]
    texts = {"bible": SourceText(paragraphs), "book": SourceText(["Twice."])}
    first = assemble(texts, sources, "none")
    kept = [t for n, t in first.train if n == "bible"]
    assert 500 < len(kept) < 700
    assert kept == [t for n, t in assemble(texts, sources, "none").train if n == "bible"]
    assert [t for n, t in first.train if n == "book"] == ["Twice.", "Twice."]
