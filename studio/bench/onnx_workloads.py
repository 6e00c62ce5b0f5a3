"""ONNX Runtime against torch for every embedded model (issue 8): each is exported with
`export_onnx` (parity checked, not timed), then the same job runs on both runtimes, interleaved,
on the CPU and, where there is one, on the CUDA GPU (torch in float16 there; ONNX Runtime on the
provider it starts first, TensorRT before CUDA, named in the figure's details)."""

from __future__ import annotations

import time
from pathlib import Path

from studio.bench.suite import Figure
from studio.core.events import Finished
from studio.core.jobs import ImageJob, JobSpec, LatentBatchJob, TextJob
from studio.engine.queue import JobQueue
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

LATENT_MAP = 16  # a 4 x 4 latent map: what the explorer decodes at once


def _jobs(latent_dim: int = 128) -> dict[str, JobSpec]:
    import numpy as np

    latents = tuple(
        tuple(float(v) for v in row) for row in np.random.default_rng(0).standard_normal((LATENT_MAP, latent_dim))
    )
    return {
        "emoji-vae": LatentBatchJob(model="emoji-vae", latents=latents),
        "emoji-gan": LatentBatchJob(model="emoji-gan", latents=latents),
        "emoji-sd": ImageJob(
            model="emoji-sd", prompt="red apple", steps=20, width=64, height=64, seed=3, guidance_scale=5.0
        ),
        # Greedy with no stop token: every run makes the same 64 tokens on both runtimes.
        "prose": TextJob(
            model="prose",
            prompt="The old house at the end of the lane",
            max_new_tokens=64,
            temperature=0.0,
            seed=1,
            stop=(),
        ),
    }


WHAT = {
    "emoji-vae": f"decode {LATENT_MAP} latents",
    "emoji-gan": f"decode {LATENT_MAP} latents",
    "emoji-sd": "20 steps, 64 px, cfg 5",
    "prose": "64 new tokens, greedy",
}


def _timed(runner: Runner, spec: JobSpec) -> tuple[float, Finished]:
    job = JobQueue().make_job(spec)
    start = time.perf_counter()
    end = runner.run(job, lambda event: None)
    elapsed = time.perf_counter() - start
    if not isinstance(end, Finished):
        raise RuntimeError(f"benchmark job {spec.kind} on {spec.model} ({spec.runtime}) ended with {end}")
    return elapsed, end


def onnx_vs_torch(tmp: Path, quick: bool) -> list[Figure]:
    import dataclasses
    import statistics

    import torch

    from studio.engine.export.onnx_export import export_onnx
    from studio.models import paths

    embedded = ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded")])
    exports = tmp / "onnx-exports"
    exports.mkdir(exist_ok=True)
    export_seconds = {}
    for model_id in WHAT:
        started = time.perf_counter()
        parity = export_onnx(embedded.resolve(model_id), exports / f"{model_id}-onnx", replace=True)
        export_seconds[model_id] = round(time.perf_counter() - started, 2)
        if not parity.ok:
            raise RuntimeError(f"the ONNX export of {model_id} failed its parity check: {parity.lines}")
    runner = Runner(ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded"), (exports, "bench")]), previews=False)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    repeats = 2 if quick else 7
    figures = []
    for device in devices:
        for model_id, spec in _jobs().items():
            on = {runtime: dataclasses.replace(spec, runtime=runtime, device=device) for runtime in ("torch", "onnx")}
            times: dict[str, list[float]] = {"torch": [], "onnx": []}
            info = {}
            for runtime in on:  # warm-up: loads the model, first-run allocations
                _timed(runner, on[runtime])
            for _ in range(repeats):
                for runtime in on:  # interleaved, so a slow patch of the machine hits both
                    elapsed, end = _timed(runner, on[runtime])
                    times[runtime].append(elapsed)
                    info[runtime] = end.result.info
            t_torch, t_onnx = statistics.median(times["torch"]), statistics.median(times["onnx"])
            details = {
                "torch_s": round(t_torch, 5),
                "onnx_s": round(t_onnx, 5),
                "repeats": repeats,
                "job": WHAT[model_id],
                "torch_dtype": info["torch"].dtype or None,
                "onnx_provider": info["onnx"].provider or None,
                "export_s": export_seconds[model_id],
            }
            figures.append(
                Figure(
                    f"{model_id.replace('-', '_')}_onnx_vs_torch_{device}",
                    t_onnx / t_torch,
                    "x torch time (< 1: ONNX Runtime faster)",
                    "",
                    None,
                    details,
                )
            )
    return figures
