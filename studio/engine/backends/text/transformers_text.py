"""Streaming text generation with a transformers causal language model folder on torch.

Loading is offline and safe: `local_files_only`, safetensors only, `trust_remote_code=False` (and
studio.models.formats refuses folders that carry Python code or ask for it with auto_map).
Generation streams one Token event per generated token through the job context, which is also where
Stop lands: the cancel exception is raised from the streamer and propagates out of `generate`, so
a token produced after Stop is never shown. The samplers TextJob names beyond temperature/top-k/
top-p (min-p, XTC, repetition penalty, DRY, banned phrases, stop sequences) live in sampling.py,
which also documents their order.

Continue reuses what did not change (as KoboldCpp and llama.cpp do): the model's KV cache stays
with the backend between jobs, with the token ids it holds, and a new prompt feeds the model only
the tokens after their common prefix. On RoPE models (Llama-style) a prompt whose oldest story was
trimmed keeps the cached story after the cut too, its keys re-rotated to their new positions
(KoboldCpp's ContextShift). See _KVReuse.

Torch and transformers are imported inside the functions, so importing this module stays cheap."""

from __future__ import annotations

import collections
import inspect
from pathlib import Path
from typing import Any, Callable, Optional, Union, cast

from studio.core.errors import ModelFileError, SpecError, StudioError
from studio.core.events import ContextResult, RunInfo, TextResult
from studio.core.jobs import ContextJob, TextJob
from studio.core.kinds import Runtime
from studio.engine.backends import native
from studio.engine.backends.helpers import param_bytes, torch_device, torch_dtype
from studio.engine.backends.job_context import JobContext
from studio.engine.backends.text import sampling as text_sampling
from studio.engine.backends.text.chat_template import instruct_chat
from studio.engine.backends.text.kv_reuse import common_prefix, shift_plan
from studio.engine.backends.text.prompt_context import build_context, fit_window
from studio.models.formats import find_chat_template
from studio.models.libraries import quiet_library_logs
from studio.models.paths import offline
from studio.models.safe_files import check_folder_weights, explained_load_errors
from studio.models.weights_match import check_memory, check_transformers_folder, mismatch_sentence

ALTERNATIVES = 5  # how many (token, probability) pairs each Token event carries
CONTEXT_TOKENS = 4  # prompt tokens decoded with the output, so a leading space survives detokenising
SHIFT_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")  # keys rotated by rotate_half over the whole head
STATIC_ROPE = ("default", "linear", "llama3")  # RoPE kinds whose angle depends on the position alone


def _sampling_processors(spec: TextJob, recorder: Any, backend: "TransformersTextBackend") -> Any:
    """The whole chain, in the order sampling.py describes: penalties, DRY and bans (greedy too),
    then the sampling warpers in generate()'s own order, min-p and XTC, then the recorder.

    generate() appends its warpers *after* custom processors, so a recorder passed alongside
    temperature/top_k/top_p would see unwarped scores. We build them here instead and leave
    generate's own off, so the recorder sees exactly the distribution the token is drawn from.

    The chain goes to generate() as a single entry (see _Chain): the same calls in the same order."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    processors = text_sampling.build_processors(
        spec, backend.vocabulary, backend.encode, backend.decode, backend.stop_ids
    )
    if spec.temperature > 0:
        if spec.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(spec.temperature))
        if spec.top_k > 0:
            processors.append(TopKLogitsWarper(top_k=spec.top_k))
        if spec.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=spec.top_p))
        for late in (text_sampling.min_p_processor(spec), text_sampling.xtc_processor(spec, spec.seed)):
            if late is not None:
                processors.append(late)
    processors.append(recorder)
    return LogitsProcessorList([_Chain(processors)])


class _Chain:
    """Logits processors applied one after the other, as one processor: the same calls in the same
    order. generate()'s LogitsProcessorList calls inspect.signature on each of its entries at every
    step (~10 µs each, some 40 µs with the caches cold after a forward pass), so the chain is one
    entry, and its __call__ carries its signature ready-made (below), which inspect then just reads.
    Every processor in it takes (input_ids, scores), as that list would call it."""

    def __init__(self, processors: list[Any]):
        self.processors = tuple(processors)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        for processor in self.processors:
            scores = processor(input_ids, scores)
        return scores


_Chain.__call__.__signature__ = inspect.signature(_Chain.__call__)  # type: ignore[attr-defined]


class _TopRecorder:
    """A logits processor that keeps each step's best few (token id, probability), without changing
    the scores. A queue, because a streamer may receive tokens a step late (generate on MPS)."""

    def __init__(self, k: int = ALTERNATIVES):
        self.k = k
        self.steps: collections.deque[tuple[list[int], list[float]]] = collections.deque()

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        # generate() here always runs a batch of one. Softmax and topk over the (1, vocab) rows give
        # exactly what they give over scores[0], with one tensor op fewer per step (each op is a few
        # µs of dispatch, more with the caches cold after a forward pass).
        top = scores.float().softmax(dim=-1).topk(min(self.k, scores.shape[-1]))
        self.steps.append((top.indices.tolist()[0], top.values.tolist()[0]))
        return scores


def _streamer(
    backend: "TransformersTextBackend", context: list[int], recorder: _TopRecorder, spec: TextJob, ctx: JobContext
):
    """A transformers streamer that turns each new token into a Token event (made in a function so
    the transformers import stays lazy). `context`: the prompt's last few ids.

    With stop sequences, a token's event waits while its text may be the start of one (see
    text_sampling.StopText); when one is reached the streamer raises StopSequenceReached, which
    ends generate(). Cancel is still checked at every token, held or not."""
    from transformers.generation.streamers import BaseStreamer

    decode, stop_ids, last = backend.decoder(), backend.stop_ids, spec.max_new_tokens
    pieces, piece_of, steps = backend._pieces, backend.piece, recorder.steps
    stop_text = text_sampling.StopText(spec.stop)
    held = bool(stop_text.stops)  # without stop sequences every token's text goes straight out

    class TokenStreamer(BaseStreamer):
        def __init__(self):
            self.ids: list[int] = []  # the tokens whose events went out: the result's ids
            self.generated: list[int] = []  # every token generate() chose, stop tokens and held text too
            self.text = ""  # what the Token events have said so far: the result's text
            self.count = 0  # tokens generated, stop tokens left out
            self.prompt_seen = False
            # Incremental detokenising over a sliding window (as text-generation-inference does):
            # decode ids[start:] and ids[start:shown], and emit the difference. Decoding from a bit
            # of context keeps word-initial spaces that a tokenizer drops at the start of a text.
            self.window = list(context)
            self.start, self.shown = 0, len(context)
            self.before: Optional[str] = None  # decode(window[start:shown]), kept while they stay put

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() first hands us the prompt itself
                self.prompt_seen = True
                return
            # A batch of one: one token a step (.item() is one call; the fallback, three).
            token_id = value.item() if value.numel() == 1 else int(value.reshape(-1)[0])
            self.generated.append(token_id)  # before anything can raise: the KV cache may hold it next
            ids, probs = steps.popleft() if steps else ((), ())
            if token_id in stop_ids:
                return  # the model ended the text: nothing to show
            alternatives = tuple([(pieces.get(i) or piece_of(i), round(p, 6)) for i, p in zip(ids, probs)])
            self.count += 1
            window = self.window
            window.append(token_id)
            start, shown, before = self.start, self.shown, self.before
            if before is None:  # the window moved: usually past one token, whose text is its cached piece
                before = self.before = piece_of(window[start]) if shown - start == 1 else decode(window[start:shown])
            now = decode(window[start:])
            piece = now[len(before) :] if now.startswith(before) else ""
            # Hold back while a multi-byte character is still incomplete (its bytes decode to U+FFFD)
            # unless this is the last token: the held-back text comes with a later token.
            if piece.endswith("\ufffd") and self.count < last:
                piece = ""
            if piece:
                self.start, self.shown, self.before = shown, len(window), None
            if not held:  # no stop sequences: out at once (ctx.token checks Stop before anything else)
                self.emit(piece, token_id, alternatives)
                return
            ctx.check_cancelled()  # Stop lands here even while the text is held back
            for text, (held_id, held_alternatives) in stop_text.push(piece, (token_id, alternatives)):
                self.emit(text, held_id, held_alternatives)
            if stop_text.stopped:
                raise text_sampling.StopSequenceReached()

        def emit(self, text: str, token_id: int, alternatives: tuple) -> None:
            ctx.token(text, token_id, alternatives)  # raises JobCancelled after Stop
            self.ids.append(token_id)
            self.text += text

        def flush(self) -> None:
            """Generation ended without reaching a stop sequence: what was held back is text."""
            for text, (token_id, alternatives) in stop_text.flush():
                self.emit(text, token_id, alternatives)

        def end(self) -> None:
            pass

    return TokenStreamer()


def _fast_decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """See TransformersTextBackend.decoder."""

    def own_decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # another transformers layout: its own decode, always right
        return own_decode
    cls, rust = type(tokenizer), getattr(tokenizer, "_tokenizer", None)
    if (
        isinstance(tokenizer, TokenizersBackend)
        and rust is not None
        and cls.decode is PreTrainedTokenizerBase.decode
        and cls._decode is TokenizersBackend._decode
    ):
        rust_decode = rust.decode
        return lambda ids: rust_decode(list(ids), skip_special_tokens=True)
    return own_decode


def check_tokenizer(tokenizer: Any, folder: Path) -> None:
    """A tokenizer can load "successfully" from a folder missing its vocabulary and then turn every
    text into nothing (or into unknown tokens): refuse it rather than babble."""
    hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
    if len(tokenizer) <= 3 or not hello or set(hello) <= {tokenizer.unk_token_id}:
        raise ModelFileError(f"The tokenizer in {folder} is empty or missing its vocabulary: copy the folder again.")


class _KVReuse:
    """The model's KV cache kept between jobs with the token ids it holds, for one model on one device.

    `take(prompt, ...)` hands generate() a cache that already holds prompt[:reused], or None where
    this model's cache cannot be kept (sliding-window, linear-attention or other special layers:
    generate() then makes its own, as before). The cache is taken *out*: should the job fail or be
    cancelled, a partly updated cache is never seen again. `keep(cache, ids)` puts it back after a
    job that ended normally.

    What a prompt takes from the cache:
    - the common prefix of the cached ids and the prompt, all but the prompt's last token at most
      (generate() must feed one token to get the next token's logits). Exact: a token's KV depends
      only on the tokens before it.
    - on RoPE models, when prompt assembly trimmed the oldest story (`shift`) and that prefix ends
      before the cache does: a cached run that the prompt continues with, at most kv_reuse.SHIFT_SLACK new
      tokens later. The cached tokens before the run are dropped, the new ones fed, and the run's
      keys re-rotated back by the shift. The run's KV was computed attending to the dropped tokens,
      so this is close to, not equal to, a fresh read of the prompt (KoboldCpp's ContextShift makes
      the same trade). Only for a trimmed story: after an edit inside the story, the text after it
      would keep the traces of what the writer deleted, so that is read again."""

    def __init__(self) -> None:
        self.cache: Any = None  # a transformers DynamicCache
        self.ids: list[int] = []  # the tokens whose KV it holds, in order
        self._owner: Optional[tuple[int, str]] = None  # (id of the model, device) the cache belongs to
        self._supported: Optional[bool] = None
        self._rotary: Any = None  # the model's rotary embedding, where keys can be re-rotated
        self.kwarg = "cache"  # generate()'s and forward()'s name for it ("past_key_values" before 5.x renamed it)

    def reset(self) -> None:
        self.cache, self.ids = None, []

    def take(self, prompt: list[int], model: Any, device: str, shift: bool) -> tuple[Any, int, int]:
        """(cache or None, prompt tokens taken from the cache, cached tokens a context shift dropped)."""
        if self._owner != (id(model), device):  # another model or device: nothing carries over
            self.reset()
            self._owner, self._supported = (id(model), device), None
        if self._supported is None:
            self._inspect(model)
        cache, ids = self.cache, self.ids
        self.reset()
        if not self._supported:
            return None, 0, 0
        if cache is None:
            return self._new_cache(model), 0, 0
        limit = len(prompt) - 1
        prefix = common_prefix(ids, prompt)
        fed, dropped = 0, 0
        if shift and self._rotary is not None and prefix < min(len(ids), limit):
            plan = shift_plan(ids, prompt, prefix)
            if plan is not None:
                fed, start, kept = plan
                self._shift(cache, model, prompt, prefix, fed, start, kept, device)
                dropped = start - prefix
                prefix += fed + kept
        held = min(prefix, limit)
        if held == 0:
            return self._new_cache(model), 0, 0
        _crop(cache, held)
        return cache, held - fed, dropped

    def keep(self, cache: Any, ids: list[int]) -> None:
        """Keep `cache` after a job that ended normally; `ids`: the prompt and every token generated.
        The last token chosen never went through the model, so the cache holds one token fewer."""
        if cache is None or not _plain_layers(cache) or not cache.layers:
            return
        lengths = {layer.get_seq_length() for layer in cache.layers}
        if len(lengths) == 1 and 0 < (length := lengths.pop()) <= len(ids):
            self.cache, self.ids = cache, list(ids[:length])

    def _inspect(self, model: Any) -> None:
        """Whether this model's cache can be kept, and re-rotated (once per model)."""
        config = model.config.get_text_config(decoder=True)
        supports = getattr(model, "_supports_default_dynamic_cache", lambda: True)
        self._supported = not config.is_encoder_decoder and supports() and _plain_layers(self._new_cache(model))
        self.kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._rotary = _shiftable_rotary(model, config) if self._supported else None

    @staticmethod
    def _new_cache(model: Any) -> Any:
        from transformers import DynamicCache

        # What generate() would make itself: the config tells it which layers slide or are linear.
        return DynamicCache(config=model.config.get_text_config(decoder=True))

    def _shift(
        self, cache: Any, model: Any, prompt: list[int], prefix: int, fed: int, start: int, kept: int, device: str
    ) -> None:
        """Cache := cache[:prefix] + KV of prompt[prefix:prefix+fed] + cache[start:start+kept] moved
        back to follow them (keys re-rotated by prefix + fed - start positions)."""
        import torch

        runs = [
            (layer.keys[..., start : start + kept, :], layer.values[..., start : start + kept, :])
            for layer in cache.layers
        ]
        _crop(cache, prefix)
        if fed:
            end = prefix + fed
            model(
                input_ids=torch.tensor([prompt[prefix:end]], device=device),
                attention_mask=torch.ones((1, end), dtype=torch.long, device=device),
                position_ids=torch.arange(prefix, end, device=device)[None],
                use_cache=True,
                **{self.kwarg: cache},
            )
        delta = prefix + fed - start
        for layer, (keys, values) in zip(cache.layers, runs):
            layer.keys = torch.cat([layer.keys, rotate_keys(self._rotary, keys, delta)], dim=-2)
            layer.values = torch.cat([layer.values, values], dim=-2)


def _plain_layers(cache: Any) -> bool:
    """Every layer a plain DynamicLayer: one (batch, heads, tokens, dim) tensor of keys and one of
    values, a row per token, so the cache can be cut and spliced by token."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _crop(cache: Any, length: int) -> None:
    """Keep the first `length` tokens of every layer (transformers' own crop() changed meaning
    across versions)."""
    for layer in cache.layers:
        if layer.keys is not None and layer.keys.shape[-2] > length:
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]


def _shiftable_rotary(model: Any, config: Any) -> Any:
    """The model's rotary embedding module if its cached keys can be re-rotated, else None: a model
    type known to rotate the whole head with rotate_half, a RoPE whose angle depends on the position
    alone (no dynamic or YaRN-style scaling, no attention scaling), and no learned position table."""
    import torch

    whole_head = getattr(config, "partial_rotary_factor", None) in (None, 1, 1.0)
    if config.model_type not in SHIFT_MODEL_TYPES or not whole_head:
        return None
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    if rotary is None or getattr(rotary, "rope_type", None) not in STATIC_ROPE:
        return None
    if getattr(rotary, "attention_scaling", 1.0) != 1.0:
        return None
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    probe = torch.zeros(1, device=rotary.inv_freq.device)
    cos, _ = rotary(probe, torch.zeros((1, 1), dtype=torch.long, device=probe.device))
    return rotary if cos.shape[-1] == head_dim else None


def rotate_keys(rotary: Any, keys: Any, delta: int) -> Any:
    """Keys (batch, heads, tokens, head_dim) that RoPE rotated at positions q, as they would be at
    q + delta: a rotation by angle q*θ followed by one by delta*θ is the rotation by (q + delta)*θ,
    so applying the model's own rotation for position `delta` moves them (in float32)."""
    import torch

    x = keys.float()
    cos, sin = rotary(x, torch.tensor([[delta]], device=keys.device))  # (1, 1, head_dim)
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # transformers' rotate_half
    return (x * cos[:, None] + turned * sin[:, None]).to(keys.dtype)


class TransformersTextBackend:
    """One causal language model and its tokenizer, resident on one device."""

    def __init__(self, model: Any, tokenizer: Any, device: str, dtype: str, chat_template: Optional[str] = None):
        self.model: Any = model  # a transformers causal LM (untyped here); None once closed
        self.chat_template = chat_template  # Jinja source, rendered only in a sandbox, only in instruct mode
        self.chat_problem = ""  # why the folder's chat template could not be read, if it could not
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.memory_bytes = param_bytes(model)
        self.stop_ids = self._stop_ids()
        self._pieces: dict[int, str] = {}  # token id -> text, for the alternatives
        # The last text encoded, and its ids: assembly measures the final prompt and generate()
        # then encodes that same text, so it is tokenized once, not two or three times.
        self._encoded: Optional[tuple[tuple[str, bool], list[int]]] = None
        self._vocabulary: Optional[text_sampling.Vocabulary] = None  # built when DRY or a ban needs it
        self._kv = _KVReuse()  # the KV cache kept between jobs
        self.reused_tokens = 0  # prompt tokens the last job took from the kept cache instead of feeding them
        self.shifted_tokens = 0  # cached tokens the last job's context shift dropped (0: no shift)

    def decode(self, ids: list[int]) -> str:
        return self.decoder()(ids)

    def decoder(self) -> Callable[[list[int]], str]:
        """`decode` as one function, for the per-token loop. With a fast tokenizer whose class keeps
        transformers' own decode, tokenizer.decode(ids, skip_special_tokens=True,
        clean_up_tokenization_spaces=False) is exactly its Rust tokenizer's decode(ids,
        skip_special_tokens=True) behind a few layers of Python, so that is called directly."""
        fast = getattr(self, "_decoder", None)
        if fast is None:
            fast = self._decoder = _fast_decoder(self.tokenizer)
        return fast

    def encode(self, text: str) -> list[int]:
        return native.tokenize(self.tokenizer, text, special=False)

    def vocabulary(self) -> text_sampling.Vocabulary:
        """Every token's text, for DRY's sequence breakers and the phrase bans (once per model)."""
        if self._vocabulary is None:
            self._vocabulary = text_sampling.Vocabulary.from_tokenizer(self.tokenizer)
        return self._vocabulary

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
            # The config against the weights' headers, on the meta device, before anything is
            # allocated: a config that sizes the model beyond its files is refused here.
            check_memory(folder, check_transformers_folder(folder, torch_dtype(dtype)), torch_dtype(dtype))
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
            # With output_loading_info the call returns (model, info); the type pyright infers for it
            # knows only the model.
            lm, loading = cast(
                tuple[Any, dict[str, list[str]]],
                AutoModelForCausalLM.from_pretrained(
                    str(folder),
                    local_files_only=True,
                    use_safetensors=True,
                    trust_remote_code=False,
                    dtype=torch_dtype(dtype),
                    output_loading_info=True,
                ),
            )
        # transformers' own account of the load, in case it renamed something the check above did
        # not foresee: a model that would run partly random is refused all the same.
        refusal = mismatch_sentence(folder, len(lm.state_dict()), loading["missing_keys"], loading["unexpected_keys"])
        if refusal:
            raise ModelFileError(refusal)
        check_tokenizer(tokenizer, folder)
        # Same spec + seed -> same text: the folder's sampling defaults (generation_config.json may set
        # temperature, top_k, repetition penalties...) would otherwise fill whatever the spec leaves
        # unset. Only its token ids (stop tokens above all) are kept.
        from transformers import GenerationConfig

        own = lm.generation_config
        lm.generation_config = GenerationConfig(
            bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id
        )
        backend = cls(lm.to(device).eval(), tokenizer, device, dtype)
        try:
            backend.chat_template = find_chat_template(folder)
        except StudioError as error:  # the model still continues text; instruct mode says why it can't
            backend.chat_problem = error.message
        return backend

    def generate(self, spec: TextJob, ctx: JobContext) -> TextResult:
        import torch
        from transformers import GenerationConfig

        # 1. The prompt, assembled, reported and encoded.
        ids, trimmed = self._prompt(spec, ctx)

        # 2. The stop tokens come from the folder; how to sample comes from the spec alone (load()
        #    dropped the folder's sampling defaults). The samplers themselves are built in step 3.
        stop_ids = self.stop_ids
        sampling = dict(temperature=1.0, top_k=0, top_p=1.0) if spec.temperature > 0 else {}
        config = GenerationConfig(
            do_sample=spec.temperature > 0,
            max_new_tokens=spec.max_new_tokens,
            eos_token_id=sorted(stop_ids) or None,
            pad_token_id=self._pad_id(stop_ids),
            **sampling,
        )

        # 3. A recorder for the alternatives and a streamer that reports each token as it comes.
        recorder = _TopRecorder()
        streamer = _streamer(self, ids[-CONTEXT_TOKENS:], recorder, spec, ctx)
        processors = _sampling_processors(spec, recorder, self)

        # 4. Generate under the job's own seed, leaving the global random state as it was, from the
        #    kept KV cache where the prompt begins as the last one did. generate() is given the whole
        #    prompt and feeds the model only what the cache lacks.
        input_ids = torch.tensor([ids], device=self.device)
        cuda = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=cuda), torch.inference_mode():
            cache, self.reused_tokens, self.shifted_tokens = self._kv.take(ids, self.model, self.device, trimmed)
            reuse = {self._kv.kwarg: cache} if cache is not None else {}
            torch.manual_seed(spec.seed)
            try:
                self.model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    generation_config=config,
                    logits_processor=processors,
                    streamer=streamer,
                    **reuse,
                )
            except text_sampling.StopSequenceReached:
                pass  # the text ends right before the stop sequence; nothing of it was shown
            else:
                streamer.flush()
            # Only now, the job having ended normally: an error or Stop above leaves no cache behind.
            self._kv.keep(cache, ids + streamer.generated)
        return TextResult(
            streamer.text,
            tuple(streamer.ids),
            RunInfo(device=self.device, runtime=Runtime.TORCH, tokens=len(streamer.ids)),
        )

    def prompt_ids(self, spec: TextJob, ctx: JobContext) -> list[int]:
        """The prompt's token ids: assembled and measured with this tokenizer (reported for the
        context viewer), encoded; an empty one starts from the model's start (or end) of text token."""
        return self._prompt(spec, ctx)[0]

    def _prompt(self, spec: TextJob, ctx: JobContext) -> tuple[list[int], bool]:
        """prompt_ids, and whether the assembly trimmed the story's beginning to fit."""
        context = self.context(spec)
        ctx.context_used(context)
        ids = list(self._encode(context.prompt, special=not spec.instruct)) if context.prompt else []
        if not ids:
            start = (
                self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
            )
            if start is None:
                raise SpecError("prompt", "is empty and this model has no start token; type a few words.")
            ids = [start]
        fitted = fit_window(ids, spec.max_new_tokens, self.context_length)
        return fitted, context.trimmed_chars > 0 or len(fitted) < len(ids)

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

    @property
    def context_length(self) -> int:
        """How many tokens the model sees at once (prompt and new tokens together)."""
        config = self.model.config
        window = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        return int(window) if window else 1_000_000

    def _encode(self, text: str, special: bool) -> list[int]:
        key = (text, special)
        if self._encoded is None or self._encoded[0] != key:
            self._encoded = (key, native.tokenize(self.tokenizer, text, special))
        return self._encoded[1]

    def count_tokens(self, text: str) -> int:
        """Tokens a prompt takes, counted as generate() will encode it (for prompt assembly)."""
        return len(self._encode(text, special=True))

    def count_templated_tokens(self, text: str) -> int:
        """Tokens of a prompt a chat template made: it wrote its special tokens out itself."""
        return len(self._encode(text, special=False))

    def context(self, spec: Union[TextJob, ContextJob]) -> ContextResult:
        """What the model reads for `spec`: its prompt or story assembled within this model's
        window, in the chat template when the job asks for instruct mode."""
        if not spec.instruct:
            return build_context(spec, self.count_tokens, self.context_length)
        return build_context(spec, self.count_templated_tokens, self.context_length, self._chat())

    def _chat(self) -> Callable[[str, str], str]:
        """(system, user) -> the prompt in this model's chat template, rendered in a sandbox."""
        if self.chat_problem:
            raise ModelFileError(self.chat_problem)
        return instruct_chat(self.chat_template, self.tokenizer.bos_token or "", self.tokenizer.eos_token or "")

    def reset_cache(self) -> None:
        """Forget the kept KV cache: the next job reads its whole prompt."""
        self._kv.reset()

    def close(self) -> None:
        self._kv.reset()
        self.model = None
