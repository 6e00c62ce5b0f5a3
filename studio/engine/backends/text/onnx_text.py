"""Streaming text generation with a causal language model exported to ONNX with its KV cache
(studio.engine.export.text, or Optimum's ORTModelForCausalLM layout: `model.onnx` beside
config.json and the tokenizer files), on ONNX Runtime.

Everything but the forward pass is the torch backend's: prompt assembly and instruct mode, the
samplers (sampling.py's chain, as torch tensors), the streamer with its alternatives, stop
tokens and stop sequences, cancel within one token. Only the decoding loop is ours: the prompt
in one prefill (in chunks when long), then one token per step, the presents fed back as the
pasts; each step draws from the processed scores as transformers' generate() does (softmax and
multinomial under the job's seed, argmax when greedy), so a spec and seed give the same text.

No model weights are loaded besides the session: the torch backend's `model` here is a stand-in
holding the folder's config and generation config, which is all the shared code reads of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import JobCancelled, ModelFileError, StudioError
from studio.core.events import TextResult
from studio.core.jobs import TextJob
from studio.engine.backends import onnx_session
from studio.engine.backends.job_context import JobContext
from studio.engine.backends.text.sampling import StopSequenceReached
from studio.engine.backends.text.transformers_text import (
    CONTEXT_TOKENS,
    TransformersTextBackend,
    _sampling_processors,
    _streamer,
    _TopRecorder,
    check_tokenizer,
)
from studio.models.formats import ONNX_DECODER, find_chat_template
from studio.models.libraries import quiet_library_logs
from studio.models.paths import offline
from studio.models.safe_files import explained_load_errors

# The longest piece of prompt one forward pass reads: its logits are (piece, vocabulary) floats,
# 256 MB for a 512-token piece of a 128 000-token vocabulary, where one pass over a long prompt
# would take gigabytes for logits of which only the last row is used.
PREFILL_CHUNK = 512
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class _ConfigOnly:
    """What TransformersTextBackend reads of its torch model: `config` (the window) and
    `generation_config` (the stop tokens). No parameters: the session's file size is the model's."""

    def __init__(self, config: Any, generation_config: Any):
        self.config = config
        self.generation_config = generation_config

    def parameters(self) -> list:
        return []

    def buffers(self) -> list:
        return []


class CacheLayout:
    """A model.onnx's inputs and outputs in Optimum's naming, checked at load."""

    def __init__(self, session: Any, config: Any, label: str):
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        layers = 0
        while f"past_key_values.{layers}.key" in inputs:
            layers += 1
        self.past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
        self.output_names = ["logits"] + [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
        needed = ["input_ids", "attention_mask"] + (self.past_names or ["past_key_values.0.key"])
        missing = [n for n in needed if n not in inputs] + [n for n in self.output_names if n not in outputs]
        if missing:
            raise ModelFileError(
                f"{label} is not a language model exported with its KV cache in Optimum's "
                f"naming: it lacks {_listed(missing)}; export it again with `studio export-onnx`."
            )
        self.position_ids = "position_ids" in inputs  # some Optimum exports derive positions themselves
        unknown = sorted(set(inputs) - {"input_ids", "attention_mask", "position_ids", *self.past_names})
        if unknown:
            raise ModelFileError(
                f"{label} also takes {_listed(unknown)}, which the studio does not feed; "
                "export it again with `studio export-onnx`."
            )
        first = inputs[self.past_names[0]]
        self.dtype = NUMPY_TYPES.get(first.type)
        if self.dtype is None:
            raise ModelFileError(f"{label} keeps its KV cache as {first.type}, not float32 or float16.")
        shape = list(first.shape)  # (batch_size, kv_heads, past_sequence_length, head_dim)
        heads, head_dim = (shape[1], shape[3]) if len(shape) == 4 else (None, None)
        if not isinstance(heads, int):
            heads = (
                getattr(config, "num_key_value_heads", None)
                or getattr(config, "num_attention_heads", None)
                or getattr(config, "n_head", None)
            )
        if not isinstance(head_dim, int):
            hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
            width = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
            head_dim = getattr(config, "head_dim", None) or (hidden // width if hidden and width else None)
        if not isinstance(heads, int) or not isinstance(head_dim, int):
            raise ModelFileError(f"Neither {label} nor its config.json says the KV cache's head count and size.")
        self.empty_shape = (1, heads, 0, head_dim)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


class _Decoding:
    """One sequence decoding on the session: the keys and values so far, and the step's logits."""

    def __init__(self, session: Any, layout: CacheLayout, label: str):
        self.session, self.layout, self.label = session, layout, label
        self.pasts = [np.zeros(layout.empty_shape, layout.dtype) for _ in layout.past_names]
        self.length = 0

    def feed(self, ids: list[int]) -> np.ndarray:
        """Read `ids` after what came before; the last one's logits, float32 (1, vocabulary)."""
        for start in range(0, len(ids), PREFILL_CHUNK):
            logits = self._run(ids[start : start + PREFILL_CHUNK])
        return logits

    def _run(self, ids: list[int]) -> np.ndarray:
        total = self.length + len(ids)
        feeds = {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, total), np.int64)}
        if self.layout.position_ids:
            feeds["position_ids"] = np.arange(self.length, total, dtype=np.int64)[None]
        feeds.update(zip(self.layout.past_names, self.pasts))
        try:
            logits, *self.pasts = onnx_session.run(self.session, self.layout.output_names, feeds, self.label)
        except (StudioError, JobCancelled):  # already a sentence, or the person's Stop
            raise
        except Exception as exc:  # noqa: BLE001 - ORT's own pybind types; out of memory keeps its words
            raise StudioError(f"ONNX Runtime failed on {self.label} ({onnx_session.ort_message(exc)}).") from None
        self.length = total
        return logits[:, -1, :].astype(np.float32)  # a copy: the whole (1, n, vocabulary) array can go


class OnnxTextBackend(TransformersTextBackend):
    """A causal language model in an ONNX Runtime session, with its tokenizer."""

    def __init__(
        self,
        session: Any,
        layout: CacheLayout,
        stand_in: _ConfigOnly,
        tokenizer: Any,
        device: str,
        memory_bytes: int,
        label: str,
    ):
        super().__init__(stand_in, tokenizer, device, "float32")
        self.session = session
        self.layout = layout
        self.label = label
        self.memory_bytes = memory_bytes
        self.provider: str = onnx_session.session_provider(session)
        self.info = onnx_session.info_for(device, self.provider)

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        return onnx_session.choose_device(requested)

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "OnnxTextBackend":
        offline()
        quiet_library_logs("transformers")
        folder = Path(model.path)
        path = folder / ONNX_DECODER
        label = f"{ONNX_DECODER} in {folder}"
        if not path.is_file():
            raise ModelFileError(f"{folder} has no {ONNX_DECODER}: export the model again with `studio export-onnx`.")
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        with explained_load_errors(folder, "an ONNX language model"):
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
            if (folder / "generation_config.json").is_file():
                own = GenerationConfig.from_pretrained(str(folder), local_files_only=True)
            else:
                own = GenerationConfig.from_model_config(config)
        check_tokenizer(tokenizer, folder)  # the torch backend's refusal of a tokenizer that knows no words
        # Only the folder's token ids are kept, not its sampling defaults (as the torch backend does).
        generation = GenerationConfig(
            bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id
        )
        session, size = onnx_session.open_session(path, device, label)
        layout = CacheLayout(session, config, label)
        backend = cls(session, layout, _ConfigOnly(config, generation), tokenizer, device, size, label)
        try:
            backend.chat_template = find_chat_template(folder)
        except StudioError as error:  # the model still continues text; instruct mode says why it can't
            backend.chat_problem = error.message
        return backend

    def greedy(self, ids: list[int], count: int) -> list[int]:
        """`count` tokens after `ids` by argmax alone: no samplers, no stop token (the export's
        parity check, the same decoding loop as generate)."""
        decoding = _Decoding(self.session, self.layout, self.label)
        logits = decoding.feed(list(ids))
        out: list[int] = []
        while True:
            out.append(int(logits[0].argmax()))
            if len(out) == count:
                return out
            logits = decoding.feed(out[-1:])

    def generate(self, spec: TextJob, ctx: JobContext) -> TextResult:
        import torch

        # 1. The prompt, as the torch backend assembles, reports and encodes it.
        ids = self.prompt_ids(spec, ctx)

        # 2. The torch backend's samplers, recorder and streamer.
        recorder = _TopRecorder()
        streamer = _streamer(self, ids[-CONTEXT_TOKENS:], recorder, spec, ctx)
        processors = _sampling_processors(spec, recorder, self)
        stop_ids, sampling = self.stop_ids, spec.temperature > 0

        # 3. Decode under the job's own seed, leaving the global random state as it was. The
        #    processors see prompt + generated ids, as generate() hands them.
        sequence = torch.zeros((1, len(ids) + spec.max_new_tokens), dtype=torch.int64)
        sequence[0, : len(ids)] = torch.tensor(ids)
        length = len(ids)
        streamer.put(sequence[:, :length])  # the prompt, which the streamer skips, as from generate()
        decoding = _Decoding(self.session, self.layout, self.label)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(spec.seed)
            try:
                logits = decoding.feed(ids)
                for step in range(spec.max_new_tokens):
                    scores = processors(sequence[:, :length], torch.from_numpy(logits))
                    if sampling:
                        token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
                    else:
                        token = torch.argmax(scores, dim=-1)
                    streamer.put(token)  # a Token event; raises JobCancelled after Stop
                    token_id = int(token[0])
                    if token_id in stop_ids or step == spec.max_new_tokens - 1:
                        break
                    sequence[0, length] = token_id
                    length += 1
                    logits = decoding.feed([token_id])
            except StopSequenceReached:
                pass  # the text ends right before the stop sequence; nothing of it was shown
            else:
                streamer.flush()
        return TextResult(streamer.text, tuple(streamer.ids), self.info.replace(tokens=len(streamer.ids)))

    def close(self) -> None:
        self.session = None
        self.model = None
