"""Saving and opening documents: the native versioned JSON, and plain .txt / .md.

A document file may come from anywhere (a friend, a download, a damaged disk), so opening one
treats it as untrusted input: its size is capped before it is read, and every field is checked
(types, span offsets against the text, generation ranges, sampler values) before a Document is
built. Anything wrong gives one DocumentError sentence naming the file and the problem.

Native format, version 1 (keys in this order, all but format/version/text/spans optional):
  {"format": "studio-document", "version": 1, "name": str, "text": str,
   "spans": [[start, end, origin], ...]          tiling the text, origin typed|generated|edited
   "generations": [{"id": int, "start": int, "end": int, "shown": int,
                    "alternatives": [null | [[text, origin], ...], ...]}, ...]
                                                 the shown sample is the text itself: its slot is null
   "memory": str, "authors_note": str, "authors_note_depth": int,
   "world_info": [{"keys": [str, ...], "content": str, "enabled": bool}, ...],
   "sampler": {TextJob sampler field: value, ..., "seed": int | null}}"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, NoReturn, Optional, TypeGuard

from studio.core.atomic import FileChangedError, FileStamp, write_atomic
from studio.core.errors import DocumentError
from studio.core.story import MAX_NOTE_DEPTH
from studio.core.untrusted import file_kind
from studio.writing.document import (
    ORIGINS,
    TYPED,
    Document,
    Piece,
    WorldInfoEntry,
    _Generation,
    _name,
    _shown,
    default_sampler,
    sampler_problem,
)

FORMAT = "studio-document"
VERSION = 1
NATIVE_SUFFIX = ".studio-doc.json"
PLAIN_SUFFIXES = (".txt", ".md", ".markdown")
MAX_BYTES = 50 * 1024 * 1024  # a long novel is ~1-2 MB; far beyond that is not a document
_MB = 1024 * 1024
_FIELDS = (
    "format",
    "version",
    "name",
    "text",
    "spans",
    "generations",
    "memory",
    "authors_note",
    "authors_note_depth",
    "world_info",
    "sampler",
)


class DocumentChanged(DocumentError):
    """The file changed on disk since it was opened (another program, another studio): a save
    refuses to overwrite it."""


# --- native format ---------------------------------------------------------------------------


def document_to_dict(document: Document) -> dict[str, Any]:
    sampler = dict(document.sampler)
    for name in ("stop", "banned"):
        if isinstance(sampler.get(name), tuple):
            sampler[name] = list(sampler[name])
    generations = []
    for gen_id, g in sorted(document._generations.items()):
        generations.append(
            {
                "id": gen_id,
                "start": g.start,
                "end": g.end,
                "shown": g.shown,
                "alternatives": [None if a is None else [list(p) for p in a] for a in g.alternatives],
            }
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": document.name,
        "text": document.text,
        "spans": [list(s) for s in document.spans()],
        "generations": generations,
        "memory": document.memory,
        "authors_note": document.authors_note,
        "authors_note_depth": document.authors_note_depth,
        "world_info": [{"keys": list(e.keys), "content": e.content, "enabled": e.enabled} for e in document.world_info],
        "sampler": sampler,
    }


def document_to_bytes(document: Document) -> bytes:
    """The file's bytes, checked by the same rules that open it: the studio never writes a file
    it would then refuse to open (a bad setting is reported now, and the old file stays)."""
    data = document_to_dict(document)
    _Reader(f"“{document.name}” cannot be saved").document(data)
    try:
        return json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (pasted from a broken source) has no UTF-8 form; JSON's \u escapes
        # keep it exactly, so the text still round-trips.
        return json.dumps(data, ensure_ascii=True, indent=1).encode("ascii")


def document_from_bytes(data: bytes, source: str = "The document") -> Document:
    read = _Reader(f"{source} cannot be opened")
    if len(data) > MAX_BYTES:
        read.fail(_too_big(len(data)))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        read.fail("it is not UTF-8 text")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        read.fail(f"the file is damaged or cut short (bad JSON at line {error.lineno}, column {error.colno})")
    except (ValueError, RecursionError):  # NaN/Infinity, absurd numbers or nesting
        read.fail("the file holds values no document has")
    return read.document(value)


def save_document(document: Document, path: Path, unchanged_since: Optional[FileStamp] = None) -> FileStamp:
    """Write the native format atomically: a crash mid-save leaves the previous file whole.
    With `unchanged_since` (the stamp from `read_document` or the last save) a file changed on
    disk since is not overwritten (DocumentChanged). Returns the stamp of the file written."""
    return _write(Path(path), document_to_bytes(document), unchanged_since)


def load_document(path: Path) -> Document:
    """Open a native document, or a .txt / .md file as text the writer typed."""
    return read_document(path)[0]


def read_document(path: Path, missing_ok: bool = False) -> tuple[Document, FileStamp]:
    """`load_document`, with the stamp of the file as it was read, for the save that follows.
    With `missing_ok` a file that does not exist yet is a new, empty document."""
    path = Path(path)
    data, stamp = _read_capped(path, missing_ok)
    if not stamp.exists:
        return Document(), stamp
    if path.suffix.lower() in PLAIN_SUFFIXES:
        return _text_document(data, path), stamp
    return document_from_bytes(data, source=path.name), stamp


# --- plain text ------------------------------------------------------------------------------


def import_text(path: Path) -> Document:
    """A .txt / .md file as a document whose text is all "typed" (the writer's own)."""
    path = Path(path)
    return _text_document(_read_capped(path)[0], path)


def _text_document(data: bytes, path: Path) -> Document:
    read = _Reader(f"{path.name} cannot be opened")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        read.fail("it is not UTF-8 text")
    if "\x00" in text:
        read.fail("it looks like a binary file, not text")
    # One kind of line break inside, whatever the file was written on: offsets then mean the
    # same thing in the editor, the prompt and the saved spans.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Document(text, TYPED, name=path.stem)


def export_text(document: Document, path: Path, unchanged_since: Optional[FileStamp] = None) -> FileStamp:
    """The text alone (no spans, memory or settings), for any other editor; `unchanged_since` as
    for `save_document`."""
    # "replace" only touches lone surrogates, which no UTF-8 file can hold.
    return _write(Path(path), document.text.encode("utf-8", "replace"), unchanged_since)


def _write(path: Path, data: bytes, unchanged_since: Optional[FileStamp]) -> FileStamp:
    """write_atomic, with its refusals and the disk's as one DocumentError sentence."""
    try:
        return write_atomic(path, data, unchanged_since)
    except FileChangedError:
        raise DocumentChanged(
            f"{path.name} changed on disk since it was opened, so it was not overwritten: "
            f"open it again to see the change, or save under another name."
        ) from None
    except OSError as error:
        raise DocumentError(f"Could not save {path} ({error.strerror or error}).") from None


# --- reading untrusted input -----------------------------------------------------------------


def _read_capped(path: Path, missing_ok: bool = False) -> tuple[bytes, FileStamp]:
    """The file's bytes and the stamp of the very file read, taken before reading (a change while
    reading then shows as a change at save time). Opened without blocking and checked on the open
    file, so a named pipe put there (even between a look and the open) never blocks."""
    read = _Reader(f"{path.name} cannot be opened")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        if missing_ok:
            return b"", FileStamp(False)
        read.fail("there is no such file")
    except OSError as error:
        read.fail(f"it could not be read ({error.strerror or error})")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # checked on the descriptor: what was opened is what is judged
        os.close(fd)
        read.fail(f"it is {file_kind(info.st_mode)}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > MAX_BYTES:
            read.fail(_too_big(info.st_size))
        try:
            data = f.read(MAX_BYTES + 1)  # the file may have grown since fstat
        except OSError as error:
            read.fail(f"it could not be read ({error.strerror or error})")
    if len(data) > MAX_BYTES:
        read.fail(_too_big(len(data)))
    return data, FileStamp.of(info)


def _too_big(size: int) -> str:
    return f"it is {size / _MB:.0f} MB, more than the {MAX_BYTES // _MB} MB a document may be"


def _no_constant(name: str) -> Any:
    raise ValueError(name)


class _Reader:
    """Checks a parsed file field by field; `fail` raises one sentence: '<lead>: <problem>.'"""

    def __init__(self, lead: str):
        self.lead = lead

    def fail(self, problem: str) -> NoReturn:
        raise DocumentError(f"{self.lead}: {problem}.")

    def document(self, data: Any) -> Document:
        if not isinstance(data, dict):
            self.fail("it does not hold a studio document")
        if data.get("format") != FORMAT:
            self.fail('it is not a studio document (no "format": "studio-document" in it)')
        version = data.get("version")
        if _is_int(version) and version > VERSION:
            self.fail(
                f"it was saved by a newer studio (document format {_shown(version)}; this one reads up to {VERSION})"
            )
        if version != VERSION or not _is_int(version):
            self.fail(f"its format version {_shown(version)} is not one this studio knows")
        unknown = sorted(set(data) - set(_FIELDS), key=str)
        if unknown:
            self.fail(f"it has an unknown field `{_name(unknown[0])}`")
        for name in ("text", "spans"):
            if name not in data:
                self.fail(f"the field `{name}` is missing")

        text = self.string(data["text"], "text")
        pieces = self.spans(data["spans"], text)
        generations = self.generations(data.get("generations", []), len(text))
        document = Document(name=self.string(data.get("name", "Untitled"), "name", most=1000))
        document.memory = self.string(data.get("memory", ""), "memory")
        document.authors_note = self.string(data.get("authors_note", ""), "authors_note")
        document.authors_note_depth = self.integer(
            data.get("authors_note_depth", document.authors_note_depth), "authors_note_depth", 0, MAX_NOTE_DEPTH
        )
        document.world_info = self.world_info(data.get("world_info", []))
        document.sampler = self.sampler(data.get("sampler", {}))
        document._restore(text, pieces, generations)
        return document

    # -- fields --

    def string(self, value: Any, name: str, most: Optional[int] = None) -> str:
        if not isinstance(value, str):
            self.fail(f"{_label(name)} must be text, not {_kind(value)}")
        if most is not None and len(value) > most:
            self.fail(f"{_label(name)} is longer than {most} characters")
        return value

    def integer(self, value: Any, name: str, lo: int, hi: int) -> int:
        if not _is_int(value):
            self.fail(f"{_label(name)} must be a whole number, not {_kind(value)}")
        if not lo <= value <= hi:
            self.fail(f"{_label(name)} must be between {lo} and {hi}, not {_shown(value)}")
        return value

    def list_of(self, value: Any, name: str) -> list:
        if not isinstance(value, list):
            self.fail(f"{_label(name)} must be a list, not {_kind(value)}")
        return value

    def spans(self, value: Any, text: str) -> list[Piece]:
        pieces, at = [], 0
        for n, span in enumerate(self.list_of(value, "spans"), 1):
            if not (isinstance(span, list) and len(span) == 3):
                self.fail(f"span {n} is not a [start, end, origin] triple")
            start, end, origin = span
            if not (_is_int(start) and _is_int(end)):
                self.fail(f"span {n} has offsets that are not whole numbers")
            if origin not in ORIGINS:
                self.fail(f"span {n} has the unknown origin {_shown(origin)}")
            if start != at:
                self.fail(f"span {n} starts at {_shown(start)} but the text before it ends at {at}")
            if end > len(text):
                self.fail(f"span {n} ends at {_shown(end)}, past the end of the text ({len(text)} characters)")
            if end <= start:
                self.fail(f"span {n} is empty or runs backwards ({_shown(start)} to {_shown(end)})")
            pieces.append((text[start:end], origin))
            at = end
        if at != len(text):
            self.fail(f"the spans cover {at} of the text's {len(text)} characters")
        return pieces

    def generations(self, value: Any, length: int) -> dict[int, _Generation]:
        out: dict[int, _Generation] = {}
        for n, item in enumerate(self.list_of(value, "generations"), 1):
            what = f"generation {n}"
            if not isinstance(item, dict) or set(item) != {"id", "start", "end", "shown", "alternatives"}:
                self.fail(f"{what} must have exactly id, start, end, shown and alternatives")
            gen_id = self.integer(item["id"], f"{what} id", 1, 2**53)
            if gen_id in out:
                self.fail(f"{what} repeats the id {gen_id}")
            start = self.integer(item["start"], f"{what} start", 0, length)
            end = self.integer(item["end"], f"{what} end", start, length)
            alternatives = self.list_of(item["alternatives"], f"{what} alternatives")
            if not alternatives:
                self.fail(f"{what} has no alternatives")
            shown = self.integer(item["shown"], f"{what} shown", 0, len(alternatives) - 1)
            samples: list[Optional[list[Piece]]] = []
            for k, sample in enumerate(alternatives):
                if (sample is None) != (k == shown):
                    self.fail(f"{what} must leave exactly its shown alternative ({shown}) empty")
                samples.append(None if sample is None else self.sample(sample, f"{what} alternative {k}"))
            out[gen_id] = _Generation(start, end, shown, samples)
        return out

    def sample(self, value: Any, what: str) -> list[Piece]:
        pieces = []
        for piece in self.list_of(value, what):
            if not (isinstance(piece, list) and len(piece) == 2 and isinstance(piece[0], str) and piece[1] in ORIGINS):
                self.fail(f"{what} must hold [text, origin] pairs")
            pieces.append((piece[0], piece[1]))
        return pieces

    def world_info(self, value: Any) -> list[WorldInfoEntry]:
        entries = []
        for n, item in enumerate(self.list_of(value, "world_info"), 1):
            what = f"world info entry {n}"
            if not isinstance(item, dict) or not set(item) <= {"keys", "content", "enabled"}:
                self.fail(f"{what} must have only keys, content and enabled")
            keys = self.list_of(item.get("keys", []), f"{what} keys")
            if not all(isinstance(k, str) for k in keys):
                self.fail(f"{what} keys must all be text")
            content = self.string(item.get("content", ""), f"{what} content")
            enabled = item.get("enabled", True)
            if not isinstance(enabled, bool):
                self.fail(f"{what} `enabled` must be true or false, not {_kind(enabled)}")
            entry = WorldInfoEntry(tuple(keys), content, enabled)
            if entry.problem():
                self.fail(f"{what} {entry.problem()}")
            entries.append(entry)
        return entries

    def sampler(self, value: Any) -> dict[str, Any]:
        problem = sampler_problem(value)
        if problem:
            self.fail(problem)
        return {**default_sampler(), **value}


def _label(name: str) -> str:
    """A field's own name in backticks; a described place ("generation 2 end") as words."""
    return name if " " in name else f"`{name}`"


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), _shown(value)
    )
