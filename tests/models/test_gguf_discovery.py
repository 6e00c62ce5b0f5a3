"""A GGUF file dropped into the models folder: listed with what its header says, or listed as
unusable with one sentence, and a malformed one never reaches llama.cpp."""

import os
import struct
from pathlib import Path

import pytest

from studio.bench.tiny_models import build_tiny_gpt2
from studio.cli import main
from studio.core.errors import ModelFileError
from studio.core.events import Failed
from studio.core.jobs import TextJob
from studio.engine.runner import Runner
from studio.models.gguf_convert import convert_to_gguf
from studio.models.registry import ModelRegistry

from run_jobs import run


@pytest.fixture(scope="module")
def good_gguf(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("gguf")
    return convert_to_gguf(build_tiny_gpt2(work / "hf"), work / "tiny.gguf", "q8_0")


@pytest.fixture
def models(good_gguf) -> Path:
    folder = Path(os.environ["STUDIO_MODELS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    data = good_gguf.read_bytes()
    (folder / "tiny.gguf").write_bytes(data)
    (folder / "cut.gguf").write_bytes(data[: len(data) - 1000])  # an interrupted download
    (folder / "not-gguf.gguf").write_bytes(b"GGML" + data[4:])
    (folder / "huge-count.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**40, 0))
    (folder / "two").mkdir()
    (folder / "two" / "a.gguf").write_bytes(data)
    (folder / "two" / "b.gguf").write_bytes(data)
    (folder / "in-a-folder").mkdir()
    (folder / "in-a-folder" / "model.Q8_0.gguf").write_bytes(data)
    return folder


def test_good_ggufs_are_listed_and_malformed_ones_are_unusable_with_one_sentence(models, capsys):
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    rows = {line.split()[0]: line for line in captured.out.splitlines() if line.strip()}
    assert "gguf" in rows["tiny"] and "llama.cpp" in rows["tiny"]
    assert "gguf" in rows["in-a-folder"]
    assert "tiny: gpt2 · " in captured.out and "Q8_0 · 128 ctx · no chat template" in captured.out
    unusable = [line for line in captured.err.splitlines() if line.startswith("unusable:")]
    said = {Path(line.split(": ", 2)[1]).name: line for line in unusable}
    assert set(said) == {"cut.gguf", "not-gguf.gguf", "huge-count.gguf", "two"}
    assert "truncated" in said["cut.gguf"]
    assert "not a GGUF file" in said["not-gguf.gguf"]
    assert "two" in said["two"] and "2 .gguf files" in said["two"]


def test_a_malformed_gguf_given_by_path_never_reaches_llama_cpp(models, monkeypatch):
    import llama_cpp

    loads = []
    monkeypatch.setattr(llama_cpp, "Llama", lambda *a, **k: loads.append(a))
    runner = Runner(ModelRegistry([(models, "user")]))
    with pytest.raises(ModelFileError, match="truncated"):
        runner.registry.resolve(str(models / "cut.gguf"))
    events = run(runner, TextJob(model="cut", prompt="the sea"))
    assert isinstance(events[-1], Failed) and "truncated" in events[-1].message
    assert loads == []


def test_loading_needs_more_memory_than_the_machine_has_is_refused_first(models, monkeypatch):
    import llama_cpp

    from studio.models import gguf_file

    loads = []
    monkeypatch.setattr(llama_cpp, "Llama", lambda *a, **k: loads.append(a))
    real = gguf_file.check_loadable
    monkeypatch.setattr(gguf_file, "check_loadable", lambda header, tokens: real(header, tokens, available=1000))
    events = run(Runner(ModelRegistry([(models, "user")])), TextJob(model="tiny", prompt="the sea"))
    assert isinstance(events[-1], Failed) and "memory" in events[-1].message
    assert "\n" not in events[-1].message and loads == []


def test_a_checked_file_llama_cpp_still_cannot_load_is_one_sentence(tmp_path):
    """A header that passes every check but names an architecture llama.cpp does not know."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(tmp_path / "future.gguf"), "nosucharch")
    writer.add_context_length(64)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    runner = Runner(ModelRegistry([(tmp_path, "user")]))
    assert runner.registry.resolve("future").details.startswith("nosucharch · ")
    events = run(runner, TextJob(model="future", prompt="the sea"))
    assert isinstance(events[-1], Failed) and "\n" not in events[-1].message
    assert "llama.cpp could not load future.gguf" in events[-1].message and "'nosucharch'" in events[-1].message
