"""Autosave and crash recovery for documents (docs/DESIGN.md §4: user work is never lost).

No Qt and no threads here: the editor calls `save_now` from its own timer and on focus loss,
and `mark_clean` when the window closes normally. Each draft is written atomically (a crash
mid-write leaves the previous draft whole) next to a small recovery marker. The marker exists
from the first autosave until a clean close, so a marker found on start means that run of the
studio ended without closing: its draft is offered back (`recoverable`).

Files in the documents folder:  <name>.studio-doc.json   the draft (native document format)
                                <name>.studio-doc.open   the marker: this draft is open"""

from __future__ import annotations

import datetime
import json
import os
import re
import uuid
from pathlib import Path
from typing import Optional

from studio.core.atomic import write_atomic
from studio.core.errors import DocumentError
from studio.models.paths import data_dir
from studio.writing.document import Document
from studio.writing.storage import NATIVE_SUFFIX, document_to_bytes

DRAFT_SUFFIX = NATIVE_SUFFIX
MARKER_SUFFIX = ".studio-doc.open"
# Which run of the studio wrote a marker. A pid would do on one machine but is reused (in a
# container every run can be pid 7), and a still-open draft of this very run is not a crash.
SESSION = uuid.uuid4().hex
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def documents_dir() -> Path:
    """Where drafts live: the studio's data folder (platformdirs; STUDIO_DATA_DIR in tests)."""
    return data_dir() / "documents"


def safe_name(name: str) -> str:
    """A file name for a document title on any platform: no separators or control characters,
    no leading dot (hidden), no Windows device names, not empty, not absurdly long."""
    name = re.sub(r"[^\w \-.,()'&+!]", "_", str(name)).strip(" .")[:120].strip(" .")
    if not name:
        return "Untitled"
    return name + "_" if name.split(".")[0].upper() in _RESERVED else name


def free_name(base: str = "Untitled", folder: Optional[Path] = None) -> str:
    """`base`, or "base 2", "base 3", ... : a name no draft in the folder has yet, so two new
    documents never autosave over each other."""
    folder = Path(folder) if folder is not None else documents_dir()
    base = safe_name(base)
    name, n = base, 1
    while (folder / (name + DRAFT_SUFFIX)).exists() or (folder / (name + MARKER_SUFFIX)).exists():
        n += 1
        name = f"{base} {n}"
    return name


class Autosaver:
    """Autosaves one open document under `name` in the documents folder."""

    def __init__(self, name: str, folder: Optional[Path] = None):
        self.folder = Path(folder) if folder is not None else documents_dir()
        self.name = safe_name(name)

    @property
    def path(self) -> Path:
        return self.folder / (self.name + DRAFT_SUFFIX)

    @property
    def marker_path(self) -> Path:
        return self.folder / (self.name + MARKER_SUFFIX)

    def save_now(self, document: Document) -> Path:
        """Write the draft now. On failure the previous draft is untouched and DocumentError
        says why in one sentence (the editor shows it and keeps the text in memory)."""
        data = document_to_bytes(document)  # checks the settings before anything is written
        try:
            # Marker first: a crash between the two writes must still leave the draft findable.
            if not self.marker_path.exists():
                marker = {
                    "session": SESSION,
                    "pid": os.getpid(),
                    "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                }
                write_atomic(self.marker_path, json.dumps(marker).encode("utf-8"))
            write_atomic(self.path, data)
        except OSError as error:
            raise DocumentError(
                f"Could not autosave “{self.name}” ({error.strerror or error}); the last autosaved draft is kept."
            ) from None
        return self.path

    def mark_clean(self) -> None:
        """The studio is closing normally: this draft needs no recovery."""
        self.marker_path.unlink(missing_ok=True)


def recoverable(folder: Optional[Path] = None) -> list[Path]:
    """Drafts left open by a run of the studio that did not close cleanly, newest first."""
    folder = Path(folder) if folder is not None else documents_dir()
    if not folder.is_dir():
        return []
    drafts = []
    for marker in folder.glob("*" + MARKER_SUFFIX):
        draft = folder / (marker.name[: -len(MARKER_SUFFIX)] + DRAFT_SUFFIX)
        if draft.is_file() and _marker_session(marker) != SESSION:
            drafts.append(draft)
    return sorted(drafts, key=lambda p: p.stat().st_mtime, reverse=True)


def dismiss(draft: Path) -> None:
    """The writer has seen the offer (recovered the draft or declined): stop offering it.
    The draft itself stays in the documents folder."""
    draft = Path(draft)
    name = draft.name[: -len(DRAFT_SUFFIX)] if draft.name.endswith(DRAFT_SUFFIX) else draft.stem
    (draft.parent / (name + MARKER_SUFFIX)).unlink(missing_ok=True)


def _marker_session(marker: Path) -> Optional[str]:
    """The session that wrote a marker; None when it cannot be read (still a crash to offer)."""
    try:
        with open(marker, "rb") as f:
            data = json.loads(f.read(4096))
        return data.get("session") if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
