"""The pieces that weigh a model folder before it is built: building on the meta device with a
tensor count that stops a runaway config, comparing names and shapes with the library's own
exceptions (tied weights, renamings, ignore lists), the files a library reads, and the machine's
budgets."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from studio.core.errors import ModelFileError
from studio.models import load_budget, weights_match
from studio.models.weights_match import build_on_meta, compare, file_shapes, weights_files

HERE = Path("model")


def test_a_model_built_on_meta_allocates_nothing_whatever_its_size():
    model = build_on_meta(lambda: torch.nn.Linear(100_000, 100_000), HERE, file_tensors=2)  # 40 GB declared
    assert model.weight.device.type == "meta" and model.weight.shape == (100_000, 100_000)


def test_a_config_making_far_more_tensors_than_its_files_hold_stops_being_built_at_once():
    made = []

    def deep():
        for _ in range(200_000):
            made.append(torch.nn.Linear(2, 2))  # two tensors each
        return torch.nn.Sequential(*made)

    with pytest.raises(ModelFileError) as info:
        build_on_meta(deep, HERE, file_tensors=10)
    limit = weights_match.TENSORS_PER_FILE_TENSOR * 10 + weights_match.TENSORS_SLACK
    assert info.value.message == (
        f"The config.json in model describes a model of more than {limit} tensors, but its weights hold 10: the "
        "config does not belong to these weights, so the model was not built."
    )
    assert len(made) <= limit // 2  # stopped at the limit, not after 200 000 layers


def test_a_library_swallowing_the_stop_cannot_build_on():
    def stubborn():
        layers = []
        for _ in range(1000):
            try:
                layers.append(torch.nn.Linear(2, 2))
            except Exception:  # noqa: BLE001 - what a careless library might do
                pass
        return torch.nn.Sequential(*layers)

    with pytest.raises(ModelFileError, match="describes a model of more than"):
        build_on_meta(stubborn, HERE, file_tensors=1)


def test_modules_built_meanwhile_in_other_threads_are_neither_counted_nor_on_meta():
    elsewhere = []

    def build():
        thread = threading.Thread(target=lambda: elsewhere.extend(torch.nn.Linear(2, 2) for _ in range(200)))
        thread.start()
        thread.join()
        return torch.nn.Linear(2, 2)

    build_on_meta(build, HERE, file_tensors=1)
    assert len(elsewhere) == 200 and all(m.weight.device.type == "cpu" for m in elsewhere)


EXPECTED = {"embed.weight": (10, 4), "head.weight": (10, 4), "norm.weight": (4,), "norm.bias": (4,)}


def refused(**kw) -> str:
    with pytest.raises(ModelFileError) as info:
        compare(HERE, EXPECTED, **kw)
    return info.value.message


def test_a_tied_tensor_is_whole_when_either_side_of_the_pair_is_stored():
    tied = {"head.weight": "embed.weight"}
    norm = {"norm.weight": (4,), "norm.bias": (4,)}
    compare(HERE, EXPECTED, {**norm, "embed.weight": (10, 4)}, tied=tied)
    compare(HERE, EXPECTED, {**norm, "head.weight": (10, 4)}, tied=tied)
    assert refused(found=norm, tied=tied).startswith(
        "The weights in model lack 1 of the 3 tensors its config.json describes (embed.weight)"
    )


def test_missing_and_unexpected_tensors_are_counted_and_named_in_one_sentence():
    found = {"a": (1,), "b": (1,), "c": (1,), "norm.bias": (4,)}
    assert refused(found=found) == (
        "The weights in model lack 3 of the 4 tensors its config.json describes (embed.weight, head.weight, …) "
        "and hold 3 tensors it does not (a, b, …): they do not belong to this config, so the model was not loaded."
    )


def test_the_librarys_ignore_lists_and_renamings_are_honoured():
    found = {"embed.gamma": (10, 4), "head.weight": (10, 4), "norm.weight": (4,), "old.masked_bias": (1,)}

    def rename(name):
        return (name.replace("gamma", "weight"),), True

    compare(
        HERE,
        EXPECTED,
        found,
        rename=rename,
        ignore_missing=weights_match.patterns([r"norm\.bias"]),
        ignore_unexpected=weights_match.patterns([r"masked_bias"]),
    )


def test_a_shape_the_config_does_not_give_is_refused_naming_both():
    found = {k: v for k, v in EXPECTED.items()} | {"embed.weight": (4_000_000, 4)}
    assert refused(found=found) == (
        "The weights in model do not match its config.json: they hold embed.weight as "
        "4000000×4 where the config makes it 10×4, so the model was not loaded."
    )


def test_a_split_tensor_fills_every_part_and_keeps_its_own_shape():
    expected = {"q": (2, 2), "k": (2, 2), "v": (2, 2)}
    compare(HERE, expected, {"qkv": (6, 2)}, rename=lambda name: (("q", "k", "v"), False))


def test_transformers_reads_the_single_file_first_and_diffusers_the_index(tmp_path):
    save_file({"w": torch.ones(1)}, str(tmp_path / "model.safetensors"))
    save_file({"w": torch.ones(1)}, str(tmp_path / "shard-1.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "shard-1.safetensors"}}))
    assert weights_files(tmp_path, "model") == [tmp_path / "model.safetensors"]
    assert weights_files(tmp_path, "model", index_first=True) == [tmp_path / "shard-1.safetensors"]
    (tmp_path / "shard-1.safetensors").unlink()
    assert weights_files(tmp_path, "model", index_first=True) == []  # the library names the missing shard
    assert weights_files(tmp_path, "nothing") == []


def test_a_header_without_a_shape_is_one_sentence(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": "huge", "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(ModelFileError) as info:
        file_shapes([path], tmp_path)
    message = info.value.message
    assert (
        message.startswith(f"{tmp_path.name}/model.safetensors is not a valid safetensors file (") and "'w'" in message
    )


def test_the_machine_budgets_and_sizes_in_words(monkeypatch, tmp_path):
    from studio.core import memory

    assert memory.total_bytes() > 0 and memory.free_disk(tmp_path) > 0
    assert load_budget.model_memory_budget() == memory.total_bytes()
    monkeypatch.setitem(__import__("sys").modules, "psutil", None)  # the fallback without psutil
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "absent")
    assert memory.available_bytes() > 0
    assert [memory.size_words(n) for n in (999, 1536, 4 * 10**6, 20 * 10**9)] == [
        "999 bytes",
        "1.5 KB",
        "4.0 MB",
        "20 GB",
    ]
    assert load_budget.shape_words((16384, 16384)) == "16384×16384" and load_budget.shape_words(()) == "a single number"
