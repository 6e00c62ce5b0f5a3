"""Streaming text generation with a GGUF language model on llama.cpp (llama-cpp-python).

The file is read and checked in Python first (studio.models.gguf_file: every count, string, array
and tensor bound, and the memory loading needs); only a file that passes reaches llama.cpp.

Every writer feature works as on the transformers backend, through the same pieces: the prompt is
assembled by prompt_context with llama.cpp's own tokenizer, instruct mode renders the GGUF's chat
template in the same sandbox, stop sequences and banned phrases are sampling.py's StopText and
BannedPhrases, and each Token event carries the top five (piece, probability) of the distribution
the token was drawn from.

Sampling (see sampling.py for the transformers chain this mirrors): llama.cpp's own samplers,
chained in the studio's order, not llama.cpp's default one:

    repetition penalty -> DRY -> [banned phrases: -inf] -> temperature -> top-k -> top-p -> min-p -> XTC

then the draw, in Python, from what is left (numpy's generator seeded by the job's seed: same seed,
same text). llama.cpp's default chain (and KoboldCpp's) applies temperature last, so its min-p
sees untempered probabilities; here, as on the transformers backend, min-p, top-p and XTC see the
tempered ones. Greedy (temperature 0) runs the penalties, DRY and the bans, then takes the best.
Differences with the transformers chain: llama.cpp's DRY looks back over the whole window (ours
stops matching at 50 tokens), and its repetition penalty counts the window in tokens as ours does.

Continue reuses what did not change: the backend keeps the tokens its KV cache holds and, for a new
prompt, keeps the longest common prefix and evaluates only the rest. When the story outgrew the
window and the assembly dropped its oldest tokens, the cache is shifted as KoboldCpp's ContextShift
does: the dropped tokens' entries are removed and the rest moved down, so only the new tokens are
read. Only RoPE models can shift (positions are rotations llama.cpp can re-apply); GPT-2's learned
positions cannot, so there the tokens after the common prefix are read again.

llama_cpp, numpy and the GGUF reader's budget are imported inside the functions."""

from __future__ import annotations

import codecs
import ctypes
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Union

from studio.core.errors import JobCancelled, ModelFileError, SpecError
from studio.core.events import ContextResult, RunInfo, TextResult
from studio.core.jobs import ContextJob, TextJob
from studio.core.kinds import Runtime
from studio.engine.backends.job_context import JobContext
from studio.engine.backends.text import sampling as text_sampling
from studio.engine.backends.text.chat_template import render_chat
from studio.engine.backends.text.prompt_context import build_context
from studio.models import formats, gguf_file

log = logging.getLogger(__name__)

ALTERNATIVES = 5  # (piece, probability) pairs per Token event, as on the transformers backend
MAX_CONTEXT = 8192  # the window the studio opens by default: a 128k-token window's KV cache would not fit
MIN_SHIFT_MATCH = 16  # tokens of the old story that must line up again before the cache is shifted
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def _quiet_llama_logs() -> None:
    """llama.cpp prints its loading report on stderr; the studio's log says what matters."""
    import llama_cpp

    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


_LOG_CALLBACK: Any = None  # kept alive: llama.cpp holds the pointer


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def shift_amount(cached: list[int], ids: list[int], start: int) -> int:
    """How many cached tokens after `start` to drop so the rest lines up with `ids[start:]` again
    (0 when no such shift exists): the oldest story tokens the assembly trimmed. The tokens after
    the drop must match for at least MIN_SHIFT_MATCH tokens (or to the end of either)."""
    needle = ids[start : start + MIN_SHIFT_MATCH]
    if len(needle) < MIN_SHIFT_MATCH:
        return 0
    first = needle[0]
    for d in range(1, len(cached) - start - len(needle) + 1):
        if cached[start + d] == first and cached[start + d : start + d + len(needle)] == needle:
            return d
    return 0


class LlamaCppTextBackend:
    """One GGUF model in one llama.cpp context, with the tokens its KV cache holds."""

    def __init__(self, llm: Any, header: "gguf_file.GgufHeader", device: str):
        import llama_cpp
        import numpy as np

        self.llm: Any = llm  # llama_cpp.Llama; None once closed
        self.header = header
        self.device = device
        self.chat_template = header.chat_template
        self.vocab = llm._model.vocab
        self.n_vocab = int(llm.n_vocab())
        # What was asked for: llama.cpp may round its own window up, past what the model was trained on.
        self.context_length = min(int(llm.n_ctx()), int(llm.context_params.n_ctx))
        self.memory_bytes = header.weights_bytes
        self.can_shift = bool(
            llama_cpp.llama_memory_can_shift(llm._ctx.memory)
            and llama_cpp.llama_model_rope_type(llm.model) != llama_cpp.LLAMA_ROPE_TYPE_NONE
        )
        self.cached: list[int] = []  # the tokens whose keys and values the context holds, in order
        self.reused_tokens = 0  # prompt tokens the last job took from the cache
        self.shifted_tokens = 0  # old tokens the last job dropped from the cache by shifting it
        self._pieces: dict[int, str] = {}
        self._piece_bytes: dict[int, bytes] = {}
        self._vocabulary: Optional[text_sampling.Vocabulary] = None
        # The candidates llama.cpp's samplers work on: one buffer, refilled every step.
        self._data = np.zeros(self.n_vocab, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)]))
        self._all_ids = np.arange(self.n_vocab, dtype=np.intc)
        self._data_pointer = self._data.ctypes.data_as(llama_cpp.llama_token_data_p)
        self._candidates = llama_cpp.llama_token_data_array(
            data=self._data_pointer, size=self.n_vocab, selected=-1, sorted=False
        )

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        import llama_cpp

        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        if requested == "cuda" and not gpu:
            raise SpecError(
                "device",
                "is cuda, but this llama.cpp build runs on the CPU only; rebuild llama-cpp-python with "
                "CMAKE_ARGS=-DGGML_CUDA=on (see the README) or choose cpu.",
            )
        if requested not in DEVICE_CHOICES:
            raise SpecError("device", f"is {requested!r}; a GGUF model runs on {', '.join(DEVICE_CHOICES)}.")
        return ("cuda" if gpu and requested != "cpu" else "cpu"), "gguf"

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "LlamaCppTextBackend":
        path = formats.gguf_path(Path(model.path))
        header = formats.gguf_header(path)  # nothing native sees a file these checks have not passed
        window = min(header.context_length or 2048, MAX_CONTEXT)
        gguf_file.check_loadable(header, window)
        import llama_cpp

        _quiet_llama_logs()
        try:
            llm = llama_cpp.Llama(
                str(path),
                n_ctx=window,
                n_gpu_layers=-1 if device == "cuda" else 0,
                verbose=False,
            )
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise ModelFileError(
                f"llama.cpp could not load {path.name} ({exc}); its {header.architecture!r} architecture may be "
                "newer than this llama.cpp, or the file is damaged."
            ) from None
        return cls(llm, header, device)

    # -- text and tokens -------------------------------------------------------------------------

    def encode(self, text: str, special: bool = False, add_bos: bool = False) -> list[int]:
        if not text:
            return []
        return list(self.llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=add_bos, special=special))

    def _token_bytes(self, token_id: int, special: bool) -> bytes:
        """A token's bytes as llama.cpp writes them (special tokens as text only when `special`)."""
        import llama_cpp

        size = 32
        while True:
            buffer = ctypes.create_string_buffer(size)
            written = llama_cpp.llama_token_to_piece(self.vocab, token_id, buffer, size, 0, special)
            if written >= 0:
                return buffer.raw[:written]
            size = -written  # too small: llama.cpp says how much it needs

    def piece_bytes(self, token_id: int) -> bytes:
        found = self._piece_bytes.get(token_id)
        if found is None:
            found = self._piece_bytes[token_id] = self._token_bytes(token_id, special=False)
        return found

    def piece(self, token_id: int) -> str:
        text = self._pieces.get(token_id)
        if text is None:
            text = self._pieces[token_id] = self.piece_bytes(token_id).decode("utf-8", "replace")
        return text

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.piece_bytes(i) for i in ids).decode("utf-8", "replace")

    def vocabulary(self) -> text_sampling.Vocabulary:
        """Every token's text (for the phrase bans), built once per model."""
        if self._vocabulary is None:
            self._vocabulary = text_sampling.Vocabulary([self.piece(i) for i in range(self.n_vocab)])
        return self._vocabulary

    def is_end(self, token_id: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token_id))

    def _special_text(self, token_id: int) -> str:
        if token_id < 0:
            return ""
        return self._token_bytes(token_id, special=True).decode("utf-8", "replace")

    # -- the prompt ------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text, add_bos=True))

    def count_templated_tokens(self, text: str) -> int:
        return len(self.encode(text, special=True))

    def context(self, spec: Union[TextJob, ContextJob]) -> ContextResult:
        """What the model reads for `spec`, within its window (in its chat template in instruct mode)."""
        if not spec.instruct:
            return build_context(spec, self.count_tokens, self.context_length)
        return build_context(spec, self.count_templated_tokens, self.context_length, self._chat())

    def _chat(self) -> Callable[[str, str], str]:
        if not self.chat_template:
            raise SpecError(
                "instruct",
                "is on, but this model has no chat template; turn instruct mode off to continue the text as it is.",
            )
        template = self.chat_template
        bos, eos = self._special_text(self.llm.token_bos()), self._special_text(self.llm.token_eos())

        def chat(system: str, user: str) -> str:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            return render_chat(template, messages, bos_token=bos, eos_token=eos, add_generation_prompt=True)

        return chat

    def prompt_ids(self, spec: TextJob, ctx: JobContext) -> list[int]:
        context = self.context(spec)
        ctx.context_used(context)
        if spec.instruct:
            ids = self.encode(context.prompt, special=True)
        else:
            ids = self.encode(context.prompt, add_bos=True)
        if not ids:
            start = self.llm.token_bos() if self.llm.token_bos() >= 0 else self.llm.token_eos()
            if start < 0:
                raise SpecError("prompt", "is empty and this model has no start token; type a few words.")
            ids = [start]
        window = self.context_length
        if spec.max_new_tokens >= window:
            raise SpecError("max_new_tokens", f"is {spec.max_new_tokens}; this model sees at most {window} tokens.")
        return ids[-(window - spec.max_new_tokens) :]  # the assembly fits; this is a safety net

    # -- the KV cache ----------------------------------------------------------------------------

    def _forget(self, keep: int) -> None:
        """Drop the cache's entries from position `keep` on."""
        self.llm._ctx.kv_cache_seq_rm(0, keep, -1)
        del self.cached[keep:]
        self.llm.n_tokens = keep

    def _shift(self, start: int, drop: int) -> None:
        """Remove `drop` entries after `start` and move the rest down (KoboldCpp's ContextShift)."""
        context = self.llm._ctx
        context.kv_cache_seq_rm(0, start, start + drop)
        context.kv_cache_seq_shift(0, start + drop, -1, -drop)
        del self.cached[start : start + drop]
        self.llm.n_tokens = len(self.cached)
        self.llm.input_ids[: len(self.cached)] = self.cached

    def _evaluate(self, ids: list[int], ctx: JobContext) -> None:
        """Bring the cache to `ids` and leave the logits of its last token: keep the common prefix,
        shift when the oldest story was trimmed, then read only what is new, a batch at a time (Stop
        lands between batches; the cache stays consistent with `cached` whatever happens)."""
        keep = common_prefix(self.cached, ids)
        self.shifted_tokens = 0
        if keep < len(self.cached) and self.can_shift:
            drop = shift_amount(self.cached, ids, keep)
            if drop:
                self._shift(keep, drop)
                self.shifted_tokens = drop
                keep = common_prefix(self.cached, ids)
        keep = min(keep, len(ids) - 1)  # at least one token is read, for the logits to sample from
        self._forget(keep)
        self.reused_tokens = keep
        batch = self.llm.n_batch
        for start in range(keep, len(ids), batch):
            ctx.check_cancelled()
            chunk = ids[start : start + batch]
            self.llm.eval(chunk)
            self.cached.extend(chunk)

    def reset_cache(self) -> None:
        if self.llm is not None:
            self.llm._ctx.kv_cache_clear()
            self.llm.n_tokens = 0
        self.cached = []

    # -- sampling --------------------------------------------------------------------------------

    def _sampler(self, spec: TextJob, prompt: list[int]) -> Any:
        """llama.cpp's samplers in the studio's order (the module's docstring), with the prompt's
        tokens accepted so the penalties and DRY see the whole context, as on the transformers side."""
        from llama_cpp._internals import LlamaSampler

        chain = LlamaSampler()
        window = spec.repetition_range or self.context_length
        if spec.repetition_penalty != 1.0:
            chain.add_penalties(self.n_vocab, window, spec.repetition_penalty, 0.0, 0.0)
        if spec.dry_multiplier > 0:
            chain.add_dry(
                self.llm._model,
                spec.dry_multiplier,
                spec.dry_base,
                spec.dry_allowed_length,
                -1,
                list(text_sampling.DRY_SEQUENCE_BREAKERS),
            )
        if spec.temperature > 0:
            chain.add_temp(spec.temperature)
            if spec.top_k > 0:
                chain.add_top_k(spec.top_k)
            if spec.top_p < 1.0:
                chain.add_top_p(spec.top_p, 1)
            if spec.min_p > 0:
                chain.add_min_p(spec.min_p, 1)
            if spec.xtc_probability > 0:
                chain.add_xtc(spec.xtc_probability, spec.xtc_threshold, 1, spec.seed)
        for token in prompt:
            chain.accept(token)
        return chain

    def last_logits(self) -> Any:
        """The logits after the last evaluated token (a view of llama.cpp's buffer)."""
        import llama_cpp
        import numpy as np

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))

    def apply_chain(self, chain: Any, logits: Any, banned: set[int]) -> tuple[Any, Any]:
        """(ids, logits) of the tokens `chain` leaves of `logits`, the banned ones at -inf first."""
        import llama_cpp
        import numpy as np

        data = self._data
        data["id"] = self._all_ids
        data["logit"] = logits
        if banned:
            data["logit"][sorted(banned)] = -np.inf
        candidates = self._candidates
        candidates.data = self._data_pointer  # pyright: ignore[reportAttributeAccessIssue] - a pointer, as the C field is
        candidates.size, candidates.selected, candidates.sorted = self.n_vocab, -1, False
        # The bindings type cur_p as an array; llama.cpp takes a pointer to one struct.
        llama_cpp.llama_sampler_apply(chain.sampler, ctypes.byref(candidates))  # pyright: ignore[reportArgumentType]
        size = candidates.size
        # A sampler may point `data` at a buffer of its own (seen: reading ours afterwards gave
        # stale candidates); read wherever it points, and point it back at ours next step.
        if ctypes.addressof(candidates.data.contents) != self._data.ctypes.data:  # pyright: ignore[reportAttributeAccessIssue]
            data = np.ctypeslib.as_array(candidates.data, shape=(size,))
        return data["id"][:size].copy(), data["logit"][:size].astype(np.float64)

    def _stop_or_end(self, ids: Any, logits: Any) -> tuple[Any, Any]:
        """Every candidate banned: let the end-of-text token through (the text ends instead)."""
        import numpy as np

        if np.isfinite(logits).any():
            return ids, logits
        eos = self.llm.token_eos()
        return np.array([eos], dtype=np.intc), np.zeros(1)

    # -- generation ------------------------------------------------------------------------------

    def generate(self, spec: TextJob, ctx: JobContext) -> TextResult:
        import numpy as np

        prompt = self.prompt_ids(spec, ctx)
        try:
            self._evaluate(prompt, ctx)
            return self._generate(spec, prompt, ctx, np.random.default_rng(spec.seed))
        except JobCancelled:
            raise  # `cached` still names what the context holds: each token joins it once evaluated
        except BaseException:
            self.reset_cache()  # a failure inside llama.cpp leaves nothing in the cache to trust
            raise

    def _generate(self, spec: TextJob, prompt: list[int], ctx: JobContext, rng: Any) -> TextResult:
        import numpy as np

        chain = self._sampler(spec, prompt)
        bans = (
            text_sampling.BannedPhrases(
                spec.banned, self.vocabulary(), self.encode, self.decode, {self.llm.token_eos()}
            )
            if spec.banned
            else None
        )
        stop_text = text_sampling.StopText(spec.stop)
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        context, out_ids, out_text = list(prompt), [], []
        sampling = spec.temperature > 0

        def emit(text: str, token_id: int, alternatives: tuple) -> None:
            ctx.token(text, token_id, alternatives)  # raises JobCancelled after Stop
            out_ids.append(token_id)
            out_text.append(text)

        try:
            for step in range(spec.max_new_tokens):
                banned = bans.banned_ids(context) if bans is not None else set()
                ids, logits = self._stop_or_end(*self.apply_chain(chain, self.last_logits(), banned))
                probs = np.exp(logits - logits.max())
                probs /= probs.sum()
                if sampling:
                    pick = int(np.searchsorted(np.cumsum(probs), rng.random() * probs.sum(), side="right"))
                    pick = min(pick, len(probs) - 1)
                else:
                    pick = int(np.argmax(logits))
                token = int(ids[pick])
                chain.accept(token)
                if self.is_end(token):
                    break
                top = np.argsort(-probs, kind="stable")[:ALTERNATIVES]
                alternatives = tuple((self.piece(int(ids[i])), round(float(probs[i]), 6)) for i in top)
                context.append(token)
                last = step == spec.max_new_tokens - 1
                text = utf8.decode(self.piece_bytes(token), final=last)
                for piece, (held_id, held_alternatives) in stop_text.push(text, (token, alternatives)):
                    emit(piece, held_id, held_alternatives)
                if stop_text.stopped:
                    raise text_sampling.StopSequenceReached()
                if stop_text.stops:
                    ctx.check_cancelled()  # Stop lands here even while the text is held back
                if not last:
                    self.llm.eval([token])
                    self.cached.append(token)
            tail = utf8.decode(b"", final=True)
            if tail:
                for piece, (held_id, held_alternatives) in stop_text.push(tail, (out_ids[-1] if out_ids else -1, ())):
                    emit(piece, held_id, held_alternatives)
            if not stop_text.stopped:
                for piece, (held_id, held_alternatives) in stop_text.flush():
                    emit(piece, held_id, held_alternatives)
        except text_sampling.StopSequenceReached:
            pass  # the text ends right before the stop sequence; nothing of it was shown
        finally:
            chain.close()
        return TextResult(
            "".join(out_text),
            tuple(out_ids),
            RunInfo(device=self.device, runtime=Runtime.LLAMA_CPP, dtype=self.header.quantisation, tokens=len(out_ids)),
        )

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm = None
        self.cached = []
