"""The memory budget a model may take when loaded, and tensor shapes in words: the two things the
converter and the loaders' checks need beyond the machine's own figures (studio.core.memory).

A model file is a few numbers that say how big things are (a config's vocabulary, a pickle's tensor
shape) beside far fewer real bytes; what it declares is weighed against this budget before
anything is allocated."""

from __future__ import annotations

from typing import Optional

from studio.core.memory import total_bytes


def model_memory_budget() -> Optional[int]:
    """The most a model loaded into this process may take. The whole machine's RAM, not what is
    free now: the runner unloads other models to make room, so only what could never fit is refused."""
    return total_bytes()


def shape_words(shape: tuple[int, ...]) -> str:
    """A tensor shape as in a sentence: "16384×16384" ("a single number" for a scalar)."""
    return "×".join(str(d) for d in shape) if shape else "a single number"
