"""Readers on transformers 4 (Optimum's ONNX pipelines among them) open the studio's tokenizers: a
CLIP or GPT-2 tokenizer built only from the vocab.json and merges.txt written beside tokenizer.json
encodes every text as the studio does, and tokenizer_config.json names a class both versions know."""

import json
import shutil

import pytest
from transformers import AutoTokenizer, CLIPTokenizer, GPT2Tokenizer

from studio.models.paths import EMBEDDED_MODELS_DIR
from studio.models.tokenizer_files import write_legacy_tokenizer_files

TEXTS = ["a red apple, smiling face with hearts", "It was a dark and stormy night;  Été 42\n\n“no”, she said."]


def from_legacy_files_only(folder, tmp_path, cls):
    """`cls` loaded from a copy of `folder` without its tokenizer.json, as an older reader would."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("tokenizer.json", "*.safetensors"))
    return cls.from_pretrained(str(copy), local_files_only=True)


@pytest.mark.parametrize(
    "folder, cls",
    [(EMBEDDED_MODELS_DIR / "emoji-sd" / "tokenizer", CLIPTokenizer), (EMBEDDED_MODELS_DIR / "prose", GPT2Tokenizer)],
)
def test_the_shipped_tokenizers_read_the_same_from_vocab_and_merges(folder, cls, tmp_path):
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] != "TokenizersBackend"
    ours = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    legacy = from_legacy_files_only(folder, tmp_path, cls)
    for text in TEXTS:
        assert legacy(text)["input_ids"] == ours(text)["input_ids"]


def test_legacy_files_are_written_once_and_keep_what_is_there(tmp_path):
    folder = tmp_path / "tok"
    shutil.copytree(
        EMBEDDED_MODELS_DIR / "prose",
        folder,
        ignore=shutil.ignore_patterns("vocab.json", "merges.txt", "*.safetensors"),
    )
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "TokenizersBackend"}))
    assert write_legacy_tokenizer_files(folder) == ["vocab.json", "merges.txt", "tokenizer_config.json"]
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (folder / "merges.txt").read_text().startswith("#version: 0.2\n")
    assert write_legacy_tokenizer_files(folder) == []


def test_the_shipped_text_encoder_names_its_weights_as_transformers_4_reads_them(tmp_path):
    """transformers 4 finds a CLIPTextModel's weights under `text_model.*` (and silently starts
    from random ones otherwise); transformers 5 reads those names to the very same model."""
    import torch
    from safetensors import safe_open
    from transformers import CLIPTextModel

    from studio.models.tokenizer_files import write_clip_text_encoder_for_older_readers

    folder = EMBEDDED_MODELS_DIR / "emoji-sd" / "text_encoder"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert all(name.startswith("text_model.") for name in f.keys())
    flat = tmp_path / "flat"
    shutil.copytree(folder, flat)
    from safetensors.torch import load_file, save_file

    save_file(
        {k[len("text_model.") :]: v for k, v in load_file(str(flat / "model.safetensors")).items()},
        str(flat / "model.safetensors"),
    )
    assert write_clip_text_encoder_for_older_readers(flat) is True
    assert write_clip_text_encoder_for_older_readers(flat) is False
    shipped, info = CLIPTextModel.from_pretrained(str(folder), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    renamed = CLIPTextModel.from_pretrained(str(flat))
    ids = torch.tensor([[0, 5, 6, 7, 1]])
    assert torch.equal(shipped(ids).last_hidden_state, renamed(ids).last_hidden_state)
