"""The workloads behind `studio bench`. Each returns Figures; heavy imports happen inside.

Studio and plain calls are interleaved repeat by repeat, so slow drift on a noisy machine hits
both sides alike; the figure is the ratio of medians."""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import time
from pathlib import Path

from studio.bench.suite import Figure, seconds
from studio.core.child_python import PACKAGE_ROOT, child_env, python_command
from studio.core.events import Event, Finished, Preview, Token
from studio.core.jobs import ImageJob, TextJob
from studio.engine.queue import JobQueue
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

PROMPT = "a photo of a red cat"


def _ensure(folder: Path, build) -> Path:
    if not folder.exists():
        build(folder)
    return folder


def _runner(root: Path) -> Runner:
    return Runner(ModelRegistry([(root, "bench")]))


def _run(runner: Runner, spec, emit=lambda e: None) -> Event:
    end = runner.run(JobQueue().make_job(spec), emit)
    if not isinstance(end, Finished):
        raise RuntimeError(f"benchmark job ended with {end}")
    return end


def _stream_job(runner: Runner, spec, first: list[float]) -> tuple[int, float]:
    """Run a text job through the studio: (tokens streamed, seconds); the time to its first token
    is appended to `first`."""
    start = time.perf_counter()
    tokens = 0

    def emit(event):
        nonlocal tokens
        if isinstance(event, Token):
            if not tokens:
                first.append(time.perf_counter() - start)
            tokens += 1

    _run(runner, spec, emit)
    return tokens, time.perf_counter() - start


def _pump_until_ended(app, ends: list, start: float) -> None:
    """Run the GUI event loop until the job's end lands in `ends`; RuntimeError unless it finished."""
    while not ends:
        if time.perf_counter() - start > 300:
            raise RuntimeError("the benchmark job did not end within 5 minutes")
        app.processEvents()
        time.sleep(0.0005)
    if ends[0] != "finished":
        raise RuntimeError(f"the benchmark job did not finish: {ends[0]}")


def _interleaved(plain, studio, repeats: int, after_warm_up=lambda: None) -> tuple[float, float]:
    """Medians of what plain() and studio() each return (seconds, a rate...) over interleaved
    repeats, after one warm-up call of each (model load, allocator); `after_warm_up` then drops
    anything the warm-up recorded on the side (first-token times)."""
    plain()
    studio()
    after_warm_up()
    p, s = [], []
    for _ in range(repeats):
        p.append(plain())
        s.append(studio())
    return statistics.median(p), statistics.median(s)


def _interleaved_ratio(plain, studio, repeats: int) -> tuple[float, dict]:
    """median(studio) / median(plain) seconds over interleaved repeats, after a warm-up of each."""
    t_plain, t_studio = _interleaved(lambda: seconds(plain), lambda: seconds(studio), repeats)
    return t_studio / t_plain, {"plain_s": t_plain, "studio_s": t_studio, "repeats": repeats}


def image_overhead(tmp: Path, quick: bool) -> list[Figure]:
    """A tiny SD pipeline: the studio's job (cache, events, throttled previews) vs pipe(...)."""
    import torch
    from diffusers import StableDiffusionPipeline  # pyright: ignore[reportPrivateImportUsage] - exported lazily, not marked public

    from studio.bench.tiny_models import build_tiny_diffusers

    folder = _ensure(tmp / "tiny-sd", build_tiny_diffusers)
    steps, size, repeats = 8, 64, 3 if quick else 9
    pipe = StableDiffusionPipeline.from_pretrained(
        str(folder), local_files_only=True
    )  # what build_tiny_diffusers saves
    pipe.set_progress_bar_config(disable=True)
    runner = Runner(ModelRegistry([(tmp, "bench")]), previews=False)  # previews: see emoji_sd_with_previews
    # Both sides on the CPU in float32: these figures are about the engine, not the device.
    spec = ImageJob(model="tiny-sd", prompt=PROMPT, steps=steps, width=size, height=size, seed=1, device="cpu")

    def plain():
        pipe(
            PROMPT,
            num_inference_steps=steps,
            width=size,
            height=size,
            guidance_scale=7.0,
            generator=torch.Generator("cpu").manual_seed(1),
            output_type="np",
        )

    def studio():
        _run(runner, spec)

    ratio, details = _interleaved_ratio(plain, studio, repeats)
    return [
        Figure(
            "image_overhead",
            ratio,
            "x plain pipe()",
            "<= 1.05",
            ratio <= 1.05,
            {**details, "steps": steps, "size": size},
        )
    ]


def embedded_sd_overhead(tmp: Path, quick: bool) -> list[Figure]:
    """The embedded emoji-sd at its suggested 20 steps: the studio's job, previews included (x0
    decoded by its small VAE up to 10 times a second), vs the plain pipeline call."""
    import torch
    from diffusers import StableDiffusionPipeline  # pyright: ignore[reportPrivateImportUsage] - exported lazily, not marked public

    from studio.models import paths

    folder = paths.EMBEDDED_MODELS_DIR / "emoji-sd"
    steps, repeats = 20, 3 if quick else 9
    # emoji-sd is a StableDiffusionPipeline (its model_index.json); the base class has no __call__ to type pipe(...).
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    registry = ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded")])
    engine_only = Runner(registry, previews=False)  # what `studio generate` runs
    windowed = Runner(registry)  # previews decoded as the window gets them
    spec = ImageJob(
        model="emoji-sd", prompt="red apple", steps=steps, width=64, height=64, seed=1, guidance_scale=5.0, device="cpu"
    )

    def plain():
        with torch.inference_mode():
            pipe(
                "red apple",
                num_inference_steps=steps,
                width=64,
                height=64,
                guidance_scale=5.0,
                generator=torch.Generator("cpu").manual_seed(1),
                output_type="np",
            )

    previews: list = []
    ratio, details = _interleaved_ratio(plain, lambda: _run(engine_only, spec), repeats)
    with_previews, preview_details = _interleaved_ratio(
        plain, lambda: _run(windowed, spec, lambda e: previews.append(1) if isinstance(e, Preview) else None), repeats
    )
    per_job = len(previews) / (repeats + 1)
    return [
        Figure(
            "emoji_sd_overhead",
            ratio,
            "x plain pipe()",
            "<= 1.02",
            ratio <= 1.02,
            {**details, "steps": steps, "size": 64, "previews": "off (as `studio generate`)"},
        ),
        Figure(
            "emoji_sd_with_previews",
            with_previews,
            "x plain pipe()",
            "",
            True,
            {
                **preview_details,
                "previews_per_job": round(per_job, 1),
                "note": "each preview is a full VAE decode of x0",
            },
        ),
    ]


def image_previews(tmp: Path, quick: bool) -> list[Figure]:
    """In the real window with the embedded emoji-sd: Generate to the first preview on the canvas,
    and each step's end to its preview's pixels on the canvas (x0 decode + signal + paint)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from studio.engine.backends.job_context import JobContext
    from studio.models import paths

    os.environ["STUDIO_CONFIG_DIR"] = str(tmp / "config")
    os.environ["STUDIO_DATA_DIR"] = str(tmp / "data")  # the bench's images stay out of the gallery
    from studio.app import Studio, make_app

    app = make_app()
    # Jobs on the engine thread, not in the engine process: the step times are taken by patching
    # JobContext.step, which only this process's runner would call.
    studio = Studio(ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded")]), isolated=False)
    window = studio.window
    window.show()
    ws = window.image
    step_ends: dict[tuple[int, int], float] = {}
    real_step = JobContext.step

    def timed_step(self: JobContext, step: int, total: int, preview=None) -> None:  # when each step's work is done
        step_ends[(self.job_id, step)] = time.perf_counter()
        return real_step(self, step, total, preview)

    JobContext.step = timed_step
    latencies: list[float] = []
    firsts: list[float] = []
    shown: list[float] = []
    real_set = ws.canvas.set_image

    def set_image(image):
        # The step this preview belongs to, read before the nested event loop below can take in
        # later Progress events.
        job = ws.session.on_canvas  # the job whose preview this is
        key = (job.id, job.step) if job is not None else None
        real_set(image)
        app.processEvents()  # the paint itself
        shown.append(time.perf_counter())
        if key in step_ends:
            latencies.append(shown[-1] - step_ends[key])

    ws.canvas.set_image = set_image
    ends: list = []
    studio.engine.job_finished.connect(lambda jid, res: ends.append("finished"))
    studio.engine.job_failed.connect(lambda jid, kind, msg: ends.append(msg))
    spec = ImageJob(
        model="emoji-sd", prompt="red apple", steps=20, width=64, height=64, seed=3, guidance_scale=5.0, device="cpu"
    )
    try:
        for i in range(3 if quick else 6):
            ends.clear()
            shown.clear()
            start = time.perf_counter()
            ws.generate(spec)
            _pump_until_ended(app, ends, start)
            if i and shown:  # the first run loads the model
                firsts.append(shown[0] - start)
    finally:
        JobContext.step = real_step
        studio.shutdown()
        window.close()
    first = statistics.median(firsts) * 1000
    p95 = statistics.quantiles(latencies, n=20)[18] * 1000 if len(latencies) >= 20 else max(latencies) * 1000
    return [
        Figure("first_preview", first, "ms", "", True, {"model": "emoji-sd", "steps": 20, "runs": len(firsts)}),
        Figure(
            "step_to_canvas_p95",
            p95,
            "ms",
            "<= 100",
            p95 <= 100,
            {"median_ms": statistics.median(latencies) * 1000, "previews": len(latencies)},
        ),
    ]


def text_overhead(tmp: Path, quick: bool) -> list[Figure]:
    """A tiny GPT-2: seconds per token through the studio (streaming, alternatives) vs generate()."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.bench.tiny_models import build_tiny_gpt2

    folder = _ensure(tmp / "tiny-gpt2", build_tiny_gpt2)
    new_tokens, repeats = 64, 3 if quick else 9
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    inputs = tok(PROMPT, return_tensors="pt")
    runner = _runner(tmp)
    spec = TextJob(model="tiny-gpt2", prompt=PROMPT, max_new_tokens=new_tokens, seed=3, temperature=0.8, device="cpu")

    def plain() -> float:
        torch.manual_seed(3)
        start = time.perf_counter()
        # The same sampling as the studio's spec: no top-k / top-p cut (the model's defaults would add one).
        # transformers types generate()'s self as a Protocol its own models do not satisfy (hf_quantizer, encoder...).
        out = model.generate(  # pyright: ignore[reportAttributeAccessIssue]
            **inputs,
            do_sample=True,
            temperature=0.8,
            top_k=0,
            top_p=1.0,
            max_new_tokens=new_tokens,
            pad_token_id=tok.eos_token_id,
        )
        return (time.perf_counter() - start) / (out.shape[1] - inputs["input_ids"].shape[1])

    first: list[float] = []

    def studio() -> float:
        tokens, seconds = _stream_job(runner, spec, first)
        return seconds / max(tokens, 1)

    p, s = _interleaved(plain, studio, repeats, first.clear)
    ratio = s / p
    return [
        Figure(
            "text_overhead",
            ratio,
            "x plain generate() per token",
            "<= 1.03",
            ratio <= 1.03,
            {
                "plain_ms_per_token": 1000 * p,
                "studio_ms_per_token": 1000 * s,
                "new_tokens": new_tokens,
                "repeats": repeats,
            },
        ),
        Figure("text_first_token", 1000 * statistics.median(first), "ms", "<= 100", statistics.median(first) <= 0.1),
    ]


def prose_text(tmp: Path, quick: bool) -> list[Figure]:
    """The embedded prose model: tokens per second through the studio vs its plain generate(),
    time to the first token (warm), and how many tokens still arrive after Stop is pressed from
    another thread (the GUI's) at a random moment."""

    import torch

    from studio.models import paths

    new_tokens, repeats = 64, 3 if quick else 9
    prompt = "It was a dark and stormy night, and"
    runner = Runner(ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded")]))
    spec = TextJob(model="prose", prompt=prompt, max_new_tokens=new_tokens, seed=3, temperature=0.8, device="cpu")
    # The very model object the studio loaded (float32 on a CPU), so both sides run the same weights
    # from the same memory: two copies would take turns evicting each other from the CPU caches.
    backend = runner.backend_for(spec)[0]
    model, tok = backend.model, backend.tokenizer
    inputs = tok(prompt, return_tensors="pt")

    from transformers import GenerationConfig, LogitsProcessorList, TemperatureLogitsWarper

    # generate() called the way the studio calls it (same config, same warper, same seed), so both
    # sides draw the same tokens and stop at the same end-of-text: the ratio is the studio's cost.
    config = GenerationConfig(
        do_sample=True,
        max_new_tokens=new_tokens,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )

    def plain() -> float:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(3)
            out = model.generate(
                **inputs, generation_config=config, logits_processor=LogitsProcessorList([TemperatureLogitsWarper(0.8)])
            )
        return (out.shape[1] - inputs["input_ids"].shape[1]) / (time.perf_counter() - start)

    first: list[float] = []

    def studio() -> float:
        tokens, seconds = _stream_job(runner, spec, first)
        return tokens / seconds

    p, s = _interleaved(plain, studio, repeats, first.clear)
    speed = s / p

    late = tokens_after_stop(runner, dataclasses.replace(spec, max_new_tokens=400), 3 if quick else 10)
    return [
        Figure(
            "prose_speed",
            speed,
            "x plain generate() tokens/s",
            ">= 0.97",
            speed >= 0.97,
            {"plain_tokens_s": p, "studio_tokens_s": s, "new_tokens": new_tokens, "repeats": repeats},
        ),
        Figure("prose_first_token", 1000 * statistics.median(first), "ms", "<= 100", statistics.median(first) <= 0.1),
        Figure(
            "stop_latency_tokens",
            max(late),
            "tokens after Stop (worst)",
            "<= 1",
            max(late) <= 1,
            {"runs": len(late), "each": late},
        ),
    ]


def tokens_after_stop(runner: Runner, spec, runs: int) -> list[int]:
    """Stop pressed from another thread (the GUI's) at a random moment of each run: how many tokens
    still arrived after it, per run."""
    import random
    import threading

    rng = random.Random(0)
    late: list[int] = []
    for _ in range(runs):
        job = JobQueue().make_job(spec)
        stopped_at: list[float] = []
        arrivals: list[float] = []
        timer = threading.Timer(
            rng.uniform(0.02, 0.2), lambda: (stopped_at.append(time.perf_counter()), job.cancel.set())
        )

        def emit(event, arrivals=arrivals):
            if isinstance(event, Token):
                arrivals.append(time.perf_counter())

        timer.start()
        runner.run(job, emit)
        timer.join()
        late.append(sum(1 for t in arrivals if stopped_at and t > stopped_at[0]))
    return late


def gui_stall(tmp: Path, quick: bool) -> list[Figure]:
    """The longest gap in the GUI event loop while the engine thread renders on the CPU.

    A 1 ms timer ticks on the GUI thread of the real main window while an image job runs with
    previews drawn on its canvas; a gap between ticks is time the window could not respond."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QTimer

    from studio.bench.tiny_models import build_tiny_diffusers
    from studio.ui.main_window import MainWindow

    _ensure(tmp / "tiny-sd", build_tiny_diffusers)
    os.environ["STUDIO_CONFIG_DIR"] = str(tmp / "config")  # never touch the person's window settings
    from studio.app import Studio, make_app

    app = make_app()
    studio = Studio(ModelRegistry([(tmp, "bench")]))
    window: MainWindow = studio.window
    window.show()
    steps = 20 if quick else 40
    spec = ImageJob(model="tiny-sd", prompt=PROMPT, steps=steps, width=128, height=128, seed=2, device="cpu")
    ends: list = []
    studio.engine.job_finished.connect(lambda jid, res: ends.append("finished"))
    studio.engine.job_failed.connect(lambda jid, kind, msg: ends.append(msg))
    studio.engine.job_cancelled.connect(lambda jid, reason: ends.append(reason))

    def run_once() -> float:
        ends.clear()
        start = time.perf_counter()
        studio.engine.submit(spec)
        _pump_until_ended(app, ends, start)
        return time.perf_counter() - start

    try:
        # Warm the model first: a cold load imports torch and diffusers, which this figure is not about.
        run_once()
        gaps: list[float] = []
        clock = QElapsedTimer()
        clock.start()
        last = [clock.nsecsElapsed()]

        def tick():
            now = clock.nsecsElapsed()
            gaps.append((now - last[0]) / 1e6)
            last[0] = now

        timer = QTimer()
        timer.setInterval(1)
        timer.timeout.connect(tick)
        timer.start()
        seconds = run_once()
        timer.stop()
    finally:
        studio.shutdown()
        window.close()
    worst = max(gaps) if gaps else float("nan")
    p99 = statistics.quantiles(gaps, n=100)[98] if len(gaps) >= 100 else worst
    return [
        Figure(
            "gui_stall_max",
            worst,
            "ms",
            "<= 50",
            worst <= 50,
            {"p99_ms": p99, "ticks": len(gaps), "job_seconds": seconds, "steps": steps, "size": 128},
        )
    ]


def cold_start(tmp: Path, quick: bool) -> list[Figure]:
    """Process start to main window shown, in a fresh interpreter (torch must not load first)."""
    repeats = 2 if quick else 5
    times = []
    env = child_env(
        dict(
            os.environ,
            QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
            STUDIO_MODELS_DIR=str(tmp),
            STUDIO_CONFIG_DIR=str(tmp / "config"),
        )
    )
    for _ in range(repeats):
        env["STUDIO_T0"] = repr(time.time())
        out = subprocess.run(
            python_command("studio.app", "--quit-after-show"),
            env=env,
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        line = next((text for text in out.stdout.splitlines() if text.startswith("window-shown")), None)
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"the studio did not start: {out.stderr.strip()[-500:]}")
        times.append(float(line.split()[1]))
    best = statistics.median(times)
    return [Figure("cold_start", best, "s", "<= 1.5", best <= 1.5, {"runs_s": times})]
