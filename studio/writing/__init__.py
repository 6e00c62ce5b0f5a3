"""The writer's document: text kept as spans by origin (typed, generated, edited), alternatives
for each generation, memory / author's note / world info, sampler settings; saving and loading
(`storage`), prompt assembly for the model (`prompt`) and autosave with crash recovery (`autosave`).

Pure Python: imports only studio.core and studio.models, never Qt or an ML library, so the
editor, the `studio write` command and the tests share it."""

from studio.writing.document import (
    ORIGINS,
    Document,
    GenerationId,
    WorldInfoEntry,
    default_sampler,
)
from studio.writing.storage import export_text, import_text, load_document, save_document

__all__ = [
    "ORIGINS",
    "Document",
    "GenerationId",
    "WorldInfoEntry",
    "default_sampler",
    "export_text",
    "import_text",
    "load_document",
    "save_document",
]
