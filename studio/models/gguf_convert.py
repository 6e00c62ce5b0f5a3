"""Write a transformers causal-LM folder as one GGUF file, for the llama.cpp backend.

The studio's own converter, for the two families it ships and tests with: GPT-2 (learned positions,
fused QKV) and Llama (RoPE, GQA), each with a byte-level BPE tokenizer (tokenizer.json, as GPT-2,
Llama 3 and Qwen ship theirs). The tensor names and metadata keys are llama.cpp's (the `gguf`
package's constants); Llama's Q and K rows are permuted to llama.cpp's rotary layout, as its own
convert_hf_to_gguf.py does. Other families: use that converter (in llama.cpp's source package).

Weights are written as Q8_0 by default (every matrix whose rows are a multiple of 32 long; norms,
biases and odd shapes stay F32), or F16/F32. numpy, safetensors and gguf are imported inside the
functions: importing this module stays cheap."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from studio.core.errors import ModelFileError
from studio.models import formats

QUANT_TYPES = ("q8_0", "f16", "f32")
SUPPORTED = ("gpt2", "llama")


def convert_to_gguf(folder: Path, out: Path, quant: str = "q8_0") -> Path:
    """Write `folder` (a transformers GPT-2 or Llama folder) as the GGUF file `out`."""
    import gguf

    if quant not in QUANT_TYPES:
        raise ModelFileError(f"{quant!r} is not a GGUF weight type this converter writes ({', '.join(QUANT_TYPES)}).")
    config = formats.read_json(folder / "config.json")
    family = config.get("model_type")
    if family not in SUPPORTED:
        raise ModelFileError(
            f"{folder.name} is a {family!r} model; the studio converts only {' and '.join(SUPPORTED)} folders "
            "(use convert_hf_to_gguf.py from llama.cpp's source package for others)."
        )
    tensors = _read_weights(folder)
    writer = gguf.GGUFWriter(str(out), family)
    writer.add_name(folder.name)
    writer.add_file_type({"q8_0": 7, "f16": 1, "f32": 0}[quant])  # llama_ftype: MOSTLY_Q8_0, MOSTLY_F16, ALL_F32
    if family == "gpt2":
        _gpt2(writer, config, tensors, quant)
    else:
        _llama(writer, config, tensors, quant)
    _tokenizer(writer, folder, config)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _read_weights(folder: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelFileError(f"{folder} has no .safetensors weights to convert.")
    tensors: dict[str, Any] = {}
    for file in files:
        tensors.update(load_file(str(file)))
    return tensors


def _add(writer: Any, name: str, array: Any, quant: str) -> None:
    """One tensor in the chosen type: 2-D matrices quantised, vectors always F32 (llama.cpp adds
    norms and biases in F32)."""
    import gguf
    import numpy as np

    data = np.ascontiguousarray(array, dtype=np.float32)
    if data.ndim < 2 or quant == "f32":
        writer.add_tensor(name, data)
    elif quant == "q8_0" and data.shape[-1] % 32 == 0:
        kind = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def _gpt2(writer: Any, config: dict[str, Any], t: dict[str, Any], quant: str) -> None:
    n_embd, n_layer = int(config["n_embd"]), int(config["n_layer"])
    writer.add_context_length(int(config["n_positions"]))
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(int(config.get("n_inner") or 4 * n_embd))
    writer.add_block_count(n_layer)
    writer.add_head_count(int(config["n_head"]))
    writer.add_layer_norm_eps(float(config.get("layer_norm_epsilon", 1e-5)))
    prefix = "transformer." if "transformer.wte.weight" in t else ""
    _add(writer, "token_embd.weight", t[f"{prefix}wte.weight"], quant)
    _add(writer, "position_embd.weight", t[f"{prefix}wpe.weight"], "f32")
    _add(writer, "output_norm.weight", t[f"{prefix}ln_f.weight"], quant)
    _add(writer, "output_norm.bias", t[f"{prefix}ln_f.bias"], quant)
    # HF's Conv1D keeps weights as (in, out); llama.cpp wants (out, in) like nn.Linear.
    names = {
        "ln_1": "attn_norm",
        "attn.c_attn": "attn_qkv",
        "attn.c_proj": "attn_output",
        "ln_2": "ffn_norm",
        "mlp.c_fc": "ffn_up",
        "mlp.c_proj": "ffn_down",
    }
    for i in range(n_layer):
        for hf, ours in names.items():
            weight = t[f"{prefix}h.{i}.{hf}.weight"]
            _add(writer, f"blk.{i}.{ours}.weight", weight.T if weight.ndim == 2 else weight, quant)
            _add(writer, f"blk.{i}.{ours}.bias", t[f"{prefix}h.{i}.{hf}.bias"], quant)
    if "lm_head.weight" in t and not config.get("tie_word_embeddings", True):
        _add(writer, "output.weight", t["lm_head.weight"], quant)


def _permute(weights: Any, heads: int) -> Any:
    """HF's rotate-half Q/K rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf's permute)."""
    shape = weights.shape
    return weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _llama(writer: Any, config: dict[str, Any], t: dict[str, Any], quant: str) -> None:
    n_embd, n_layer = int(config["hidden_size"]), int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or n_embd // heads)
    if config.get("rope_scaling"):
        raise ModelFileError("This Llama folder scales its RoPE (rope_scaling); convert it with llama.cpp's converter.")
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(n_layer)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    _add(writer, "token_embd.weight", t["model.embed_tokens.weight"], quant)
    _add(writer, "output_norm.weight", t["model.norm.weight"], quant)
    if "lm_head.weight" in t and not config.get("tie_word_embeddings", False):
        _add(writer, "output.weight", t["lm_head.weight"], quant)
    for i, hf, ours in _llama_layers(n_layer):
        weight = t[f"model.layers.{i}.{hf}.weight"]
        if hf == "self_attn.q_proj":
            weight = _permute(weight, heads)
        elif hf == "self_attn.k_proj":
            weight = _permute(weight, kv_heads)
        _add(writer, f"blk.{i}.{ours}.weight", weight, quant)


def _llama_layers(n_layer: int) -> Iterator[tuple[int, str, str]]:
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(n_layer):
        for hf, ours in names.items():
            yield i, hf, ours


def _tokenizer(writer: Any, folder: Path, config: dict[str, Any]) -> None:
    """A byte-level BPE tokenizer.json as llama.cpp's "gpt2" tokenizer, with its special tokens,
    and the folder's chat template when it has one."""
    import gguf

    source = folder / "tokenizer.json"
    data = formats.read_json(source) if source.is_file() else {}
    model: dict[str, Any] = data["model"] if isinstance(data.get("model"), dict) else {}
    pre = data.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or "ByteLevel" not in str(pre):
        raise ModelFileError(
            f"{folder.name} has no byte-level BPE tokenizer.json; the studio's converter writes only those "
            "(use llama.cpp's converter for SentencePiece and others)."
        )
    vocab: dict[str, int] = model["vocab"]
    special = {a["id"]: a["content"] for a in data.get("added_tokens", []) if isinstance(a, dict)}
    size = max(int(config.get("vocab_size") or 0), len(vocab), max(special, default=-1) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for text, i in vocab.items():
        tokens[i], types[i] = text, gguf.TokenType.NORMAL
    for i, text in special.items():
        tokens[i], types[i] = text, gguf.TokenType.CONTROL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id)):
        value = config.get(key)
        if isinstance(value, int):
            add(value)
    if isinstance(config.get("pad_token_id"), int):
        writer.add_pad_token_id(config["pad_token_id"])
    writer.add_add_bos_token(False)  # GPT-2 style: the text starts as written
    template = formats.find_chat_template(folder)
    if template:
        writer.add_chat_template(template)
