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

then llama.cpp's own draw (its dist sampler, seeded by the job's seed: same seed, same text), which
also leaves the probabilities of what is left, so the top five come from the very distribution the
token was drawn from. llama.cpp's default chain (and KoboldCpp's) applies temperature last, so its min-p
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
from studio.engine.backends.text.chat_template import instruct_chat
from studio.engine.backends.text.kv_reuse import common_prefix, shift_plan
from studio.engine.backends.text.prompt_context import build_context, fit_window
from studio.models import formats, gguf_file

log = logging.getLogger(__name__)

ALTERNATIVES = 5  # (piece, probability) pairs per Token event, as on the transformers backend
MAX_CONTEXT = 8192  # the window the studio opens by default: a 128k-token window's KV cache would not fit
DEVICE_CHOICES = ("auto", "cpu", "cuda")


LLAMA_LOG_WARN = 3  # ggml_log_level: warnings and errors (4) go to the studio's log


def _log_from_llama(level: int, text: bytes, data: Any) -> None:
    if level in (LLAMA_LOG_WARN, LLAMA_LOG_WARN + 1):
        log.warning("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


def _quiet_llama_logs() -> None:
    """llama.cpp prints its loading report on stderr, line by line; only its warnings and errors
    (why a file would not load, say) go to the studio's log."""
    import llama_cpp

    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(_log_from_llama)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


_LOG_CALLBACK: Any = None  # kept alive: llama.cpp holds the pointer


class SamplerChain:
    """llama.cpp's samplers for one job (a llama-cpp-python LlamaSampler chain), and whether any of
    them reorders the candidates (then their ids are laid out afresh before each step)."""

    def __init__(self, sampler: Any, reorders: bool):
        self.sampler = sampler
        self.reorders = reorders

    def accept(self, token: int) -> None:
        self.sampler.accept(token)  # the penalties and DRY remember what was chosen

    def close(self) -> None:
        self.sampler.close()


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
        self._logits: Optional[tuple[Any, Any]] = None  # (llama.cpp's logits address, a numpy view of it)
        # The candidates llama.cpp's samplers work on: one buffer, refilled every step.
        self._data = np.zeros(self.n_vocab, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)]))
        self._all_ids = np.arange(self.n_vocab, dtype=np.intc)
        self._candidates = llama_cpp.llama_token_data_array(
            data=self._data.ctypes.data_as(llama_cpp.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False
        )
        self._candidates_ref = ctypes.pointer(self._candidates)
        # The struct's data pointer, size, selected index and sorted flag (with its padding), as
        # four 64-bit words in its memory.
        self._fields = np.frombuffer(memoryview(self._candidates), dtype=np.int64, count=4)
        self._ids_in_order = False  # whether _data's ids are still 0..n-1 from the last step
        # A batch of one token, filled in place for each generated token: Llama.eval() rebuilds its
        # batch in Python and trims the cache first on every call (~30 µs, 4 % of a token here).
        self._one = llama_cpp.llama_batch_init(1, 0, 1)
        self._one.n_tokens, self._one.n_seq_id[0], self._one.seq_id[0][0], self._one.logits[0] = 1, 1, 0, 1

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
        except ValueError:  # llama-cpp-python's "Failed to load model from file: PATH"
            raise ModelFileError(
                f"llama.cpp could not load {path.name}: its {header.architecture!r} architecture may be newer than "
                "this llama.cpp, or the file is damaged (the log has llama.cpp's own words)."
            ) from None
        return cls(llm, header, device)

    # -- text and tokens -------------------------------------------------------------------------

    def encode(self, text: str, special: bool = False, add_bos: bool = False) -> list[int]:
        if not text:
            return []
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

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
        """(system, user) -> the prompt in the GGUF's own chat template, rendered in the sandbox."""
        bos, eos = self._special_text(self.llm.token_bos()), self._special_text(self.llm.token_eos())
        return instruct_chat(self.chat_template, bos, eos)

    def prompt_ids(self, spec: TextJob, ctx: JobContext) -> list[int]:
        return self._prompt(spec, ctx)[0]

    def _prompt(self, spec: TextJob, ctx: JobContext) -> tuple[list[int], bool]:
        """The prompt's ids, reported for the context viewer, and whether the assembly trimmed the
        story's beginning to fit (only then may the cache be shifted)."""
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
        fitted = fit_window(ids, spec.max_new_tokens, self.context_length)
        return fitted, context.trimmed_chars > 0 or len(fitted) < len(ids)

    # -- the KV cache ----------------------------------------------------------------------------

    def _forget(self, keep: int) -> None:
        """Drop the cache's entries from position `keep` on."""
        self.llm._ctx.kv_cache_seq_rm(0, keep, -1)
        del self.cached[keep:]
        self.llm.n_tokens = keep

    def _shift(self, prompt: list[int], prefix: int, fed: int, start: int, kept: int) -> None:
        """KoboldCpp's ContextShift: the cache becomes its first `prefix` entries, then `fed` new
        prompt tokens, then the cached run [start, start + kept) moved to follow them (llama.cpp
        re-rotates the moved keys); what lay between or after is dropped. See kv_reuse."""
        context = self.llm._ctx
        context.kv_cache_seq_rm(0, start + kept, -1)
        context.kv_cache_seq_rm(0, prefix, start)
        context.kv_cache_seq_shift(0, start, start + kept, prefix + fed - start)
        run = self.cached[start : start + kept]
        del self.cached[prefix:]
        for position, token in enumerate(prompt[prefix : prefix + fed], prefix):
            self._decode_one(token, position)  # at their own positions, before the moved run
        self.cached.extend(run)
        self.llm.n_tokens = len(self.cached)
        self.llm.input_ids[: len(self.cached)] = self.cached

    def _evaluate(self, ids: list[int], ctx: JobContext, trimmed: bool) -> None:
        """Bring the cache to `ids` and leave the logits of its last token: keep the common prefix,
        shift when the assembly trimmed the oldest story, then read only what is new, a batch at a
        time (Stop lands between batches; the cache stays consistent with `cached` whatever happens)."""
        keep = common_prefix(self.cached, ids)
        self.shifted_tokens = 0
        if trimmed and self.can_shift and keep < min(len(self.cached), len(ids) - 1):
            plan = shift_plan(self.cached, ids, keep)
            if plan is not None:
                fed, start, kept = plan
                self._shift(ids, keep, fed, start, kept)
                self.shifted_tokens = start - keep
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

    def _decode_one(self, token: int, position: Optional[int] = None) -> None:
        """Read one token into the cache, at the end unless `position` says where (its logits
        become the next step's)."""
        import llama_cpp

        position = len(self.cached) if position is None else position
        self._one.token[0], self._one.pos[0] = token, position
        code = llama_cpp.llama_decode(self.llm.ctx, self._one)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        self.cached.append(token)
        self.llm.input_ids[len(self.cached) - 1] = token
        self.llm.n_tokens = len(self.cached)

    def reset_cache(self) -> None:
        if self.llm is not None:
            self.llm._ctx.kv_cache_clear()
            self.llm.n_tokens = 0
        self.cached = []

    # -- sampling --------------------------------------------------------------------------------

    def _sampler(self, spec: TextJob, prompt: list[int]) -> "SamplerChain":
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
            chain.add_dist(spec.seed)  # the draw: seeded by the job, so the same seed gives the same text
        for token in prompt:
            chain.accept(token)
        # The cuts (top-k, top-p, min-p, XTC) sort or compact the candidates; the rest leave them in place.
        reorders = spec.temperature > 0 and (
            spec.top_k > 0 or spec.top_p < 1.0 or spec.min_p > 0 or spec.xtc_probability > 0
        )
        return SamplerChain(chain, reorders)

    def last_logits(self) -> Any:
        """The logits after the last evaluated token (a view of llama.cpp's buffer)."""
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        if self._logits is None or self._logits[0] != address:  # a view made once per buffer, not per token
            self._logits = (address, np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)))
        return self._logits[1]

    def apply_chain(self, chain: "SamplerChain", logits: Any, banned: set[int]) -> tuple[Any, Any, int]:
        """What `chain` leaves of `logits` (the banned ones at -inf first): the candidates' ids,
        their probabilities, and the position of the token drawn (-1 when the chain draws none,
        greedy: then the probabilities are the softmax of what is left). Views of one buffer,
        valid until the next call. Runs once per token, so the candidates struct's fields are
        read and written through a numpy view of its memory, not ctypes' attribute access."""
        import llama_cpp
        import numpy as np

        data = self._data
        if not self._ids_in_order:
            data["id"] = self._all_ids
        data["logit"] = logits
        if banned:
            data["logit"][sorted(banned)] = -np.inf
            if not np.isfinite(data["logit"]).any():  # every token banned: the text ends instead
                return np.array([self.llm.token_eos()], dtype=np.intc), np.ones(1, dtype=np.float32), 0
        fields, own = self._fields, self._data.ctypes.data
        # data (a sampler may have pointed it elsewhere), size, selected, and sorted = false (a cut
        # that believes the candidates sorted keeps their first few, whatever they are).
        fields[:] = (own, self.n_vocab, -1, 0)
        # The bindings type cur_p as an array; llama.cpp takes a pointer to one struct.
        llama_cpp.llama_sampler_apply(chain.sampler.sampler, self._candidates_ref)  # pyright: ignore[reportArgumentType]
        address, size, selected = int(fields[0]), int(fields[1]), int(fields[2])
        self._ids_in_order = size == self.n_vocab and address == own and not chain.reorders
        if address != own:
            # A sampler pointed `data` at a buffer of its own (seen: reading ours afterwards gave
            # stale candidates): read it there.
            data = np.ctypeslib.as_array(self._candidates.data, shape=(size,))
        ids = data["id"][:size]
        if selected >= 0:
            return ids, data["p"][:size], selected  # llama.cpp's dist filled in the probabilities
        kept = data["logit"][:size]
        probs = np.exp(kept - kept.max())
        probs /= probs.sum()
        return ids, probs, -1

    # -- generation ------------------------------------------------------------------------------

    def generate(self, spec: TextJob, ctx: JobContext) -> TextResult:
        prompt, trimmed = self._prompt(spec, ctx)
        try:
            self._evaluate(prompt, ctx, trimmed)
            return self._generate(spec, prompt, ctx)
        except JobCancelled:
            raise  # `cached` still names what the context holds: each token joins it once evaluated
        except BaseException:
            self.reset_cache()  # a failure inside llama.cpp leaves nothing in the cache to trust
            raise

    def _alternatives(self, ids: Any, probs: Any) -> tuple[tuple[str, float], ...]:
        """The five most likely candidates, best first. Five argmax passes over a contiguous copy
        (each ~1 µs on a 8,192-token vocabulary): cheaper per token than a partial sort."""
        import numpy as np

        left = np.array(probs, dtype=np.float32)  # contiguous: probs is a strided view of the candidates
        out = []
        for _ in range(min(ALTERNATIVES, len(left))):
            i = int(left.argmax())
            out.append((self.piece(int(ids[i])), round(float(left[i]), 6)))
            left[i] = -1.0  # probabilities are >= 0: never chosen again
        return tuple(out)

    def _generate(self, spec: TextJob, prompt: list[int], ctx: JobContext) -> TextResult:
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

        def emit(text: str, token_id: int, alternatives: tuple) -> None:
            ctx.token(text, token_id, alternatives)  # raises JobCancelled after Stop
            out_ids.append(token_id)
            out_text.append(text)

        try:
            for step in range(spec.max_new_tokens):
                banned = bans.banned_ids(context) if bans is not None else set()
                ids, probs, pick = self.apply_chain(chain, self.last_logits(), banned)
                if pick < 0:  # greedy: the best of what is left (the first, on a tie)
                    pick = int(np.argmax(probs))
                token = int(ids[pick])
                chain.accept(token)
                if self.is_end(token):
                    break
                alternatives = self._alternatives(ids, probs)
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
                    self._decode_one(token)
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
            import llama_cpp

            llama_cpp.llama_batch_free(self._one)
            self.llm.close()
        self.llm = None
        self.cached = []
