"""The writer's document: one text, kept as spans that say who wrote each part.

Origins, as NovelAI colours them and writers ask for (text_anchors §5.1, complaint 12):
  "typed"      the writer's own text;
  "generated"  the model's text, untouched;
  "edited"     text the writer typed into the model's text (it reads as the model's sentence,
               changed by the writer), so it is told apart from both.

A generation (`add_generation`) is also remembered by its place in the text so Retry can replace
it with a new sample while the earlier samples stay one click away (`show_alternative`).

Positions are character offsets into `text` (Python str indices), which is what the editor and
the prompt assembly both count in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NewType, Optional

from studio.core.errors import DocumentError, SpecError, shown
from studio.core.jobs import TextJob, resolve_seed
from studio.core.story import DEFAULT_NOTE_DEPTH, StoryContext, WorldInfoEntry

TYPED, GENERATED, EDITED = "typed", "generated", "edited"
ORIGINS = (TYPED, GENERATED, EDITED)

GenerationId = NewType("GenerationId", int)
Piece = tuple[str, str]  # (text, origin); the document is a list of these, never empty, merged

# The TextJob fields a writer sets per document; the rest of a job (model, prompt) comes per run.
SAMPLER_FIELDS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "repetition_range",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "xtc_threshold",
    "xtc_probability",
    "max_new_tokens",
    "stop",
    "banned",
    "seed",
)


def default_sampler() -> dict[str, Any]:
    """TextJob's own defaults, with lists for stop/banned (JSON-shaped) and no seed (random)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TextJob)}
    sampler = {name: defaults[name] for name in SAMPLER_FIELDS}
    sampler["stop"], sampler["banned"] = [], []
    sampler["seed"] = None
    return sampler


def sampler_problem(sampler: Any) -> Optional[str]:
    """What is wrong with these sampler settings, as a clause naming the setting (no full stop),
    or None. The rules are TextJob's own, so a document never holds settings a job refuses."""
    if not isinstance(sampler, dict):
        return "the sampler settings are not a set of named values"
    unknown = sorted(set(sampler) - set(SAMPLER_FIELDS), key=str)
    if unknown:
        return f"`{_name(unknown[0])}` is not a sampler setting"
    try:
        _job(sampler, model="document", prompt="", seed_if_random=0).validate()
    except SpecError as error:
        return "the sampler setting " + error.message.rstrip(".")
    return None


def check_sampler(sampler: Any) -> None:
    problem = sampler_problem(sampler)
    if problem:
        raise DocumentError(problem[0].upper() + problem[1:] + ".")


def _job(sampler: dict[str, Any], model: str, prompt: str, seed_if_random: Optional[int]) -> TextJob:
    values = {**default_sampler(), **sampler}
    for name in ("stop", "banned"):
        if isinstance(values[name], list):
            values[name] = tuple(values[name])
    if values["seed"] is None:
        values["seed"] = resolve_seed(None) if seed_if_random is None else seed_if_random
    return TextJob(model=model, prompt=prompt, **values)


@dataclass
class _Generation:
    """Where one generation sits now and its samples. The sample being shown lives in the text
    itself (its slot holds None) so there is one copy of it and edits to it need no syncing."""

    start: int
    end: int
    shown: int
    alternatives: list[Optional[list[Piece]]]


@dataclass(frozen=True)
class _Checkpoint:
    text: str
    pieces: list[Piece]
    generations: dict[int, _Generation]
    next_id: int


class Document:
    """Text as spans by origin, plus what the prompt is built from and the sampler settings."""

    def __init__(self, text: str = "", origin: str = TYPED, *, name: str = "Untitled"):
        _check_origin(origin)
        _check_text(text)
        self.name = name
        self.memory = ""
        self.authors_note = ""
        self.authors_note_depth = DEFAULT_NOTE_DEPTH  # in tokens before the end of the context
        self.world_info: list[WorldInfoEntry] = []
        self.sampler: dict[str, Any] = default_sampler()
        self._text = text
        self._pieces: list[Piece] = [(text, origin)] if text else []
        self._generations: dict[int, _Generation] = {}
        self._next_id = 1

    # --- reading -------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self._text

    def spans(self) -> list[tuple[int, int, str]]:
        """(start, end, origin) for each span, in order; they tile the text exactly."""
        out, pos = [], 0
        for text, origin in self._pieces:
            out.append((pos, pos + len(text), origin))
            pos += len(text)
        return out

    def text_job(self, model: str, prompt: str) -> TextJob:
        """The job that continues `prompt` with this document's sampler settings; a random seed
        is drawn now so the job (and what it wrote) can be reproduced."""
        check_sampler(self.sampler)
        return _job(self.sampler, model=model, prompt=prompt, seed_if_random=None)

    def story_context(self, cursor: int) -> StoryContext:
        """What continuing at `cursor` reads: the text before it, memory, note and world info."""
        if isinstance(cursor, bool) or not isinstance(cursor, int) or not 0 <= cursor <= len(self._text):
            raise DocumentError(f"The cursor {cursor!r} is outside the text ({len(self._text)} characters).")
        return StoryContext(
            self._text[:cursor], self.memory, self.authors_note, self.authors_note_depth, tuple(self.world_info)
        )

    def story_job(self, model: str, cursor: int, instruct: bool = False) -> TextJob:
        """The job that continues the text at `cursor`, assembled by the engine with the model's
        own tokenizer (memory, world info, author's note), with this document's sampler settings."""
        return dataclasses.replace(self.text_job(model, ""), story=self.story_context(cursor), instruct=instruct)

    # --- editing -------------------------------------------------------------------------------

    def insert(self, pos: int, text: str, origin: str = TYPED) -> None:
        self.replace(pos, pos, text, origin)

    def delete(self, start: int, end: int) -> None:
        """Remove text. What is left keeps its origin: deleting adds nothing the writer wrote."""
        self._check_range(start, end)
        self._edit(start, end, [])

    def replace(self, start: int, end: int, text: str, origin: str = TYPED) -> None:
        """Replace [start, end) with `text`. Typed text that changes the model's text, or lands
        inside it, is marked "edited"."""
        self._check_range(start, end)
        _check_origin(origin)
        _check_text(text)
        if origin == TYPED and self._touches_model_text(start, end):
            origin = EDITED
        self._edit(start, end, [(text, origin)])

    def _touches_model_text(self, start: int, end: int) -> bool:
        if any(o != TYPED for _, o in self._pieces_between(start, end)):
            return True
        # Between two model characters is inside the model's sentence; next to the writer's own
        # text (or at either end of the document) it is the writer carrying on.
        left, right = self._origin_at(start - 1), self._origin_at(end)
        return left not in (None, TYPED) and right not in (None, TYPED)

    # --- generations and their alternatives -----------------------------------------------------

    def add_generation(self, pos: int, text: str = "") -> GenerationId:
        """Insert the model's text at `pos` and remember it as one generation. Streaming starts
        with "" and grows it with `append_generation`."""
        self._check_range(pos, pos)
        _check_text(text)
        self._edit(pos, pos, [(text, GENERATED)])
        gen_id, self._next_id = self._next_id, self._next_id + 1
        self._generations[gen_id] = _Generation(pos, pos + len(text), 0, [None])
        return GenerationId(gen_id)

    def append_generation(self, gen_id: GenerationId, text: str) -> None:
        """Add streamed text at the end of a generation."""
        g = self._generation(gen_id)
        _check_text(text)
        self._edit(g.end, g.end, [(text, GENERATED)], own=gen_id)
        g.end += len(text)

    def retry(self, gen_id: GenerationId, new_text: str = "") -> int:
        """Replace the generation's text with a new sample; the earlier ones stay reachable.
        Returns the new sample's index."""
        g = self._generation(gen_id)
        _check_text(new_text)
        g.alternatives[g.shown] = self._pieces_between(g.start, g.end)
        g.alternatives.append(None)
        g.shown = len(g.alternatives) - 1
        self._put_generation(gen_id, g, [(new_text, GENERATED)])
        return g.shown

    def alternatives(self, gen_id: GenerationId) -> list[str]:
        """Every sample's text, oldest first; the shown one as it reads now (edits included)."""
        g = self._generation(gen_id)
        return [self._text[g.start : g.end] if a is None else "".join(t for t, _ in a) for a in g.alternatives]

    def shown_alternative(self, gen_id: GenerationId) -> int:
        return self._generation(gen_id).shown

    def show_alternative(self, gen_id: GenerationId, index: int) -> tuple[int, int]:
        """Swap the sample at `index` into the text (Previous / Next); returns its new range."""
        g = self._generation(gen_id)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(g.alternatives):
            raise DocumentError(f"Generation {gen_id} has no alternative {index!r} (it has {len(g.alternatives)}).")
        if index != g.shown:
            pieces = g.alternatives[index]
            if pieces is None:  # only the shown sample's slot is empty
                raise DocumentError(f"Generation {gen_id} has lost its alternative {index}; reopen the document.")
            g.alternatives[g.shown] = self._pieces_between(g.start, g.end)
            g.alternatives[index], g.shown = None, index
            self._put_generation(gen_id, g, pieces)
        return g.start, g.end

    def generation_range(self, gen_id: GenerationId) -> tuple[int, int]:
        g = self._generation(gen_id)
        return g.start, g.end

    def generations(self) -> list[GenerationId]:
        """Generations still tracked, in text order."""
        return [GenerationId(i) for i, _ in sorted(self._generations.items(), key=lambda kv: (kv[1].start, kv[0]))]

    def generation_at(self, pos: int) -> Optional[GenerationId]:
        """The generation at `pos`, its end included (the cursor sits there right after one);
        the innermost when one was generated inside another."""
        hits = [(g.start, i) for i, g in self._generations.items() if g.start <= pos <= g.end]
        return GenerationId(max(hits)[1]) if hits else None

    def forget_generation(self, gen_id: GenerationId) -> None:
        """Keep the text, drop its alternatives (the writer accepted it, or it came out empty)."""
        self._generation(gen_id)
        del self._generations[gen_id]

    def _generation(self, gen_id: GenerationId) -> _Generation:
        g = self._generations.get(gen_id)
        if g is None:
            raise DocumentError(f"There is no generation {gen_id!r} in this document any more.")
        return g

    def _put_generation(self, gen_id: GenerationId, g: _Generation, pieces: list[Piece]) -> None:
        self._edit(g.start, g.end, pieces, own=gen_id)
        g.end = g.start + sum(len(t) for t, _ in pieces)

    # --- the bookkeeping underneath -------------------------------------------------------------

    def _edit(self, start: int, end: int, pieces: list[Piece], own: Optional[int] = None) -> None:
        """Replace [start, end) with pieces, keep spans merged, and move the generations."""
        i = self._split(start)
        j = self._split(end)
        self._pieces[i:j] = [p for p in pieces if p[0]]
        self._merge()
        added = "".join(t for t, _ in pieces)
        self._text = self._text[:start] + added + self._text[end:]
        self._move_generations(start, end, len(added), own)

    def _move_generations(self, start: int, end: int, added: int, own: Optional[int]) -> None:
        delta = added - (end - start)
        for gen_id in list(self._generations):
            if gen_id == own:  # the caller sets its range itself
                continue
            g = self._generations[gen_id]
            if end <= g.start:  # before it, or typed right at its start: it moves along
                g.start += delta
                g.end += delta
            elif start >= g.end:  # after it, or typed right at its end: not part of it
                continue
            elif g.start <= start and end <= g.end and not (start == g.start and end == g.end and not added):
                # The writer changed the shown sample. Its alternatives are kept: the change
                # belongs to this sample only (as a SillyTavern swipe), is saved in its slot when
                # another is shown and comes back with it, so Previous / Next never loses an edit.
                g.end += delta
            else:
                # Deleted whole, or an edit across its edge: it no longer has one clear extent to
                # swap samples into, and a sample swapped in would not fit the text around it, so
                # the alternatives go. The text that is left keeps its origins.
                del self._generations[gen_id]

    def _split(self, pos: int) -> int:
        """Index of the first piece that starts at `pos`, splitting the piece that straddles it."""
        at = 0
        for i, (text, origin) in enumerate(self._pieces):
            if at == pos:
                return i
            if pos < at + len(text):
                cut = pos - at
                self._pieces[i : i + 1] = [(text[:cut], origin), (text[cut:], origin)]
                return i + 1
            at += len(text)
        return len(self._pieces)

    def _merge(self) -> None:
        merged: list[Piece] = []
        for text, origin in self._pieces:
            if not text:
                continue
            if merged and merged[-1][1] == origin:
                merged[-1] = (merged[-1][0] + text, origin)
            else:
                merged.append((text, origin))
        self._pieces = merged

    def _pieces_between(self, start: int, end: int) -> list[Piece]:
        out, at = [], 0
        for text, origin in self._pieces:
            lo, hi = max(start, at), min(end, at + len(text))
            if lo < hi:
                out.append((text[lo - at : hi - at], origin))
            at += len(text)
        return out

    def _origin_at(self, pos: int) -> Optional[str]:
        if not 0 <= pos < len(self._text):
            return None
        at = 0
        for text, origin in self._pieces:
            at += len(text)
            if pos < at:
                return origin
        return None

    def _check_range(self, start: Any, end: Any) -> None:
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end))
        if not ok or not 0 <= start <= end <= len(self._text):
            raise DocumentError(f"The range {start!r} to {end!r} is outside the text ({len(self._text)} characters).")

    # --- undo support ----------------------------------------------------------------------------

    def checkpoint(self) -> object:
        """The text, its spans and its generations as they are now, for the editor's undo stack:
        one checkpoint before a whole generation makes it one undo step, and going back restores
        origins and alternatives exactly (re-inserting the text would make it "typed")."""
        generations = {
            i: _Generation(g.start, g.end, g.shown, list(g.alternatives)) for i, g in self._generations.items()
        }
        return _Checkpoint(self._text, list(self._pieces), generations, self._next_id)

    def restore(self, checkpoint: object) -> None:
        if not isinstance(checkpoint, _Checkpoint):
            raise DocumentError("That is not a checkpoint of a document.")
        self._text, self._pieces = checkpoint.text, list(checkpoint.pieces)
        self._generations = {
            i: _Generation(g.start, g.end, g.shown, list(g.alternatives)) for i, g in checkpoint.generations.items()
        }
        # Ids only grow, so an id handed out after the checkpoint never names another generation.
        self._next_id = max(self._next_id, checkpoint.next_id)

    # --- comparing and restoring (storage.py) ---------------------------------------------------

    def _state(self) -> tuple:
        generations = sorted(
            (i, g.start, g.end, g.shown, [None if a is None else list(a) for a in g.alternatives])
            for i, g in self._generations.items()
        )
        return (
            self.name,
            self._text,
            self._pieces,
            generations,
            self.memory,
            self.authors_note,
            self.authors_note_depth,
            self.world_info,
            self.sampler,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        return self._state() == other._state()

    # No __hash__: a class that defines __eq__ gets __hash__ = None, which a mutable document wants.

    def __repr__(self) -> str:
        return f"Document(name={self.name!r}, {len(self._text)} characters, {len(self._pieces)} spans)"

    def _restore(self, text: str, pieces: list[Piece], generations: dict[int, _Generation]) -> None:
        """Install already-validated content (storage.py checks every offset first)."""
        self._text = text
        self._pieces = list(pieces)
        self._merge()
        self._generations = generations
        self._next_id = max(generations, default=0) + 1


def _shown(value: Any) -> str:
    return shown(value, 40)


def _name(key: Any) -> str:
    """A key from a file as a message names it: as it is when it reads like a name, else quoted."""
    return key if isinstance(key, str) and key.isidentifier() and len(key) <= 40 else _shown(key)


def _check_origin(origin: Any) -> None:
    if origin not in ORIGINS:
        raise DocumentError(f"A span's origin must be one of {', '.join(ORIGINS)}, not {_shown(origin)}.")


def _check_text(text: Any) -> None:
    if not isinstance(text, str):
        raise DocumentError(f"Only text can go into a document, not {type(text).__name__}.")
