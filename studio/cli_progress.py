"""The CLI's progress on stderr: a tqdm bar on a terminal, one line per stage anywhere else.

A log file or a pipe gets no carriage-return frames: each stage (a generation, a morph, writing a
file) says once, when it ends, how far it got and how long it took."""

from __future__ import annotations

import sys
import time
from typing import IO, Optional

from tqdm import tqdm


class StageProgress:
    """The progress of one stage, fed `update(step, total)` (from any thread) and ended by `close()`.

    On a terminal: a tqdm bar redrawn in place, made at the first step so its rate leaves out the
    model loading before it. Elsewhere: nothing until `close()`, then one line such as
    "seed 7 [20/20 steps] 3.1 s" (the time counted from when the stage was made)."""

    def __init__(self, label: str, unit: str = "step", stream: Optional[IO[str]] = None):
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.interactive = is_terminal(self.stream)
        self._made = time.perf_counter()
        self._bar: Optional[tqdm] = None
        self._reached: Optional[tuple[int, int]] = None  # (step, total) of the last update

    def update(self, step: int, total: int) -> None:
        self._reached = (step, total)
        if not self.interactive:
            return
        if self._bar is None:
            self._bar = tqdm(
                total=total,
                initial=step,
                desc=self.label,
                unit=self.unit,
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
            )
            return
        if total != self._bar.total:  # a batch can learn its total late
            self._bar.total = total
        self._bar.update(step - self._bar.n)

    def close(self) -> None:
        """End the stage: the bar's last frame stays on screen, or the one line is written."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._reached is not None and not self.interactive:
            step, total = self._reached
            seconds = time.perf_counter() - self._made
            self.stream.write(f"{self.label} [{step}/{total} {self.unit}s] {seconds:.1f} s\n")
            self.stream.flush()
        self._reached = None


def is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
