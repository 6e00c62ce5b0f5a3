"""JobContext's preview throttle: at most ~10 a second, and slower when a preview itself is costly."""

import threading

import numpy as np

from studio.core.events import Preview
from studio.engine.backends.job_context import PREVIEW_COST_SHARE, JobContext


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_steps(preview_cost: float, steps: int = 40, step_seconds: float = 0.02, previews: bool = True):
    clock = Clock()
    events = []
    ctx = JobContext(1, threading.Event(), events.append, clock=clock, previews=previews)

    def preview():
        clock.now += preview_cost
        return np.zeros((2, 2, 3), np.uint8)

    for step in range(1, steps + 1):
        clock.now += step_seconds
        ctx.step(step, steps + 1, preview=preview)  # never the last step here
    return [e.step for e in events if isinstance(e, Preview)]


def test_cheap_previews_come_every_tenth_of_a_second():
    shown = run_steps(preview_cost=0.0)
    assert shown[0] == 1 and len(shown) == 8  # 40 steps of 20 ms: 0.8 s -> every 5th step


def test_a_costly_preview_waits_its_cost_times_the_share():
    cost = 0.03  # 30 ms a preview: the next waits 0.3 s
    shown = run_steps(preview_cost=cost)
    gaps = np.diff(shown)
    assert shown[0] == 1 and all(g * 0.02 + cost >= cost * PREVIEW_COST_SHARE for g in gaps)
    assert len(shown) < len(run_steps(preview_cost=0.0))


def test_no_previews_when_nobody_looks():
    assert run_steps(preview_cost=0.0, previews=False) == []
