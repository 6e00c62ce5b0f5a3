"""What a text job continues when it continues a document: the story before the cursor and what
the writer keeps beside it (memory, author's note, world info).

A TextJob carries this instead of a finished prompt when the prompt must be measured in the
model's own tokens: the engine assembles it there (studio.writing.prompt), where the tokenizer
lives, and reports exactly what the model saw (events.ContextUsed). Plain data, validated like
every spec field, so it round-trips through JSON with its job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.core.errors import SpecError

MAX_STORY_CHARS = 20_000_000  # ~ twenty long novels: more is a mistake, not a story
MAX_SIDE_CHARS = 200_000  # memory, the author's note, one world info entry
MAX_WORLD_INFO = 1000
MAX_KEYS = 20  # per world info entry
MAX_KEY_CHARS = 100
MAX_NOTE_DEPTH = 100_000
DEFAULT_NOTE_DEPTH = 80  # Lite puts its note ~80 tokens (320 characters) before the end (text_anchors §1a)


@dataclass(frozen=True)
class WorldInfoEntry:
    """Lore brought into the prompt when one of its keys appears in the recent story."""

    keys: tuple[str, ...]
    content: str
    enabled: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.keys, list):  # JSON and the UI give lists; keep one way to compare
            object.__setattr__(self, "keys", tuple(self.keys))

    def problem(self) -> str:
        """What is wrong with this entry, as a clause (no full stop), or ""."""
        if not isinstance(self.keys, tuple) or len(self.keys) > MAX_KEYS:
            return f"must have at most {MAX_KEYS} keys"
        if not all(isinstance(k, str) and len(k) <= MAX_KEY_CHARS for k in self.keys):
            return f"must have keys of text, at most {MAX_KEY_CHARS} characters each"
        if not isinstance(self.content, str) or len(self.content) > MAX_SIDE_CHARS:
            return f"must have content of text, at most {MAX_SIDE_CHARS} characters"
        if not isinstance(self.enabled, bool):
            return "must be enabled true or false"
        return ""


def _entry_from_json(entry: object) -> object:
    """A WorldInfoEntry from its JSON dict; anything else unchanged, for validate() to name."""
    if isinstance(entry, dict) and set(entry) <= {"keys", "content", "enabled"}:
        fields: dict[str, Any] = entry
        return WorldInfoEntry(**fields)
    return entry


@dataclass(frozen=True)
class StoryContext:
    """The story before the cursor (`text`) and what the prompt is built from beside it."""

    text: str = ""
    memory: str = ""
    authors_note: str = ""
    authors_note_depth: int = DEFAULT_NOTE_DEPTH
    world_info: tuple[WorldInfoEntry, ...] = ()

    def __post_init__(self) -> None:
        entries: object = self.world_info  # JSON and the UI give a list, of dicts from JSON
        if isinstance(entries, list):
            entries = tuple(entries)
        if isinstance(entries, tuple):  # from JSON: each entry as a dict
            entries = tuple(_entry_from_json(e) for e in entries)
        object.__setattr__(self, "world_info", entries)

    def validate(self) -> None:
        """SpecError naming `story` (the TextJob field this lives in) and the part at fault."""
        if not isinstance(self.text, str) or len(self.text) > MAX_STORY_CHARS:
            raise SpecError("story", f"text must be text of at most {MAX_STORY_CHARS:,} characters.")
        for name in ("memory", "authors_note"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_SIDE_CHARS:
                raise SpecError("story", f"{name} must be text of at most {MAX_SIDE_CHARS:,} characters.")
        depth = self.authors_note_depth
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_NOTE_DEPTH:
            raise SpecError("story", f"authors_note_depth must be a whole number from 0 to {MAX_NOTE_DEPTH}.")
        if not isinstance(self.world_info, tuple) or len(self.world_info) > MAX_WORLD_INFO:
            raise SpecError("story", f"world_info must be a list of at most {MAX_WORLD_INFO} entries.")
        for n, entry in enumerate(self.world_info, 1):
            problem = entry.problem() if isinstance(entry, WorldInfoEntry) else "must have keys, content and enabled"
            if problem:
                raise SpecError("story", f"world info entry {n} {problem}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "memory": self.memory,
            "authors_note": self.authors_note,
            "authors_note_depth": self.authors_note_depth,
            "world_info": [{"keys": list(e.keys), "content": e.content, "enabled": e.enabled} for e in self.world_info],
        }

    @classmethod
    def from_value(cls, value: Any) -> "StoryContext":
        """From to_dict()'s output (a spec read back from JSON); SpecError naming `story` otherwise."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict) or not set(value) <= set(cls.__dataclass_fields__):
            raise SpecError(
                "story", "must be an object with text, memory, authors_note, authors_note_depth and world_info."
            )
        try:
            return cls(**value)
        except TypeError as exc:
            raise SpecError("story", f"has a malformed world info entry ({exc}).") from None
