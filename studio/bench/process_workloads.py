"""What running jobs in the engine process costs (issue 7): the same emoji-sd job through the
engine process and through a runner in this process, and how long the studio takes to run a job
again after its engine process crashed."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from studio.bench.suite import Figure
from studio.core.events import TERMINAL_EVENTS, Event, Failed, Finished
from studio.core.jobs import ImageJob
from studio.engine.host.supervisor import EngineProcess, RunnerRecipe
from studio.engine.queue import JobQueue
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry


class Relay:
    """An engine process serving a queue on a thread of its own, as the window's engine thread does."""

    def __init__(self, registry: ModelRegistry):
        self.queue = JobQueue()
        self.host = EngineProcess(RunnerRecipe(registry, 1 << 32, previews=False))
        self._ends: dict[int, Event] = {}
        self._ended = threading.Condition()
        self._thread = threading.Thread(target=self.host.serve, args=(self.queue, self._emit), daemon=True)
        self._thread.start()

    def _emit(self, event: Event) -> None:
        if isinstance(event, TERMINAL_EVENTS):
            with self._ended:
                self._ends[event.job_id] = event
                self._ended.notify_all()

    def run(self, spec) -> Event:
        job = self.queue.make_job(spec)
        self.queue.put(job)
        with self._ended:
            if not self._ended.wait_for(lambda: job.job_id in self._ends, timeout=300):
                raise RuntimeError("the benchmark job did not end within 5 minutes")
            return self._ends.pop(job.job_id)

    def close(self) -> None:
        self.queue.close()
        self._thread.join()


def _finished(end: Event) -> Finished:
    if not isinstance(end, Finished):
        raise RuntimeError(f"benchmark job ended with {end}")
    return end


def engine_process(tmp: Path, quick: bool) -> list[Figure]:
    from studio.bench.workloads import _interleaved_ratio
    from studio.models import paths

    registry = ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded")])
    spec = ImageJob(
        model="emoji-sd", prompt="red apple", steps=20, width=64, height=64, seed=3, guidance_scale=5.0, device="cpu"
    )
    runner = Runner(registry, previews=False)
    relay = Relay(registry)
    try:
        ratio, details = _interleaved_ratio(
            lambda: _finished(runner.run(JobQueue().make_job(spec), lambda e: None)),
            lambda: _finished(relay.run(spec)),
            3 if quick else 7,
        )
    finally:
        relay.close()
    figures = [
        Figure(
            "engine_process_overhead",
            ratio,
            "x same job in-process",
            "<= 1.05",
            ratio <= 1.05,
            {**details, "job": "emoji-sd 20 steps 64 px, cpu"},
        )
    ]

    # A crash, then the next job: a new engine process starts, loads its model and runs it.
    crash_root = tmp / "crash-models"
    for name, extra in (("crash-image", {"crash_at_step": 2}), ("fake-image", {})):
        (crash_root / name).mkdir(parents=True, exist_ok=True)
        manifest = {"format": "fake", "kind": "image", "step_seconds": 0.0, **extra}
        (crash_root / name / "studio.json").write_text(json.dumps(manifest))
    relay = Relay(ModelRegistry([(crash_root, "bench")]))
    tries = []
    try:
        relay.run(ImageJob(model="fake-image", steps=1, width=16, height=16))  # the first start
        for _ in range(2 if quick else 5):
            end = relay.run(ImageJob(model="crash-image", steps=4, width=16, height=16))
            if not isinstance(end, Failed) or end.kind != "engine crash":
                raise RuntimeError(f"the crash model did not crash: {end}")
            start = time.perf_counter()
            _finished(relay.run(ImageJob(model="fake-image", steps=1, width=16, height=16)))
            tries.append(time.perf_counter() - start)
    finally:
        relay.close()
    tries.sort()
    restart = tries[len(tries) // 2]
    figures.append(
        Figure(
            "engine_restart_s",
            restart,
            "s crash -> next job done",
            "<= 2",
            restart <= 2,
            {"tries_s": [round(t, 3) for t in tries], "starts": relay.host.starts},
        )
    )
    return figures
