"""Build what the model sees when the writer presses Continue, the way KoboldAI Lite does
(text_anchors §5.2), with real token counts instead of a chars-per-token guess:

    memory                      always kept, at the top
    world info entries          those whose keys occur in the recent story, after memory
    story before the cursor     oldest text dropped first to fit, cut at a paragraph or sentence
      … author's note …         `depth` tokens before the end, moved back to a sentence boundary
    story, continued

The caller passes `count_tokens` (the model's tokenizer, without special tokens), so this module
needs no ML library. Token counts are taken on the whole assembled prompt, never summed over
parts: tokenizers merge across the seams, and the budget must hold for what is actually sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

from studio.core.errors import DocumentError
from studio.core.story import StoryContext, WorldInfoEntry
from studio.writing.document import Document

MEMORY, WORLD_INFO, STORY, AUTHORS_NOTE = "memory", "world_info", "story", "authors_note"
SCAN_CHARS = 2000  # how far back world info keys are looked for (Lite's default search depth)
NEAR_CHARS = 300  # how far past the exact cut a paragraph or sentence start may be to cut there
_ENDS_SENTENCE = ".!?…"
_CLOSERS = "\"'”’)]»"

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class Part:
    """One stretch of the prompt, for the context viewer to colour.

    `start`/`end` index the prompt; `source` is the range in the document for story parts;
    `entry` is the index in document.world_info for world info parts."""

    role: str
    start: int
    end: int
    source: Optional[tuple[int, int]] = None
    entry: Optional[int] = None


@dataclass(frozen=True)
class Assembled:
    prompt: str
    parts: tuple[Part, ...]  # in prompt order, tiling it exactly
    tokens: int  # count_tokens(prompt)
    budget: int  # context_length - max_new_tokens: what the prompt may use
    story_start: int  # document offset where the kept story begins
    world_info: tuple[int, ...]  # indices of the entries that were triggered
    authors_note_at: Optional[int]  # document offset the note went in front of, if any

    @property
    def trimmed_chars(self) -> int:
        """Characters of the story (from its beginning) that did not fit."""
        return self.story_start

    def text_of(self, part: Part) -> str:
        return self.prompt[part.start : part.end]


def assemble(
    document: Document, cursor: int, count_tokens: CountTokens, context_length: int, max_new_tokens: int, **options: int
) -> Assembled:
    """The prompt that continues `document` at `cursor` (see assemble_story, which takes the
    same keyword options)."""
    return assemble_story(document.story_context(cursor), count_tokens, context_length, max_new_tokens, **options)


def assemble_story(
    story: StoryContext,
    count_tokens: CountTokens,
    context_length: int,
    max_new_tokens: int,
    *,
    scan_chars: int = SCAN_CHARS,
    near: int = NEAR_CHARS,
) -> Assembled:
    """The prompt that continues `story.text` within `context_length` tokens, leaving room for
    `max_new_tokens`. Raises DocumentError when even memory, world info and the note alone do
    not fit."""
    budget = context_length - max_new_tokens
    if budget <= 0:
        raise DocumentError(
            f"Max new tokens ({max_new_tokens}) must be less than the model's context "
            f"length ({context_length}), or nothing is left for the story."
        )
    text = story.text
    cursor = len(text)

    head: list[tuple[str, str, Optional[int]]] = []  # (role, text, world info index)
    if story.memory.strip():
        head.append((MEMORY, _line(story.memory), None))
    triggered = triggered_world_info(story.world_info, text, scan_chars)
    head += [(WORLD_INFO, _line(story.world_info[i].content), i) for i in triggered]

    note = story.authors_note if story.authors_note.strip() else ""
    note_at = note_position(text, story.authors_note_depth, count_tokens) if note else None

    def build(cut: int) -> Assembled:
        return _build(head, text, cut, note, note_at, count_tokens, budget, triggered)

    def fits(cut: int) -> bool:
        return build(cut).tokens <= budget

    if not fits(cursor):
        fixed = build(cursor).tokens
        raise DocumentError(
            f"Memory, world info and the author's note take {fixed} tokens, more than the {budget} "
            f"left after {max_new_tokens} new tokens in a {context_length}-token context: shorten them "
            f"or lower max new tokens."
        )
    # The most story that fits (measured, not estimated; searched from the end, so a long novel
    # is never tokenized whole), then a cleaner cut a little later.
    keep = _largest(cursor, lambda n: fits(cursor - n), guess=4 * budget)
    cut = cursor - keep
    if cut > 0:
        nicer = _clean_cut(text, cut, near)
        if nicer != cut and fits(nicer):
            cut = nicer
    return build(cut)


def triggered_world_info(
    entries: Union[Document, Sequence[WorldInfoEntry]], story: str, scan_chars: int = SCAN_CHARS
) -> list[int]:
    """Indices of enabled entries (of a document, or a list of them) with a key in the last
    `scan_chars` characters of the story, matched case-insensitively as a whole word ("rose" is
    not found in "primrose")."""
    if isinstance(entries, Document):
        entries = entries.world_info
    start = max(0, len(story) - scan_chars)
    hits = []
    for i, entry in enumerate(entries):
        if not entry.enabled or not entry.content.strip():
            continue
        for key in entry.keys:
            key = key.strip()
            # The look-behind sees the character before `start`, so a word cut by the window's
            # edge ("…primrose" seen as "rose") does not trigger.
            if key and re.compile(rf"(?<!\w){re.escape(key)}(?!\w)", re.IGNORECASE).search(story, start):
                hits.append(i)
                break
    return hits


def note_position(story: str, depth: int, count_tokens: CountTokens) -> int:
    """Where the author's note goes: `depth` tokens before the end of the story (at least that
    many tokens follow it), moved back to the start of that sentence so none is split."""
    if depth <= 0 or count_tokens("") >= depth:
        at = len(story)
    else:
        # The longest tail with fewer than `depth` tokens; one character more reaches `depth`.
        short = _largest(len(story), lambda n: count_tokens(story[len(story) - n :]) < depth, guess=4 * depth)
        at = max(0, len(story) - short - 1)
    while not is_sentence_start(story, at):
        at -= 1
    return at


def is_sentence_start(text: str, i: int) -> bool:
    """True where a sentence may begin: the start, after a newline, or after ., !, ? (and any
    closing quote or bracket) and the spaces that follow; the end of the text counts when the
    text ends a sentence. "3.14" and "e.g.x" are not boundaries: no space follows the dot."""
    if i <= 0:
        return True
    if text[i - 1] == "\n":
        return True
    if i < len(text) and text[i] in " \t":
        return False  # the sentence starts after the spaces
    j = i
    while j > 0 and text[j - 1] in " \t":
        j -= 1
    if j == i and i < len(text):
        return False
    while j > 0 and text[j - 1] in _CLOSERS:
        j -= 1
    return j > 0 and text[j - 1] in _ENDS_SENTENCE


def _build(head, story, cut, note, note_at, count_tokens, budget, triggered) -> Assembled:
    chunks: list[tuple[str, str, Optional[tuple[int, int]], Optional[int]]] = [
        (role, text, None, entry) for role, text, entry in head
    ]
    at = None
    if note_at is not None:
        at = max(note_at, cut)  # trimmed past its place: it goes where the kept story begins
        if at > cut:
            chunks.append((STORY, story[cut:at], (cut, at), None))
        so_far = "".join(c[1] for c in chunks)
        lead = "" if not so_far or so_far.endswith("\n") else "\n"
        chunks.append((AUTHORS_NOTE, lead + _line(note), None, None))
        if at < len(story):
            chunks.append((STORY, story[at:], (at, len(story)), None))
    elif cut < len(story):
        chunks.append((STORY, story[cut:], (cut, len(story)), None))

    parts, pos = [], 0
    for role, text, source, entry in chunks:
        parts.append(Part(role, pos, pos + len(text), source, entry))
        pos += len(text)
    prompt = "".join(c[1] for c in chunks)
    return Assembled(prompt, tuple(parts), count_tokens(prompt), budget, cut, tuple(triggered), at)


def _line(text: str) -> str:
    """An inserted block on lines of its own, so it never runs into the story's words."""
    return text if text.endswith("\n") else text + "\n"


def _largest(n: int, ok: Callable[[int], bool], guess: int) -> int:
    """The largest k in [0, n] with ok(k), given that ok(0) holds (the caller knows; it is not
    asked again) and that ok turns false as k grows. Grows from `guess` by doubling, then
    bisects: a long novel costs a few dozen counts of prompt-sized strings, not of the book.
    Every k returned was measured ok, even for a tokenizer whose counts are not monotonic."""
    if n == 0:
        return 0
    lo, k = 0, max(1, min(guess, n))
    while True:
        if not ok(k):
            hi = k
            break
        lo = k
        if k == n:
            return n
        k = min(n, 2 * k)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _clean_cut(story: str, cut: int, near: int) -> int:
    """The first paragraph start within `near` characters after `cut`, else the first sentence
    start, else the first word start, else `cut` itself. Only later (less text), so it still fits."""
    end = min(len(story), cut + near)
    for good in (
        lambda i: story[i - 1] == "\n" and story[i] != "\n",
        lambda i: is_sentence_start(story, i) and not story[i].isspace(),
        lambda i: story[i - 1].isspace() and not story[i].isspace(),
    ):
        for i in range(max(cut, 1), end):
            if good(i):
                return i
    return cut
