"""Export a causal language model (a transformers folder) to ONNX with its KV cache, in the layout
Optimum's ORTModelForCausalLM reads: one graph `model.onnx` beside config.json, the generation
config and the tokenizer files.

The graph takes the whole state of one decoding step and gives back the next, under Optimum's
names, every axis dynamic:

    input_ids, position_ids                 int64   (batch_size, sequence_length)
    attention_mask                          int64   (batch_size, total_sequence_length)
    past_key_values.{i}.key / .value        float32 (batch_size, kv_heads, past_sequence_length, head_dim)
    -> logits                               float32 (batch_size, sequence_length, vocab)
    -> present.{i}.key / .value             float32 (batch_size, kv_heads, total_sequence_length, head_dim)

so the same graph runs the prefill (the whole prompt, with empty pasts: past_sequence_length 0)
and every later step (one token, the previous presents as pasts). It is traced with a past of
two tokens and a three-token input, so no branch for "no past" or "one token" is baked in; the
attention is transformers' eager implementation, whose masks trace into plain tensor ops.

Parity: 64 greedy tokens from a fixed prompt, torch's generate() against the studio's own ONNX
Runtime backend (OnnxTextBackend) on the exported folder, which must agree token for token."""

from __future__ import annotations

import contextlib
import inspect
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from studio.core.errors import StudioError, first_line
from studio.core.kinds import ModelFormat, ModelKind, Runtime
from studio.engine.export.graph import PARITY_TOKENS, Parity, export_graph
from studio.models.tokenizer_files import write_legacy_tokenizer_files

log = logging.getLogger(__name__)

GRAPH = "model.onnx"
PARITY_PROMPT = "Once upon a time"
TRACE_PAST, TRACE_NEW = 2, 3  # the example step the graph is traced with (see the module docstring)
# Copied beside the graph when the source has them: what ORTModelForCausalLM and the studio's
# backend read, and the model's licence and card, which travel with its weights. Never code.
SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "README.md",
    "MODEL_CARD.md",
    "LICENSE",
    "LICENSE.txt",
    "LICENSE.md",
    "NOTICE",
)

Say = Callable[[str], None]


def io_names(layers: int) -> tuple[list[str], list[str], dict[str, dict[int, str]]]:
    """(input names, output names, dynamic axes) of a graph with `layers` cached layers."""
    pasts = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    presents = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    axes.update({name: {0: "batch_size", 2: "past_sequence_length"} for name in pasts})
    axes.update({name: {0: "batch_size", 2: "total_sequence_length"} for name in presents})
    return ["input_ids", "attention_mask", "position_ids", *pasts], ["logits", *presents], axes


def export_text(model: Any, out: Path, say: Say) -> Parity:
    """Export the transformers causal LM `model` (a ModelInfo) into the empty folder `out` and
    check it against torch. StudioError for a model family the export cannot handle."""
    folder, out = Path(model.path), Path(out)
    say(f"loading {model.id} in float32…")
    lm = _load(folder)
    family = getattr(lm.config, "model_type", type(lm).__name__)
    with _explained(model.id, family):
        past = _example_past(lm, model.id, family)
    layers = len(past) // 2

    say(f"exporting {GRAPH} ({layers} layers, with the KV cache)…")
    inputs, outputs, axes = io_names(layers)
    with _explained(model.id, family):
        export_graph(_with_cache(lm), _example_step(lm, past), out / GRAPH, inputs, outputs, axes)
    copied = copy_side_files(folder, out)
    copied += write_legacy_tokenizer_files(out)  # for readers on transformers 4, Optimum's among them
    say(f"copied {', '.join(copied)}")

    say(f"checking {PARITY_TOKENS} greedy tokens from {PARITY_PROMPT!r}: torch against ONNX Runtime…")
    parity = Parity()
    same, torch_s, onnx_s = _greedy_parity(lm, model, out)
    parity.tokens("greedy decoding", same, PARITY_TOKENS)
    say(
        f"time per token: torch {1000 * torch_s / PARITY_TOKENS:.2f} ms, "
        f"ONNX Runtime {1000 * onnx_s / PARITY_TOKENS:.2f} ms (CPU, float32, prompt included)"
    )
    return parity


def copy_side_files(source: Path, out: Path) -> list[str]:
    """Copy the configs, tokenizer files and licence of `source` into `out`; their names."""
    copied = []
    for name in SIDE_FILES:
        path = source / name
        if path.is_file():
            shutil.copyfile(path, out / name)
            copied.append(name)
    return copied


# ---------------------------------------------------------------------------------------------
# Loading and tracing


@contextlib.contextmanager
def _explained(model_id: str, family: str) -> Iterator[None]:
    """Whatever the model's forward pass, the tracer or the exporter raise: one sentence naming the
    family (the traceback goes to the log). Running out of memory passes through."""
    try:
        yield
    except (StudioError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a family's code can raise anything while traced
        log.exception("exporting %s failed", model_id)
        raise StudioError(f"{model_id} ({family}) could not be exported to ONNX ({first_line(exc)}).") from None


def _load(folder: Path) -> Any:
    """The model in float32 on the CPU, in eval mode, with eager attention (offline, safetensors
    only, never its authors' code)."""
    import torch
    from transformers import AutoModelForCausalLM

    from studio.models.libraries import quiet_library_logs
    from studio.models.paths import offline
    from studio.models.safe_files import check_folder_weights, explained_load_errors

    offline()
    quiet_library_logs("transformers")
    check_folder_weights(folder)
    with explained_load_errors(folder, "a transformers language model"):
        lm = AutoModelForCausalLM.from_pretrained(
            str(folder),
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            dtype=torch.float32,
            attn_implementation="eager",
        )
    return lm.eval()


def _example_past(lm: Any, model_id: str, family: str) -> list[Any]:
    """Keys and values of a real two-token prefix, flat (key, value per layer): the past the graph
    is traced with. StudioError when the family's cache is not one plain key/value pair per layer
    (sliding-window or mixed attention, recurrent state), which the graph's layout cannot carry."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache_keyword = _cache_keyword(lm)
    if cache_keyword is None or not {"position_ids", "attention_mask"} <= set(inspect.signature(lm.forward).parameters):
        raise StudioError(
            f"{model_id} is a {family} model, whose forward pass takes no position ids or KV "
            "cache, so the studio cannot export it to ONNX; run it on torch."
        )
    refused = StudioError(
        f"{model_id} is a {family} model, whose cache is not one key/value pair per layer "
        "(sliding-window, mixed or recurrent attention), so the studio cannot export it to "
        "ONNX yet; run it on torch."
    )
    try:
        cache = DynamicCache(config=lm.config)
    except Exception:  # noqa: BLE001 - a config the cache cannot read is a family we do not handle
        raise refused from None
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        raise refused
    ids = torch.tensor([[1] * TRACE_PAST])
    with torch.no_grad():
        result = lm(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=torch.arange(TRACE_PAST)[None],
            use_cache=True,
            **{cache_keyword: cache},
        )
    cache = _returned_cache(result)
    layers = getattr(cache, "layers", None)
    if not layers or any(
        type(layer) is not DynamicLayer
        or layer.keys is None
        or layer.keys.dim() != 4
        or layer.keys.shape[2] != TRACE_PAST
        for layer in layers
    ):
        raise refused
    return [tensor for layer in layers for tensor in (layer.keys, layer.values)]


def _cache_keyword(lm: Any) -> str | None:
    """The name the model's forward pass takes its KV cache by: `cache` since transformers 5.25
    (`past_key_values` still accepted, deprecated), `past_key_values` before; None when it takes none."""
    accepted = inspect.signature(lm.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in accepted), None)


def _returned_cache(result: Any) -> Any:
    """The cache a forward pass gave back, under either transformers' name for it."""
    cache = getattr(result, "cache", None)
    return cache if cache is not None else getattr(result, "past_key_values", None)


def _example_step(lm: Any, past: list[Any]) -> tuple:
    """The arguments of the traced step: three new tokens after the two-token past."""
    import torch

    total = TRACE_PAST + TRACE_NEW
    ids = torch.tensor([[2, 3, 4]]) % int(lm.config.vocab_size)
    return (ids, torch.ones((1, total), dtype=torch.int64), torch.arange(TRACE_PAST, total)[None], *past)


def _with_cache(lm: Any) -> Any:
    """`lm` as a module of flat tensors: (input_ids, attention_mask, position_ids, key 0, value 0,
    key 1, ...) -> (logits, present key 0, present value 0, ...), for the tracer."""
    import torch
    from transformers import DynamicCache

    cache_keyword = _cache_keyword(lm)
    if cache_keyword is None:  # _example_past refuses such a model first
        raise StudioError(
            "This model's forward pass takes no KV cache, so the studio cannot export it to ONNX; run it on torch."
        )

    class WithCache(torch.nn.Module):
        def __init__(self, lm: Any):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(ddp_cache_data=list(zip(past[0::2], past[1::2])), config=self.lm.config)
            result = self.lm(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                return_dict=True,
                **{cache_keyword: cache},
            )
            flat = [result.logits]
            for layer in _returned_cache(result).layers:
                flat += [layer.keys, layer.values]
            return tuple(flat)

    # eval(): the exporter puts the module back in the mode it found it in, and a new Module is in
    # training mode, which would switch dropout on in the model after the export.
    return WithCache(lm).eval()


# ---------------------------------------------------------------------------------------------
# Parity


def _greedy_parity(lm: Any, model: Any, out: Path) -> tuple[int, float, float]:
    """(how many of the first PARITY_TOKENS greedy tokens agree, torch seconds, ONNX seconds):
    torch's generate() with no stop token against the ONNX backend's own decoding loop."""
    import torch
    from transformers import GenerationConfig

    from studio.engine.backends.text.onnx_text import OnnxTextBackend
    from studio.models.registry import ModelInfo

    exported = ModelInfo(
        f"{model.id}-onnx", ModelKind.TEXT, ModelFormat.ONNX_TEXT, out, "path", runtimes=(Runtime.ONNX,)
    )
    backend = OnnxTextBackend.load(exported, "cpu", "float32")
    try:
        ids = backend.tokenizer(PARITY_PROMPT)["input_ids"] or [0]
        backend.greedy(ids, 2)  # warm-up: the first runs of a session are slow, and would be timed
        started = time.perf_counter()
        ours = backend.greedy(ids, PARITY_TOKENS)
        onnx_s = time.perf_counter() - started
    finally:
        backend.close()
    # No stop token on either side: both decode exactly PARITY_TOKENS tokens.
    pad = lm.generation_config.pad_token_id
    lm.generation_config = GenerationConfig(pad_token_id=pad if pad is not None else 0)
    config = GenerationConfig(
        do_sample=False, max_new_tokens=PARITY_TOKENS, eos_token_id=None, pad_token_id=lm.generation_config.pad_token_id
    )
    prompt = torch.tensor([ids])
    with torch.inference_mode():
        lm.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=config, max_new_tokens=2)
        started = time.perf_counter()
        theirs = lm.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=config)[0, len(ids) :]
        torch_s = time.perf_counter() - started
    same = 0
    for a, b in zip(ours, theirs.tolist()):
        if a != b:
            break
        same += 1
    return same, torch_s, onnx_s
