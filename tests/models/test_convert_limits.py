"""`studio convert` takes no more than a file is worth: a tensor counts at the size its copy would
be written at (a stride-0 view of four bytes included), the copy has a budget (the pickle's own
size, the free disk, a hard cap), the converter has a memory limit and a clock, and a refusal
leaves no file behind.

The limits are module constants the parent reads; each test lowers the one it is about, so the
files stay a few kilobytes and the declared sizes a few megabytes."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import pytest
import torch

from studio.cli import main
from studio.core.errors import ModelFileError
from studio.models import pickle_import

MB = 1024**2


@pytest.fixture
def small_budget(monkeypatch):
    """A copy may take its pickle's size × COPY_GROWTH plus 1 MB."""
    monkeypatch.setattr(pickle_import, "COPY_SLACK", MB)


def leftovers(folder: Path) -> list[str]:
    """Everything in `folder` but the pickles the test wrote: copies and temporary files."""
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".pt")


def refusal(path: Path) -> str:
    with pytest.raises(ModelFileError) as info:
        pickle_import.convert(path)
    message = info.value.message
    assert "\n" not in message and message.endswith(".")
    assert leftovers(path.parent) == []
    return message


@pytest.mark.parametrize(
    "view",
    [
        torch.zeros(1).expand(1024, 1024),  # stride 0: four bytes read as 4 MB
        torch.arange(2047, dtype=torch.float32).as_strided((1024, 1024), (1, 1)),  # each row one on from the last: 8 KB
    ],
    ids=["stride-0", "overlapping"],
)
def test_a_small_view_declaring_a_large_tensor_is_refused_by_its_declared_size(tmp_path, small_budget, view):
    path = tmp_path / "tiny.pt"
    torch.save({"w": view}, path)
    assert path.stat().st_size < 16 * 1024
    message = refusal(path)
    assert message.startswith("tiny.pt declares tensor 'w' as 1024×1024 float32 (4.2 MB), more than what a copy of a")
    assert message.endswith("file may take (1.1 MB), so nothing was written.")


def test_the_cli_says_the_same_sentence_and_writes_nothing(tmp_path, small_budget, capsys):
    path = tmp_path / "tiny.pt"
    torch.save({"w": torch.zeros(1).expand(1024, 1024)}, path)
    assert main(["convert", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("studio: tiny.pt declares tensor 'w' as 1024×1024") and "\n" not in err
    assert leftovers(tmp_path) == []


def test_tensors_that_add_up_past_the_budget_are_refused_at_the_one_that_crosses_it(tmp_path, small_budget):
    path = tmp_path / "many.pt"
    torch.save({f"t{i}": torch.zeros(1).expand(256, 256) for i in range(8)}, path)  # 256 KB each
    message = refusal(path)  # four make 1 MB, within 1 MB plus four times the file's 3 KB; the fifth is not
    assert message.startswith("many.pt declares tensor 't4' as 256×256 float32 (262 KB), which takes its tensors past")


def test_the_copy_must_fit_on_the_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(pickle_import, "free_disk", lambda folder: pickle_import.DISK_RESERVE + 1000)
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(100, 100)}, path)
    assert "more than the free space on the disk (1.0 KB)" in refusal(path)


def test_the_copy_has_a_hard_cap_whatever_the_file_and_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(pickle_import, "MAX_COPY_BYTES", 1000)
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(100, 100)}, path)
    assert "more than the converter's limit (1.0 KB)" in refusal(path)


def legacy_declaring(numel: int) -> bytes:
    """A legacy-format (pre-zip) torch file whose one storage declares `numel` floats but holds 7:
    torch allocates a storage at its declared size before it reads the bytes."""
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(7)}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    reader = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info; then the state dict
        pickle.load(reader)
    location = b"X\x03\x00\x00\x00cpuq\x06K\x07"  # ... 'cpu', then the storage's size as a one-byte int
    at = data.index(location, reader.tell()) + len(location) - 2
    return data[:at] + b"J" + struct.pack("<i", numel) + data[at + 2 :]


@pytest.mark.parametrize("content", ["view", "legacy"])
def test_the_converter_runs_within_a_memory_limit(tmp_path, monkeypatch, content):
    """With the copy budget out of the way, what the child allocates meets its address-space limit:
    copying out a 64 MB view, or unpickling a storage that declares 8 GB."""
    monkeypatch.setattr(pickle_import, "COPY_SLACK", 1024**3)
    monkeypatch.setattr(pickle_import, "available_bytes", lambda: 0)
    monkeypatch.setattr(pickle_import, "ADDRESS_HEADROOM", 32 * MB)
    path = tmp_path / "big.pt"
    if content == "view":
        torch.save({"w": torch.zeros(1).expand(4096, 4096)}, path)
    else:
        path.write_bytes(legacy_declaring(2**31 - 1))
    assert refusal(path) == "big.pt is too large to convert with the memory available."


def test_a_conversion_that_outlasts_its_time_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(pickle_import, "CONVERT_SECONDS", 0.01)
    path = tmp_path / "slow.pt"
    torch.save({"w": torch.ones(4)}, path)
    assert refusal(path) == "Converting slow.pt took longer than 1 second, so it was stopped and nothing was written."


def test_shared_and_sliced_tensors_within_the_budget_convert_to_their_values(tmp_path, small_budget):
    from safetensors.torch import load_file

    base = torch.arange(64, dtype=torch.float32).reshape(8, 8)
    state = {"a": base, "tied": base, "column": base[:, 1], "row": torch.zeros(1).expand(8)}
    path = tmp_path / "fine.pt"
    torch.save(state, path)
    [done] = pickle_import.convert(path)
    assert done.tensors == 4 and leftovers(tmp_path) == ["fine.safetensors"]
    copy = load_file(str(done.target))
    assert all(torch.equal(copy[k], v) for k, v in state.items())
