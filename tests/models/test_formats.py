"""Format detection refuses transformers folders that carry or ask for their authors' code."""

import json

import pytest

from studio.core.errors import ModelFileError
from studio.models.formats import check_folder_files, detect


def make_transformers(folder, tokenizer_config=None):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "tokenizer.json").write_text("{}")
    if tokenizer_config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return folder


def test_a_plain_transformers_folder_is_text(tmp_path):
    folder = make_transformers(tmp_path / "prose", {"model_max_length": 64})
    assert detect(folder).format == "transformers"


def test_auto_map_in_tokenizer_config_is_refused(tmp_path):
    folder = make_transformers(
        tmp_path / "remote-tok", {"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}
    )
    with pytest.raises(ModelFileError) as info:
        detect(folder)
    assert info.value.message == (
        "remote-tok needs custom Python code from its authors (auto_map in tokenizer_config.json); "
        "the studio never runs model code, so it cannot load this folder."
    )


@pytest.mark.parametrize("where", ["modeling_evil.py", "extra/deep/setup.PY"])
def test_a_transformers_folder_holding_python_is_refused(tmp_path, where):
    folder = make_transformers(tmp_path / "with-code")
    (folder / where).parent.mkdir(parents=True, exist_ok=True)
    (folder / where).write_text("import os\n")
    with pytest.raises(ModelFileError) as info:
        detect(folder)
    assert info.value.message == (
        f"{folder} contains Python code ({where}); the studio never runs code from model folders."
    )


def test_check_folder_files_passes_a_clean_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.pyc.txt").write_text("")
    check_folder_files(tmp_path)
