"""Soak: 1000 jobs of every kind through the window's engine (thread + engine process) on a fast
backend, with random cancels of queued and running jobs. Every job ends in exactly one terminal
event, every result is its own job's, and memory stays flat."""

import json
import os
import random

import numpy as np
import psutil
import pytest
from PIL import Image

from studio.core.jobs import ContextJob, ImageJob, LatentBatchJob, LatentDecodeJob, LatentEncodeJob, MorphJob, TextJob
from studio.engine.host.supervisor import EngineProcess, RunnerRecipe
from studio.models.registry import ModelRegistry
from studio.state.engine_thread import EngineThread
from studio.state.jobs import JobList

from fake_models import write_fake_model

JOBS = 1000
WARM_UP = 100  # RSS is measured from here: the first jobs load the models and fill the histories


def spec_for(i: int, rng: random.Random, picture: str):
    kind = i % 7
    if kind == 0:
        return ImageJob(model="fast-image", steps=rng.randint(1, 3), width=16 + 8 * (i % 5), height=16, seed=i)
    if kind == 1:
        return TextJob(model="fast-text", prompt=f"story {i}", max_new_tokens=rng.randint(1, 6), seed=i)
    if kind == 2:
        return LatentDecodeJob(model="fast-latent", latent=tuple(rng.uniform(-2, 2) for _ in range(8)))
    if kind == 3:
        return LatentBatchJob(
            model="fast-latent",
            latents=tuple(tuple(rng.uniform(-2, 2) for _ in range(8)) for _ in range(rng.randint(1, 4))),
        )
    if kind == 4:
        return MorphJob(model="fast-latent", seeds=(i, i + 1), frames=rng.randint(2, 5))
    if kind == 5:
        return ContextJob(model="fast-text", prompt=f"context {i}")
    return LatentEncodeJob(model="fast-latent", image=picture)


def matches(spec, result) -> bool:
    """A result belongs to its own job (a swapped or duplicated result would not fit)."""
    if isinstance(spec, ImageJob):
        return len(result.images) == 1 and result.images[0].shape == (spec.height, spec.width, 3)
    if isinstance(spec, TextJob):
        return len(result.token_ids) == spec.max_new_tokens
    if isinstance(spec, LatentDecodeJob):
        return len(result.images) == 1
    if isinstance(spec, LatentBatchJob):
        return len(result.images) == len(spec.latents)
    if isinstance(spec, MorphJob):
        return len(result.images) == spec.frames
    if isinstance(spec, ContextJob):
        return result.prompt.endswith(spec.prompt)
    return len(result.latents) == 1 and len(result.latents[0]) == 8


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


@pytest.mark.timeout(600)
def test_a_thousand_jobs_with_random_cancels_each_end_exactly_once_and_memory_stays_flat(qtbot, sandbox_dirs, tmp_path):
    models = sandbox_dirs / "models"
    for kind in ("image", "text"):
        write_fake_model(models / f"fast-{kind}", kind, step_seconds=0.002)
    write_fake_model(models / "fast-latent", "latent", step_seconds=0.001, latent_dim=8, image_size=16)
    picture = tmp_path / "green.png"
    Image.new("RGB", (16, 16), (20, 200, 40)).save(picture)

    engine = EngineThread(EngineProcess(RunnerRecipe(ModelRegistry(), 1 << 30)))
    jobs = JobList(engine)
    ends: dict[int, list[str]] = {}
    results: dict[int, object] = {}
    engine.job_finished.connect(
        lambda jid, result: (ends.setdefault(jid, []).append("finished"), results.__setitem__(jid, result))
    )
    engine.job_failed.connect(lambda jid, kind, message: ends.setdefault(jid, []).append(f"failed: {message}"))
    engine.job_cancelled.connect(lambda jid, reason: ends.setdefault(jid, []).append(reason))
    engine.start()
    rng = random.Random(7)
    specs: dict[int, object] = {}
    rss: dict[str, tuple[float, float]] = {}
    try:
        for i in range(JOBS):
            job = jobs.submit(spec_for(i, rng, str(picture)))
            specs[job.id] = job.spec
            if rng.random() < 0.15:  # cancel a recent job: waiting, running or (sometimes) already over
                engine.cancel(rng.choice(list(specs)[-6:]))
            if i % 20 == 19:  # let the engine catch up now and then, so cancels also hit running jobs
                qtbot.waitUntil(lambda: len(ends) >= len(specs) - 5, timeout=60_000)
            if i == WARM_UP:
                qtbot.waitUntil(lambda: len(ends) == len(specs), timeout=60_000)
                rss["start"] = (rss_mb(os.getpid()), rss_mb(engine.host.pid))
        qtbot.waitUntil(lambda: len(ends) == len(specs), timeout=120_000)
        rss["end"] = (rss_mb(os.getpid()), rss_mb(engine.host.pid))
    finally:
        assert engine.stop()

    assert sorted(ends) == sorted(specs)
    assert {jid: e for jid, e in ends.items() if len(e) != 1} == {}  # exactly one terminal event each
    assert not [e for e in ends.values() if e[0].startswith("failed")]
    assert all(matches(specs[jid], result) for jid, result in results.items())
    outcomes = [e[0] for e in ends.values()]
    summary = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    assert summary["finished"] > JOBS // 2 and summary.get("cancelled", 0) > 20
    drift = {who: round(rss["end"][n] - rss["start"][n], 1) for n, who in enumerate(("window", "engine"))}
    print(
        "SOAK "
        + json.dumps(
            {
                "jobs": JOBS,
                "outcomes": summary,
                "rss_start_mb": rss["start"],
                "rss_end_mb": rss["end"],
                "drift_mb": drift,
            }
        )
    )
    assert drift["window"] < 40 and drift["engine"] < 40, drift  # flat: no per-job leak (900 jobs)
    assert np.isfinite(list(drift.values())).all()
