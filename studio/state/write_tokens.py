"""The model's tokens in the writer's document: which token it wrote at each spot of its text and
what else it nearly wrote (the top alternatives with their probabilities, from Token events), and
the sink that streams a running job's tokens into one generation.

Records are kept per generation and per sample, relative to the generation's start, and are
trusted only while the text there is still exactly the model's. QtCore only (the sink's timer):
the editor shows the records (ui/token_view.py), the WriteSession keeps them."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

from PySide6.QtCore import QObject, QTimer

from studio.writing.document import GENERATED, Document, GenerationId

FLUSH_MS = 33  # tokens are written into the document at most ~30 times a second

Alternatives = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class TokenRecord:
    offset: int  # from the start of its generation
    text: str
    alternatives: Alternatives  # (text, probability), best first


@dataclass(frozen=True)
class TokenAt:
    """The token under a position: its generation, its index there, where it starts."""

    generation: GenerationId
    index: int
    start: int  # document offset
    record: TokenRecord


class TokenLog:
    """The tokens of every generation's samples, as they streamed in."""

    def __init__(self) -> None:
        self._records: dict[tuple[int, int], list[TokenRecord]] = {}

    def clear(self) -> None:
        self._records.clear()

    def start(self, gen_id: GenerationId, sample: int, keep: Sequence[TokenRecord] = ()) -> list[TokenRecord]:
        """The record list for a new sample (beginning with `keep`), to append to as it streams."""
        records = self._records[(gen_id, sample)] = list(keep)
        return records

    def records(self, gen_id: GenerationId, sample: int) -> list[TokenRecord]:
        return self._records.get((gen_id, sample), [])

    def at(self, document: Document, pos: int) -> Optional[TokenAt]:
        """The model's token covering document offset `pos`, if the text there is still the
        model's own (edited text, or text shifted by an edit inside the generation, is not)."""
        if not 0 <= pos < len(document.text):
            return None
        gen_id = document.generation_at(pos)
        if gen_id is None:
            return None
        start, _ = document.generation_range(gen_id)
        records = self.records(gen_id, document.shown_alternative(gen_id))
        i = bisect.bisect_right([r.offset for r in records], pos - start) - 1
        if i < 0:
            return None
        record = records[i]
        at = start + record.offset
        if not (at <= pos < at + len(record.text)) or document.text[at : at + len(record.text)] != record.text:
            return None
        if any(origin != GENERATED for s, e, origin in document.spans() if s < at + len(record.text) and e > at):
            return None
        return TokenAt(gen_id, i, at, record)


class GenerationEdits(Protocol):
    """How the session changes the model's text. A Document does it directly; the editor's
    DocumentBridge does the same and also shows it and makes each change one undo step."""

    def add_generation(self, pos: int, /) -> GenerationId: ...

    def append_generation(self, gen_id: GenerationId, text: str, /) -> None: ...

    def retry(self, gen_id: GenerationId, text: str = "", /) -> int: ...

    def show_alternative(self, gen_id: GenerationId, index: int, /) -> object: ...


class TokenSink:
    """Writes streamed text into one generation (through `edits`), and logs each token with its
    alternatives, at its offset in the generation.

    Tokens are buffered and written on a timer: a fast model can send hundreds a second, and a
    document edit per token would make the editor lag behind the stream."""

    def __init__(
        self,
        edits: GenerationEdits,
        document: Document,
        gen_id: GenerationId,
        records: list[TokenRecord],
        parent: QObject,
    ):
        self._edits = edits
        self.gen_id = gen_id
        self.records = records  # appended to: the TokenLog's list for this sample
        start, end = document.generation_range(gen_id)
        self._length = end - start  # where the next token lands, from the generation's start
        self._buffer: list[str] = []
        self._timer = QTimer(parent)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.flush)

    def add(self, text: str, alternatives: Alternatives = ()) -> None:
        self.records.append(TokenRecord(self._length, text, alternatives))
        self._length += len(text)
        self._buffer.append(text)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        if not self._buffer:
            self._timer.stop()
            return
        text = "".join(self._buffer)
        self._buffer.clear()
        self._edits.append_generation(self.gen_id, text)

    def close(self) -> None:
        self.flush()
        self._timer.stop()
        self._timer.deleteLater()
