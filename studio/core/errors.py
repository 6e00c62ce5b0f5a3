"""Errors a person can act on. Each carries a kind so the UI and the CLI can say what went wrong."""

from __future__ import annotations

import enum


class ErrorKind(str, enum.Enum):
    BAD_INPUT = "bad input"
    MODEL_FILE = "model file"
    OUT_OF_MEMORY = "out of memory"
    RUNTIME = "runtime"
    ENGINE_CRASH = "engine crash"  # the engine process died under the job (native crash, killed)


class StudioError(Exception):
    """An error whose message is one sentence a person can act on (no traceback needed)."""

    kind: ErrorKind = ErrorKind.RUNTIME

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SpecError(StudioError, ValueError):
    """A job spec field is wrong; the message names the field."""

    kind = ErrorKind.BAD_INPUT

    def __init__(self, field: str, message: str):
        super().__init__(f"`{field}` {message}")
        self.field = field


class ModelNotFound(StudioError):
    kind = ErrorKind.BAD_INPUT


class ModelFileError(StudioError):
    """A model file or folder is missing pieces, truncated, of the wrong family or unsafe."""

    kind = ErrorKind.MODEL_FILE


class MetadataError(StudioError):
    """An image's embedded settings cannot be read: not a PNG, damaged, oversized, or none there."""

    kind = ErrorKind.BAD_INPUT


class DocumentError(StudioError):
    """A writer's document cannot be opened, saved or edited as asked: damaged, oversized, from a
    newer studio, or an edit outside the text."""

    kind = ErrorKind.BAD_INPUT


class OutOfMemory(StudioError):
    kind = ErrorKind.OUT_OF_MEMORY


# Said by a failure that leaves native work running which nothing can stop (a tokenizer stuck in
# its own regex): the process that ran it exits after reporting it (runner.poisons_device), so the
# stuck thread dies with it. Failures cross processes as text, so the words are the signal.
CANNOT_BE_INTERRUPTED = "cannot be interrupted"


class JobCancelled(Exception):
    """Raised inside a backend at a step or token boundary when its job was cancelled.

    Not a StudioError: cancelling is an outcome the person asked for, not a failure."""


def first_line(error: "BaseException | str", limit: int = 200) -> str:
    """An error's first non-empty line (its type name when it says nothing), at most `limit`
    characters: what a person sees of a library's message; the log keeps the rest."""
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    line = text.splitlines()[0].strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def shown(value: object, limit: int = 60) -> str:
    """A value as an error message quotes it: its repr, cut to `limit` characters, so a huge text,
    list or number cannot flood the sentence (repr also escapes line breaks). An int past Python's
    4300-digit limit has no repr at all."""
    try:
        text = repr(value)
    except ValueError:
        return "an enormous number"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_native_panic(error: BaseException) -> bool:
    """Whether `error` is a Rust library's panic as PyO3 raises it (tokenizers, safetensors).
    PanicException derives from BaseException, not Exception, and its module `pyo3_runtime` is
    not importable, so it is known by name."""
    cls = type(error)
    return cls.__name__ == "PanicException" and cls.__module__.startswith("pyo3")


def check_unicode(field: str, text: str) -> None:
    """SpecError naming `field` when `text` holds a lone surrogate (half of a UTF-16 pair, as a
    bad clipboard or a JSON "\\ud800" gives): no tokenizer or file can take such a character."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SpecError(
            field,
            f"holds characters that are not valid Unicode (a lone surrogate, "
            f"U+{ord(text[exc.start]):04X}, at character {exc.start + 1}); remove it and "
            "try again.",
        ) from None
