"""Tokenizer files (and CLIP weight names) that older readers need beside what transformers 5 writes.

transformers 5 writes `tokenizer_config.json` naming its generic class `TokenizersBackend`, which
transformers 4 (and so Optimum's ONNX pipelines, which still run on it) cannot find, and its
CLIPTokenizer reads a BPE tokenizer from `vocab.json` + `merges.txt`, not from `tokenizer.json`.
This writes both beside the tokenizer.json they come from, so an export or a shipped model opens in
either: the class becomes one both versions know (transformers 5 loads it from tokenizer.json
exactly as before), and the vocabulary and merges are the tokenizer.json's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.core.atomic import write_text_atomic
from studio.models.formats import read_json

# The generic fast class of transformers 4, which transformers 5 maps to TokenizersBackend.
GENERIC_CLASS = "PreTrainedTokenizerFast"
NEW_ONLY_CLASSES = ("TokenizersBackend", "", None)


def write_legacy_tokenizer_files(folder: Path, tokenizer_class: str = GENERIC_CLASS) -> list[str]:
    """Beside `folder`/tokenizer.json: vocab.json and merges.txt (for a BPE model), and a
    tokenizer_config.json naming `tokenizer_class` where it named a class only transformers 5 has.
    Files already there are kept. The names of the files written."""
    folder = Path(folder)
    source = folder / "tokenizer.json"
    if not source.is_file():
        return []
    written = []
    tokenizer = read_json(source)
    model = tokenizer.get("model") or {}
    if model.get("type") == "BPE" and isinstance(model.get("vocab"), dict):
        if not (folder / "vocab.json").exists():
            write_text_atomic(folder / "vocab.json", json.dumps(model["vocab"], ensure_ascii=False))
            written.append("vocab.json")
        if not (folder / "merges.txt").exists():
            write_text_atomic(folder / "merges.txt", merges_text(model.get("merges") or []))
            written.append("merges.txt")
    config_path = folder / "tokenizer_config.json"
    config: dict[str, Any] = read_json(config_path) if config_path.is_file() else {}
    changed = config.get("tokenizer_class") in NEW_ONLY_CLASSES
    if changed:
        config["tokenizer_class"] = tokenizer_class
    if config.get("tokenizer_class") == GENERIC_CLASS and "model_input_names" not in config:
        # The generic class also hands out token_type_ids, which a causal LM's generate() refuses.
        config["model_input_names"], changed = ["input_ids", "attention_mask"], True
    if changed:
        write_text_atomic(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        written.append("tokenizer_config.json")
    return written


def merges_text(merges: list[Any]) -> str:
    """merges.txt as GPT-2 wrote it: a version line, then one "left right" pair a line. tokenizer.json
    keeps each merge as a pair (newer) or as that very line (older)."""
    lines = ["#version: 0.2"]
    for merge in merges:
        lines.append(" ".join(merge) if isinstance(merge, (list, tuple)) else str(merge))
    return "\n".join(lines) + "\n"


def write_clip_text_encoder_for_older_readers(folder: Path) -> bool:
    """Rename a CLIP text encoder's weights in `folder`/model.safetensors to `text_model.*`, the
    names transformers 4 looks for (transformers 5 saves them without that level, and a reader on
    4 would silently start from random weights). transformers 5 reads both. True if renamed."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = Path(folder) / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        if all(name.startswith("text_model.") for name in f.keys()):
            return False
        tensors = {
            name if name.startswith("text_model.") else "text_model." + name: f.get_tensor(name) for name in f.keys()
        }
    mode = path.stat().st_mode & 0o7777
    save_file(tensors, str(path), metadata=metadata)
    path.chmod(mode)  # safetensors writes a new owner-only file
    return True
