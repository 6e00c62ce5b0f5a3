"""Streaming text generation with a transformers causal language model folder on torch.

Loading is offline and safe: `local_files_only`, safetensors only, `trust_remote_code=False` (and
studio.models.formats refuses folders that carry Python code or ask for it with auto_map).
Generation streams one Token event per generated token through the job context, which is also where
Stop lands: the cancel exception is raised from the streamer and propagates out of `generate`, so
a token produced after Stop is never shown.

Torch and transformers are imported inside the functions, so importing this module stays cheap."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from studio.core.errors import ModelFileError, SpecError
from studio.core.events import TextResult
from studio.core.jobs import TextJob
from studio.engine.backends.base import JobContext, param_bytes, torch_device, torch_dtype
from studio.models.libraries import quiet_library_logs
from studio.models.paths import offline
from studio.models.safe_files import check_folder_weights, explained_load_errors

ALTERNATIVES = 5  # how many (token, probability) pairs each Token event carries
CONTEXT_TOKENS = 4  # prompt tokens decoded with the output, so a leading space survives detokenising


def _sampling_processors(spec: TextJob, recorder: Any) -> Any:
    """The sampling warpers in generate()'s own order, then the recorder.

    generate() appends its warpers *after* custom processors, so a recorder passed alongside
    temperature/top_k/top_p would see unwarped scores. We build them here instead and leave
    generate's own off, so the recorder sees exactly the distribution the token is drawn from."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    processors = LogitsProcessorList()
    if spec.temperature > 0:
        if spec.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(spec.temperature))
        if spec.top_k > 0:
            processors.append(TopKLogitsWarper(top_k=spec.top_k))
        if spec.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=spec.top_p))
    processors.append(recorder)
    return processors


class _TopRecorder:
    """A logits processor that keeps each step's best few (token id, probability), without changing
    the scores. A queue, because a streamer may receive tokens a step late (generate on MPS)."""

    def __init__(self, k: int = ALTERNATIVES):
        self.k = k
        self.steps: collections.deque[tuple[list[int], list[float]]] = collections.deque()

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        probs = scores[0].float().softmax(dim=-1)
        top = probs.topk(min(self.k, probs.shape[-1]))
        self.steps.append((top.indices.tolist(), top.values.tolist()))
        return scores


def _streamer(backend: "TransformersTextBackend", context: list[int], recorder: _TopRecorder, last: int, ctx: JobContext):
    """A transformers streamer that turns each new token into a Token event (made in a function so
    the transformers import stays lazy). `context`: the prompt's last few ids."""
    from transformers.generation.streamers import BaseStreamer

    decode, stop_ids = backend.decode, backend.stop_ids

    class TokenStreamer(BaseStreamer):
        def __init__(self):
            self.ids: list[int] = []  # generated so far, stop tokens left out
            self.text = ""  # what the Token events have said so far: the result's text
            self.prompt_seen = False
            # Incremental detokenising over a sliding window (as text-generation-inference does):
            # decode ids[start:] and ids[start:shown], and emit the difference. Decoding from a bit
            # of context keeps word-initial spaces that a tokenizer drops at the start of a text.
            self.window = list(context)
            self.start, self.shown = 0, len(context)

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() first hands us the prompt itself
                self.prompt_seen = True
                return
            token_id = int(value.reshape(-1)[0])
            ids, probs = recorder.steps.popleft() if recorder.steps else ([], [])
            alternatives = tuple((backend.piece(i), round(p, 6)) for i, p in zip(ids, probs))
            if token_id in stop_ids:
                return  # the model ended the text: nothing to show
            self.ids.append(token_id)
            self.window.append(token_id)
            before = decode(self.window[self.start:self.shown])
            now = decode(self.window[self.start:])
            piece = now[len(before):] if now.startswith(before) else ""
            # Hold back while a multi-byte character is still incomplete (its bytes decode to U+FFFD)
            # unless this is the last token: the held-back text comes with a later token.
            if piece.endswith("\ufffd") and len(self.ids) < last:
                piece = ""
            ctx.token(piece, token_id, alternatives)  # raises JobCancelled after Stop
            if piece:
                self.text += piece
                self.start, self.shown = self.shown, len(self.window)

        def end(self) -> None:
            pass

    return TokenStreamer()


class TransformersTextBackend:
    """One causal language model and its tokenizer, resident on one device."""

    def __init__(self, model: Any, tokenizer: Any, device: str, dtype: str):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.memory_bytes = param_bytes(model)
        self.stop_ids = self._stop_ids()
        self._pieces: dict[int, str] = {}  # token id -> text, for the alternatives

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def piece(self, token_id: int) -> str:
        """One token's own text, cached: every token shows five alternatives."""
        text = self._pieces.get(token_id)
        if text is None:
            text = self._pieces[token_id] = self.decode([token_id])
        return text

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        return torch_device(requested)

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "TransformersTextBackend":
        offline()
        quiet_library_logs("transformers")
        folder = Path(model.path)
        check_folder_weights(folder)  # a truncated file gets its own name in the sentence
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with explained_load_errors(folder, "a transformers language model"):
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
            lm = AutoModelForCausalLM.from_pretrained(
                str(folder),
                local_files_only=True,
                use_safetensors=True,
                trust_remote_code=False,
                dtype=torch_dtype(dtype),
            )
        # A tokenizer can load "successfully" from a folder missing its vocabulary and then turn
        # every text into nothing (or into unknown tokens): refuse it rather than babble.
        hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
        if len(tokenizer) <= 3 or not hello or set(hello) <= {tokenizer.unk_token_id}:
            raise ModelFileError(f"The tokenizer in {folder} is empty or missing its vocabulary: copy the folder again.")
        # Same spec + seed -> same text: the folder's sampling defaults (generation_config.json may set
        # temperature, top_k, repetition penalties...) would otherwise fill whatever the spec leaves
        # unset. Only its token ids (stop tokens above all) are kept.
        from transformers import GenerationConfig

        own = lm.generation_config
        lm.generation_config = GenerationConfig(
            bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id
        )
        return cls(lm.to(device).eval(), tokenizer, device, dtype)

    def generate(self, spec: TextJob, ctx: JobContext) -> TextResult:
        import torch
        from transformers import GenerationConfig

        # 1. Encode the prompt; an empty one starts from the model's start (or end) of text token.
        ids = self.tokenizer(spec.prompt, add_special_tokens=True)["input_ids"] if spec.prompt else []
        if not ids:
            start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
            if start is None:
                raise SpecError("prompt", "is empty and this model has no start token; type a few words.")
            ids = [start]
        ids = self._fit_context(ids, spec.max_new_tokens)

        # 2. The stop tokens come from the folder; how to sample comes from the spec alone (load()
        #    dropped the folder's sampling defaults). The warpers themselves are built in step 3.
        stop_ids = self.stop_ids
        sampling = dict(temperature=1.0, top_k=0, top_p=1.0) if spec.temperature > 0 else {}
        config = GenerationConfig(
            do_sample=spec.temperature > 0, max_new_tokens=spec.max_new_tokens,
            eos_token_id=sorted(stop_ids) or None, pad_token_id=self._pad_id(stop_ids), **sampling,
        )

        # 3. A recorder for the alternatives and a streamer that reports each token as it comes.
        recorder = _TopRecorder()
        streamer = _streamer(self, ids[-CONTEXT_TOKENS:], recorder, spec.max_new_tokens, ctx)

        # 4. Generate under the job's own seed, leaving the global random state as it was.
        input_ids = torch.tensor([ids], device=self.device)
        cuda = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=cuda), torch.inference_mode():
            torch.manual_seed(spec.seed)
            self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                logits_processor=_sampling_processors(spec, recorder),
                streamer=streamer,
            )
        return TextResult(
            streamer.text, tuple(streamer.ids), {"device": self.device, "runtime": "torch", "tokens": len(streamer.ids)}
        )

    def _stop_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None}

    def _pad_id(self, stop_ids: set[int]) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.model.generation_config.pad_token_id):
            if candidate is not None:
                return int(candidate)
        return min(stop_ids, default=0)

    def _fit_context(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """Keep the end of a prompt that would not fit in the model's window with the new tokens."""
        window = getattr(self.model.config, "max_position_embeddings", None) or getattr(self.model.config, "n_positions", None)
        if not window or len(ids) + max_new_tokens <= window:
            return ids
        if max_new_tokens >= window:
            raise SpecError("max_new_tokens", f"is {max_new_tokens}; this model sees at most {window} tokens.")
        return ids[-(window - max_new_tokens):]

    def close(self) -> None:
        self.model = None
