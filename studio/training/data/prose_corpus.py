"""The prose corpus for the small GPT-2 model: public-domain books from Debian packages.

Sources: Jane Austen's six novels (r-cran-janeaustenr), Moby-Dick (the Project Gutenberg text
shipped in r-cran-tokenizers), the World English Bible (sword-text-web) and Ambrose Bierce's
Devil's Dictionary (dict-devil). Each is read with a small pure-Python reader (R lazy-load DB, SWORD
zText, dictzip), cleaned (no markup, no Gutenberg licence, no chapter headings, no verse numbers),
and its hard-wrapped lines are joined into one string per paragraph.

The second half of Persuasion (chapters 13-24) is held out: it never enters `train`, so the
held-out loss measures how well the model writes Austen-like prose it has not seen. The Bible is
large and stylistically uniform, so only ~30% of its paragraphs (a fixed, hash-chosen subset) are
used, to keep it from dominating the mix. The cleaned corpus is cached as JSON next to the
fetched packages, so the packages are read once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from studio.core.atomic import write_text_atomic
from studio.training.data.fetch import cache_dir, debian_package
from studio.training.data.rdata import read_rdata
from studio.training.data.sword import read_module

log = logging.getLogger(__name__)

__all__ = [
    "Source",
    "ProseCorpus",
    "SourceText",
    "SOURCES",
    "READERS",
    "HELDOUT_NAME",
    "load_prose",
    "build_corpus",
    "assemble",
    "trim",
    "paragraphs_from_lines",
    "sections_from_lines",
    "is_heading",
    "clean_paragraph",
    "strip_gutenberg",
    "read_austen",
    "read_moby_dick",
    "read_web_bible",
    "read_devils_dictionary",
]

CACHE_NAME = "prose-v1.json"
HELDOUT_NOVEL = "persuasion"
HELDOUT_FIRST_CHAPTER = 13
HELDOUT_NAME = "Persuasion (Jane Austen), chapters 13-24 (the second volume)"


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    licence: str
    package: str
    weight: float  # 1.0 = every paragraph once; 0.3 = a fixed 30% of the paragraphs; 2.0 = twice


@dataclass
class ProseCorpus:
    train: list[tuple[str, str]]  # (source name, paragraph text), already weighted
    heldout: str  # held-out text (paragraphs separated by blank lines), never in train
    heldout_name: str
    sources: list[Source]

    def summary(self) -> dict[str, tuple[int, int]]:
        """(paragraphs, characters) per source in `train`."""
        counts: dict[str, tuple[int, int]] = {}
        for name, text in self.train:
            paragraphs, chars = counts.get(name, (0, 0))
            counts[name] = (paragraphs + 1, chars + len(text))
        return counts


@dataclass
class SourceText:
    """What one source's reader returns: training paragraphs, and any paragraphs it holds out."""

    paragraphs: list[str]
    heldout: list[str] = field(default_factory=list)


SOURCES: list[Source] = [
    Source(
        "austen",
        "Jane Austen: Sense and Sensibility, Pride and Prejudice, Mansfield Park, Emma, Northanger Abbey, Persuasion",
        "public domain (texts); packaged by janeaustenr under MIT",
        "r-cran-janeaustenr",
        1.0,
    ),
    Source(
        "moby-dick",
        "Herman Melville: Moby-Dick; or, The Whale (Project Gutenberg #2701)",
        "public domain (Project Gutenberg header and licence removed)",
        "r-cran-tokenizers",
        1.0,
    ),
    Source(
        "web-bible", "World English Bible with Deuterocanon (2020 stable text)", "public domain", "sword-text-web", 0.3
    ),
    Source("devils-dictionary", "Ambrose Bierce: The Devil's Dictionary (1911)", "public domain", "dict-devil", 1.0),
]


# --- text cleaning -------------------------------------------------------------------------------

_HEADING = re.compile(
    r"^(?:(?:CHAPTER|Chapter|VOLUME|Volume|BOOK|Book)\s+(?:\d+|[IVXLCDM]+)(?:\.|\.\s+.{1,80}|:\s*.{0,80})?"
    r"|EPILOGUE|Epilogue|PROLOGUE|Prologue)\s*$"
)
_CHAPTER_NUMBER = re.compile(r"^(?:CHAPTER|Chapter)\s+(\d+|[IVXLCDM]+)\b")
_ITALIC = re.compile(r"_(?=\S)([^_]+?)(?<=\S)_")
_SPACES = re.compile(r"\s+")


def clean_paragraph(text: str) -> str:
    """One paragraph as a single clean line: NFC, `_italic_` markers removed, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text.replace("\ufeff", ""))
    text = _ITALIC.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def is_heading(line: str) -> bool:
    """True for a chapter/volume heading line such as "CHAPTER 12", "Chapter XII", "CHAPTER 1. Loomings."."""
    return bool(_HEADING.match(line.strip()))


def sections_from_lines(lines: Iterable[str]) -> list[tuple[str | None, list[str]]]:
    """Hard-wrapped lines as (heading, paragraphs) sections; the first section's heading is None.

    A blank line ends a paragraph, a heading line ends the paragraph and starts a new section (the
    heading never becomes prose), and paragraphs without any letter (`* * * * *`) are dropped."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    current: list[str] = []

    def flush() -> None:
        text = clean_paragraph(" ".join(current))
        current.clear()
        if any(ch.isalpha() for ch in text):
            sections[-1][1].append(text)

    for raw in lines:
        for line in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            stripped = line.strip()
            if not stripped:
                flush()
            elif is_heading(stripped):
                flush()
                sections.append((clean_paragraph(stripped), []))
            else:
                current.append(stripped)
    flush()
    return sections


def paragraphs_from_lines(lines: Iterable[str]) -> list[str]:
    """Join hard-wrapped lines into paragraphs (blank line = break); chapter headings are dropped."""
    return [p for _, paragraphs in sections_from_lines(lines) for p in paragraphs]


def strip_gutenberg(text: str) -> str:
    """The body of a Project Gutenberg e-text: everything between the START and END marker lines,
    without the "Produced by" credit and the "End of Project Gutenberg's ..." line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = next((i for i, text in enumerate(lines) if text.startswith(("*** START OF", "***START OF"))), -1)
    end = next((i for i, text in enumerate(lines) if text.startswith(("*** END OF", "***END OF"))), len(lines))
    body = lines[start + 1 : end]
    body = [text for text in body if not re.match(r"^\s*(End of (the )?Project Gutenberg|Produced by )", text)]
    return "\n".join(body)


def _chapter_number(heading: str | None) -> int | None:
    match = _CHAPTER_NUMBER.match(heading or "")
    if not match:
        return None
    token = match.group(1)
    return int(token) if token.isdigit() else _roman(token)


def _roman(token: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, ch in enumerate(token):
        value = values[ch]
        total += -value if i + 1 < len(token) and values[token[i + 1]] > value else value
    return total


# --- the per-source readers (each takes the unpacked package tree) --------------------------------

R_LIBRARY = Path("usr/lib/R/site-library")
_AUSTEN_ENDINGS = {"THE END", "FINIS", "Finis", "The End"}


def read_austen(root: Path) -> SourceText:
    """Austen's novels without front matter; Persuasion from chapter 13 on goes to `heldout`."""
    novels = read_rdata(root / R_LIBRARY / "janeaustenr")
    if HELDOUT_NOVEL not in novels:
        raise ValueError(f"The janeaustenr data has no {HELDOUT_NOVEL} text, so nothing can be held out.")
    train: list[str] = []
    heldout: list[str] = []
    for name, lines in novels.items():
        if not isinstance(lines, list) or not all(isinstance(text, str) or text is None for text in lines):
            continue  # not a character vector of lines
        sections = sections_from_lines(text or "" for text in lines)[1:]  # [0]: title page before chapter 1
        if not sections:
            raise ValueError(f"The Austen text {name} has no chapter headings, so its front matter cannot be found.")
        in_heldout = False
        for heading, paragraphs in sections:
            number = _chapter_number(heading)
            if name == HELDOUT_NOVEL and number is not None and number >= HELDOUT_FIRST_CHAPTER:
                in_heldout = True
            (heldout if in_heldout else train).extend(_austen_body(paragraphs))
    if not heldout:
        raise ValueError(
            f"{HELDOUT_NOVEL} has no chapter {HELDOUT_FIRST_CHAPTER} heading, so the held-out split failed."
        )
    return SourceText(train, heldout)


def _austen_body(paragraphs: list[str]) -> list[str]:
    """Drop "THE END" lines and the modern editorial note that closes Northanger Abbey."""
    body: list[str] = []
    for paragraph in paragraphs:
        if paragraph.upper() == "A NOTE ON THE TEXT":
            break
        if paragraph not in _AUSTEN_ENDINGS:
            body.append(paragraph)
    return body


def read_moby_dick(root: Path) -> SourceText:
    """Moby-Dick from the tokenizers package: the Gutenberg wrapper and transcriber's notes removed."""
    value = read_rdata(root / R_LIBRARY / "tokenizers", names=["mobydick"])["mobydick"]
    if not isinstance(value, list) or not value:
        raise ValueError("The tokenizers package's mobydick data set is not a character vector.")
    text = strip_gutenberg("\n".join(v or "" for v in value))
    lines = text.split("\n")
    # The notes of the e-text's transcriber come before the book proper, which opens with ETYMOLOGY.
    start = next((i for i, line in enumerate(lines) if line.strip() == "ETYMOLOGY."), 0)
    return SourceText(paragraphs_from_lines(lines[start:]))


def read_web_bible(root: Path) -> SourceText:
    """The World English Bible's running text, one paragraph per OSIS paragraph."""
    return SourceText([clean_paragraph(p) for p in read_module(root, "engWEB2015eb")])


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_CROSS_REFERENCE = re.compile(r"\{([^{}]*)\}")  # dictd's "See {HUSBAND}" links


def _dict_number(text: str) -> int:
    """dictd's index numbers: base64 digits, most significant first."""
    value = 0
    for ch in text:
        value = value * 64 + _B64.index(ch)
    return value


def read_devils_dictionary(root: Path) -> SourceText:
    """One paragraph per Devil's Dictionary entry ("ABASEMENT, n. A decent and ..."), dictd header dropped.

    The .index file (headword, base64 offset, base64 length) marks where entries begin and end, which
    is more reliable than guessing headword lines; entries sharing a span are read once."""
    folder = root / "usr" / "share" / "dictd"
    data = gzip.decompress((folder / "devil.dict.dz").read_bytes())  # dictzip is gzip with an index
    spans: set[tuple[int, int]] = set()
    for line in (folder / "devil.index").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00"):  # 00-database-* entries are dictd metadata
            continue
        spans.add((_dict_number(parts[1]), _dict_number(parts[2])))
    entries = [
        clean_paragraph(_CROSS_REFERENCE.sub(r"\1", data[offset : offset + size].decode("utf-8", errors="replace")))
        for offset, size in sorted(spans)
    ]
    return SourceText([e for e in entries if e])


READERS: dict[str, Callable[[Path], SourceText]] = {
    "austen": read_austen,
    "moby-dick": read_moby_dick,
    "web-bible": read_web_bible,
    "devils-dictionary": read_devils_dictionary,
}


# --- assembling, caching, trimming --------------------------------------------------------------


def _keep_fraction(name: str, text: str, fraction: float) -> bool:
    """A fixed pseudo-random choice per paragraph, the same on every machine and run."""
    digest = hashlib.sha256(f"{name}\x00{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def assemble(
    texts: dict[str, SourceText], sources: Sequence[Source] = SOURCES, heldout_name: str = HELDOUT_NAME
) -> ProseCorpus:
    """Weight the sources' paragraphs into one training list and keep the held-out text out of it.

    A paragraph that also occurs in the held-out text (a short "Yes." reply, say) is dropped from
    training, so the held-out text is strictly unseen."""
    heldout = [p for text in texts.values() for p in text.heldout]
    heldout_set = set(heldout)
    train: list[tuple[str, str]] = []
    for source in sources:
        whole, fraction = divmod(source.weight, 1.0)
        for paragraph in texts[source.name].paragraphs:
            if paragraph in heldout_set:
                continue
            copies = int(whole) + (1 if fraction and _keep_fraction(source.name, paragraph, fraction) else 0)
            train.extend([(source.name, paragraph)] * copies)
    return ProseCorpus(train, "\n\n".join(heldout), heldout_name, list(sources))


def build_corpus(fetch: Callable[[str], Path] = debian_package, sources: Sequence[Source] = SOURCES) -> ProseCorpus:
    """Fetch every source's package with `fetch`, read and clean it, and assemble the corpus."""
    texts = {}
    for source in sources:
        log.info("reading %s from %s", source.name, source.package)
        texts[source.name] = READERS[source.name](fetch(source.package))
    return assemble(texts, sources)


def _to_json(corpus: ProseCorpus) -> str:
    return json.dumps(
        {
            "version": 1,
            "train": corpus.train,
            "heldout": corpus.heldout,
            "heldout_name": corpus.heldout_name,
            "sources": [asdict(s) for s in corpus.sources],
        },
        ensure_ascii=False,
    )


def _from_json(text: str) -> ProseCorpus | None:
    try:
        data = json.loads(text)
        if data.get("version") != 1:
            return None
        sources = [Source(**s) for s in data["sources"]]
        if sources != SOURCES:
            return None  # the recipe changed since the cache was written
        return ProseCorpus([(name, p) for name, p in data["train"]], data["heldout"], data["heldout_name"], sources)
    except (ValueError, KeyError, TypeError):
        return None


def trim(corpus: ProseCorpus, limit_chars: int) -> ProseCorpus:
    """A smaller corpus for quick runs: about `limit_chars` of training text, every source cut by the
    same fraction (its first paragraphs), and at most a tenth of that (at least one paragraph) held out."""
    total = sum(len(text) for _, text in corpus.train)
    if total <= limit_chars:
        return corpus
    fraction = limit_chars / total
    budgets = {name: math.ceil(chars * fraction) for name, (_, chars) in corpus.summary().items()}
    train: list[tuple[str, str]] = []
    for name, text in corpus.train:
        if budgets[name] > 0:
            train.append((name, text))
            budgets[name] -= len(text)
    heldout: list[str] = []
    size = 0
    for paragraph in corpus.heldout.split("\n\n"):
        if heldout and size + len(paragraph) > max(limit_chars // 10, 1):
            break
        heldout.append(paragraph)
        size += len(paragraph) + 2
    return ProseCorpus(train, "\n\n".join(heldout), corpus.heldout_name + " (trimmed)", corpus.sources)


def load_prose(limit_chars: int | None = None) -> ProseCorpus:
    """The cleaned prose corpus, from the JSON cache or built from the Debian packages (then cached)."""
    path = cache_dir() / CACHE_NAME
    corpus = _from_json(path.read_text(encoding="utf-8")) if path.is_file() else None
    if corpus is None:
        corpus = build_corpus(debian_package)
        write_text_atomic(path, _to_json(corpus))
        log.info("cached the prose corpus in %s", path)
    return trim(corpus, limit_chars) if limit_chars is not None else corpus
