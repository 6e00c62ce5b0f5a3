"""Token probabilities in the editor: which token the model wrote at each spot of its text, and
what else it nearly wrote (the top alternatives with their probabilities, from Token events).

Hovering a generated word shows them; the editor's context menu offers them, and choosing one
rewrites the generation up to that token with the alternative and continues from there (as
mikupad and SillyTavern do). Records are kept per generation and per sample, relative to the
generation's start, and are trusted only while the text there is still exactly the model's."""

from __future__ import annotations

import bisect
import html
from dataclasses import dataclass
from typing import Optional

from studio.writing.document import GENERATED, Document, GenerationId

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

    def start(self, gen_id: GenerationId, sample: int, keep: list[TokenRecord] = ()) -> list[TokenRecord]:
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
        if not (at <= pos < at + len(record.text)) or document.text[at:at + len(record.text)] != record.text:
            return None
        if any(origin != GENERATED for s, e, origin in document.spans() if s < at + len(record.text) and e > at):
            return None
        return TokenAt(gen_id, i, at, record)


def visible(text: str) -> str:
    """A token's text as a person can read it in a list: spaces and line breaks shown."""
    return text.replace("\n", "⏎").replace(" ", "·") or "∅"


def tooltip_html(token: TokenAt) -> str:
    """The token and its alternatives as a small table, the one the model chose in bold."""
    rows = []
    for text, probability in token.record.alternatives:
        cell = html.escape(visible(text))
        if text == token.record.text:
            cell = f"<b>{cell}</b>"
        rows.append(f"<tr><td>{cell}</td><td align='right'>&nbsp;{probability * 100:.1f} %</td></tr>")
    if not rows:
        return ""
    return ("<p style='white-space:pre'>Alternatives here (right-click to choose one):</p>"
            f"<table>{''.join(rows)}</table>")
