"""`studio bench` figures for GGUF models on llama.cpp, and for Continue reusing the KV cache.

- gguf_speed: the embedded prose-gguf's tokens/s through the studio (engine Runner, streaming,
  top-5 alternatives, the studio's sampler chain) against llama-cpp-python's own
  `create_completion(stream=True)` with the same settings, on the very same loaded model.
- gguf_vs_transformers: the same prose model on its two runtimes, both through the studio.
- continue_first_token_*: time to the first token of a second Continue on a 3,000-token story
  (the story grew by one sentence) against the first Continue, on llama.cpp and on transformers.
  The model is a random-weight Llama with a 4,096-token window built here (the embedded prose
  model sees only 512 tokens): speed does not depend on what the weights say.
- gguf_stop_latency_tokens: tokens that still arrive after Stop, pressed from another thread.

Each is a ratio or a count from one run, both sides interleaved."""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

from studio.bench.suite import Figure
from studio.bench.workloads import _interleaved, _stream_job, tokens_after_stop
from studio.core.jobs import TextJob
from studio.core.story import StoryContext
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

PROMPT = "It was a dark and stormy night, and"
STORY_TOKENS = 3000
# Sentences to build a long story from (any text will do: the weights are random).
SENTENCES = (
    "The lighthouse keeper climbed the stairs every evening. ",
    "She lit the lamp and watched the ships pass the rocks. ",
    "In the morning she wrote down every ship she had seen, and the weather, and the sea. ",
    "Her brother sent letters from the city, full of noise and news. ",
)


def gguf_text(tmp: Path, quick: bool) -> list[Figure]:
    from studio.models import paths

    runner = Runner(ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded")]))
    figures = _gguf_speed(runner, quick)
    figures.append(_gguf_vs_transformers(runner, quick))
    figures.append(_stop_latency(runner, quick))
    return figures


def continue_reuse(tmp: Path, quick: bool) -> list[Figure]:
    from studio.bench.tiny_models import build_long_llama
    from studio.models.gguf_convert import convert_to_gguf

    root = tmp / "long-models"
    if not root.exists():
        root.mkdir()
        folder = build_long_llama(root / "long-llama")
        convert_to_gguf(folder, root / "long-llama-gguf.gguf", "f16")
    runner = Runner(ModelRegistry([(root, "bench")]))
    return [_continue_ratio(runner, "long-llama-gguf", quick), _continue_ratio(runner, "long-llama", quick)]


def _spec(model: str, **fields) -> TextJob:
    fields.setdefault("max_new_tokens", 64)
    fields.setdefault("prompt", PROMPT)
    return TextJob(model=model, seed=3, temperature=0.8, device="cpu", **fields)


def _gguf_speed(runner: Runner, quick: bool) -> list[Figure]:
    spec = _spec("prose-gguf")
    backend = runner.backend_for(spec)[0]
    llm = backend.llm  # the very model the studio loaded: both sides read the same weights
    repeats = 3 if quick else 9

    def plain() -> float:
        backend.reset_cache()  # both sides read the prompt afresh
        llm.reset()
        start, chunks, reason = time.perf_counter(), 0, None
        for chunk in llm.create_completion(
            PROMPT,
            max_tokens=spec.max_new_tokens,
            temperature=0.8,
            top_k=0,
            top_p=1.0,
            min_p=0.0,
            repeat_penalty=1.0,
            seed=3,
            stream=True,
        ):
            chunks += 1
            reason = chunk["choices"][0]["finish_reason"]  # pyright: ignore[reportIndexIssue, reportTypedDictNotRequiredAccess]
        elapsed = time.perf_counter() - start
        # The stream ends with one chunk that only says why it ended: not a token.
        tokens = spec.max_new_tokens if reason == "length" else chunks - 1
        return tokens / elapsed

    first: list[float] = []

    def studio() -> float:
        backend.reset_cache()
        tokens, seconds = _stream_job(runner, spec, first)
        return tokens / seconds

    p, s = _interleaved(plain, studio, repeats, first.clear)
    speed = s / p
    return [
        Figure(
            "gguf_speed",
            speed,
            "x llama-cpp-python create_completion tokens/s",
            ">= 0.97",
            speed >= 0.97,
            {
                "model": "prose-gguf (Q8_0)",
                "plain_tokens_s": p,
                "studio_tokens_s": s,
                "new_tokens": spec.max_new_tokens,
                "repeats": repeats,
                "settings": "temperature 0.8, no top-k/top-p/min-p, no penalties, seed 3",
            },
        ),
        Figure("gguf_first_token", 1000 * statistics.median(first), "ms", "<= 100", statistics.median(first) <= 0.1),
    ]


def _gguf_vs_transformers(runner: Runner, quick: bool) -> Figure:
    gguf, torch_spec = _spec("prose-gguf"), _spec("prose")
    repeats = 3 if quick else 7
    first: list[float] = []

    def rate(spec: TextJob):
        backend = runner.backend_for(spec)[0]

        def run() -> float:
            backend.reset_cache()
            tokens, seconds = _stream_job(runner, spec, first)
            return tokens / seconds

        return run

    t, g = _interleaved(rate(torch_spec), rate(gguf), repeats)
    return Figure(
        "gguf_vs_transformers",
        g / t,
        "x transformers tokens/s (same model, this CPU)",
        "",
        None,
        {"gguf_tokens_s": g, "transformers_tokens_s": t, "gguf": "Q8_0", "transformers": "float32", "repeats": repeats},
    )


def _long_story(backend, tokens: int) -> str:
    """Text of about `tokens` tokens in this model's tokenizer."""
    text, i = "", 0
    while backend.count_tokens(text) < tokens:
        text += "".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(8))
        i += 1
    return text


def _continue_ratio(runner: Runner, model: str, quick: bool) -> Figure:
    """First token of the first Continue (the whole story read) vs of the second (one sentence more)."""
    spec = _spec(model, max_new_tokens=8, prompt="")
    backend = runner.backend_for(spec)[0]
    story = _long_story(backend, STORY_TOKENS)
    firsts, seconds_ = [], []
    for i in range(2 if quick else 5):
        backend.reset_cache()  # the first Continue reads the whole story
        grown = story + SENTENCES[i % len(SENTENCES)]
        times: list[float] = []
        for text in (story, grown):
            _stream_job(runner, dataclasses.replace(spec, story=StoryContext(text=text)), times)
        firsts.append(times[0])
        seconds_.append(times[1])
    first, second = statistics.median(firsts), statistics.median(seconds_)
    ratio = first / second
    runtime = runner.registry.resolve(model).runtimes[0]
    return Figure(
        f"continue_first_token_{'llama_cpp' if runtime == 'llama.cpp' else 'transformers'}",
        ratio,
        "x faster first token, second Continue vs first",
        ">= 5",
        ratio >= 5,
        {
            "story_tokens": backend.count_tokens(story),
            "first_continue_ms": 1000 * first,
            "second_continue_ms": 1000 * second,
            "reused_tokens": backend.reused_tokens,
            "model": "random Llama, 4 layers, width 256, window 4096",
        },
    )


def _stop_latency(runner: Runner, quick: bool) -> Figure:
    """Stop from another thread at a random moment; the worst count of tokens that still arrive."""
    late = tokens_after_stop(runner, _spec("prose-gguf", max_new_tokens=400), 3 if quick else 10)
    return Figure(
        "gguf_stop_latency_tokens",
        max(late),
        "tokens after Stop (worst)",
        "<= 1",
        max(late) <= 1,
        {"runs": len(late), "each": late},
    )
