"""Exporting causal language models to ONNX with their KV cache (studio.engine.export.text), on
tiny random GPT-2 and Llama models: Optimum's names and dynamic axes, an empty past for the
prefill, the folder layout, parity with torch, and a family the export refuses."""

import json
import shutil

import numpy as np
import pytest

from studio.bench.tiny_models import build_tiny_gpt2, build_tiny_llama
from studio.core.errors import StudioError
from studio.engine.export.graph import MAX_IR_VERSION, PARITY_TOKENS
from studio.engine.export.onnx_export import export_onnx
from studio.engine.export.text import io_names
from studio.models.registry import ModelRegistry

MODELS = ("tiny-gpt2", "tiny-llama")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """root with tiny-gpt2 and tiny-llama, each exported beside it as <name>-onnx; and per model
    its parity and the progress lines it said."""
    root = tmp_path_factory.mktemp("export-text")
    build_tiny_gpt2(root / "tiny-gpt2")
    build_tiny_llama(root / "tiny-llama")
    registry = ModelRegistry([(root, "user")])
    results = {}
    for name in MODELS:
        said = []
        parity = export_onnx(registry.resolve(name), root / f"{name}-onnx", said.append)
        results[name] = (parity, said)
    return root, results


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", MODELS)
def test_the_graph_has_optimums_names_and_dynamic_axes(exported, name):
    import onnx

    root, _ = exported
    graph_file = onnx.load(str(root / f"{name}-onnx" / "model.onnx"))
    onnx.checker.check_model(graph_file)
    assert graph_file.ir_version <= MAX_IR_VERSION
    inputs = {i.name: i for i in graph_file.graph.input}
    outputs = {o.name: o for o in graph_file.graph.output}
    names_in, names_out, _ = io_names(2)
    assert list(inputs) == names_in and list(outputs) == names_out
    int64, float32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT
    for key in ("input_ids", "position_ids"):
        assert inputs[key].type.tensor_type.elem_type == int64
        assert dims(inputs[key]) == ["batch_size", "sequence_length"]
    assert dims(inputs["attention_mask"]) == ["batch_size", "total_sequence_length"]
    assert dims(outputs["logits"]) == ["batch_size", "sequence_length", 400]
    heads, head_dim = (2, 16) if name == "tiny-gpt2" else (2, 8)  # Llama: grouped-query, 2 kv heads of 4
    for i in range(2):
        for kind in ("key", "value"):
            past, present = inputs[f"past_key_values.{i}.{kind}"], outputs[f"present.{i}.{kind}"]
            assert past.type.tensor_type.elem_type == present.type.tensor_type.elem_type == float32
            assert dims(past) == ["batch_size", heads, "past_sequence_length", head_dim]
            assert dims(present) == ["batch_size", heads, "total_sequence_length", head_dim]


@pytest.mark.parametrize("name", MODELS)
def test_parity_is_64_identical_greedy_tokens_and_progress_is_said(exported, name):
    _, results = exported
    parity, said = results[name]
    assert parity.ok and PARITY_TOKENS == 64
    assert parity.lines[0] == "greedy decoding: 64/64 greedy tokens identical ok"
    assert any(line.startswith("exporting model.onnx") for line in said)
    assert any("time per token" in line for line in said)


@pytest.mark.parametrize("name", MODELS)
def test_an_empty_past_prefill_and_a_later_step_match_torch(exported, name):
    """The graph was traced with a two-token past; a 100-token prompt with no past at all, then
    one token on its presents, gives torch's logits."""
    import onnxruntime
    import torch
    from transformers import AutoModelForCausalLM

    root, _ = exported
    session = onnxruntime.InferenceSession(
        str(root / f"{name}-onnx" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    lm = AutoModelForCausalLM.from_pretrained(str(root / name), local_files_only=True, dtype=torch.float32).eval()
    ids = torch.randint(0, 400, (1, 101), generator=torch.Generator().manual_seed(0))
    names_in, names_out, _ = io_names(2)
    _, heads, _, head_dim = session.get_inputs()[3].shape  # past_key_values.0.key
    empty = np.zeros((1, heads, 0, head_dim), np.float32)
    feeds = {
        "input_ids": ids[:, :100].numpy(),
        "attention_mask": np.ones((1, 100), np.int64),
        "position_ids": np.arange(100)[None],
        **{n: empty for n in names_in[3:]},
    }
    first = session.run(names_out, feeds)
    feeds = {
        "input_ids": ids[:, 100:].numpy(),
        "attention_mask": np.ones((1, 101), np.int64),
        "position_ids": np.array([[100]]),
        **dict(zip(names_in[3:], first[1:])),
    }
    second = session.run(names_out, feeds)
    with torch.no_grad():
        expected = lm(ids).logits.numpy()
    assert first[0].shape == (1, 100, 400) and first[1].shape[2] == 100 and second[1].shape[2] == 101
    assert np.abs(first[0] - expected[:, :100]).max() < 1e-4
    assert np.abs(second[0] - expected[:, 100:]).max() < 1e-4


def test_the_export_is_an_optimum_folder_the_registry_pairs_with_its_source(exported):
    root, _ = exported
    out = root / "tiny-gpt2-onnx"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "config.json",
        "generation_config.json",
        "merges.txt",
        "model.onnx",
        "studio.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    assert (out / "tokenizer.json").read_bytes() == (root / "tiny-gpt2" / "tokenizer.json").read_bytes()
    assert json.loads((out / "studio.json").read_text())["exported_from"] == "tiny-gpt2"
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no staging folder left
    registry = ModelRegistry([(root, "user")])
    export = registry.resolve("tiny-gpt2-onnx")
    assert (export.kind, export.format, export.runtimes) == ("text", "onnx-text", ("onnx",))
    assert registry.resolve("tiny-gpt2").runtimes == ("torch", "onnx")


def test_a_family_whose_cache_slides_is_refused_in_a_sentence(exported):
    """A Mistral with a sliding attention window keeps only the window's keys: not the graph's
    one-growing-pair-per-layer layout, so it is refused and nothing is left behind."""
    root, _ = exported
    folder = root.parent / "sliding" / "tiny-mistral"
    shutil.copytree(root / "tiny-llama", folder)  # Llama's weights are Mistral's, name for name
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=16)
    (folder / "config.json").write_text(json.dumps(config))
    model = ModelRegistry([(folder.parent, "user")]).resolve("tiny-mistral")
    with pytest.raises(StudioError, match="sliding-window") as caught:
        export_onnx(model, folder.parent / "out", lambda line: None)
    assert "tiny-mistral" in caught.value.message and "\n" not in caught.value.message
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny-mistral"]


def test_an_exported_lm_carries_the_tokenizer_files_older_readers_need(exported):
    """vocab.json and merges.txt are the tokenizer.json's own, and the config names a class that
    transformers 4 knows (tests/models/test_tokenizer_files.py reads such files as it would)."""
    root, _ = exported
    out = root / "tiny-gpt2-onnx"
    model = json.loads((out / "tokenizer.json").read_text())["model"]
    assert json.loads((out / "vocab.json").read_text()) == model["vocab"]
    assert (out / "merges.txt").read_text().splitlines()[1:] == [
        " ".join(m) if isinstance(m, list) else m for m in model["merges"]
    ]
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    # that generic class would also hand out token_type_ids, which a causal LM's generate() refuses
    assert config["model_input_names"] == ["input_ids", "attention_mask"]
