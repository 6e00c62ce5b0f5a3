"""The explorer's morph export: a 120-frame morph of each shipped latent model through the
engine (evenly spaced, so up to 240 probe decodes first), then written as GIF and MP4."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from studio.bench.suite import Figure
from studio.core.events import Finished, ImageResult
from studio.core.jobs import MorphJob
from studio.engine.queue import JobQueue
from studio.engine.runner import Runner
from studio.models import paths
from studio.models.registry import ModelRegistry

FRAMES = 120


def morph_export(tmp: Path, quick: bool) -> list[Figure]:
    from studio.latent import write_gif, write_mp4

    runner = Runner(ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded")]), previews=False)
    figures = []
    for model in ("emoji-vae", "emoji-gan"):
        spec = MorphJob(model=model, seeds=(1, 2, 3, 4), frames=FRAMES, device="cpu")
        runner.run(JobQueue().make_job(MorphJob(model=model, seeds=(1, 2), frames=2, device="cpu")), lambda e: None)
        start = time.perf_counter()
        end = runner.run(JobQueue().make_job(spec), lambda e: None)
        job_s = time.perf_counter() - start
        if not isinstance(end, Finished) or not isinstance(end.result, ImageResult):
            raise RuntimeError(f"the {model} morph ended with {end}")
        frames = np.stack(end.result.images)
        timings = {}
        for name, write in (("gif", write_gif), ("mp4", write_mp4)):
            start = time.perf_counter()
            write(frames, tmp / f"{model}.{name}", 24)
            timings[name] = time.perf_counter() - start
        figures.append(
            Figure(
                f"{model.replace('-', '_')}_morph_export",
                FRAMES / (job_s + timings["mp4"]),
                "frames/s",
                "",
                None,
                {
                    "frames": FRAMES,
                    "spacing": "even",
                    "job_s": round(job_s, 3),
                    "gif_write_s": round(timings["gif"], 3),
                    "mp4_write_s": round(timings["mp4"], 3),
                    "frame_px": int(frames.shape[1]),
                    "what": "MorphJob (probe + decode) then write_mp4, frames per second in all",
                },
            )
        )
    return figures
