"""The training loop every recipe shares: a time budget, a progress line, checkpoints to resume
from, then evaluation and export of the model folder.

A run lives in one folder:

    OUT/checkpoint.pt    everything needed to resume (nets, optimisers, step, time spent, RNG)
    OUT/model/           the exported model, ready to copy into studio/resources/models/<id>
    OUT/metrics.json     the final metrics report (also printed)

`--minutes` is the run's *total* training time, across resumes: re-running an interrupted command
finishes the same run rather than starting a longer one. Learning-rate schedules follow the
fraction of that time spent, so a shorter budget still ends with a cooled-down model.

The checkpoint is a torch file only this code writes; it is still read with
`torch.load(weights_only=True)`, the same rule as for any other file (docs/DESIGN.md §4)."""

from __future__ import annotations

import io
import json
import logging
import shutil
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from studio.core.atomic import write_atomic
from studio.core.errors import StudioError, first_line
from studio.core.machine import cpu_name

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_EVERY_S = 120.0


@dataclass
class TrainOptions:
    out: Path
    minutes: float
    device: str = "cpu"
    seed: int = 0
    max_steps: Optional[int] = None  # tests: stop after this many steps whatever the time
    tiny: bool = False  # tests: a few images / paragraphs and the smallest nets
    fresh: bool = False  # ignore an existing checkpoint


class Recipe(ABC):
    """One shipped model's training. Subclasses set `name`, and implement the abstract methods.

    `modules()` names everything with a state_dict (nets, optimisers, EMA copies); that dict is
    what checkpoints hold. `train_step(progress)` runs one optimisation step, `progress` being the
    fraction of the time budget spent, and returns the losses to show."""

    name = ""
    default_minutes = 10.0

    def __init__(self, options: TrainOptions):
        self.options = options
        self.device = torch.device(options.device)
        self.extra: dict[str, Any] = {}  # plain numbers a recipe wants checkpointed too

    @abstractmethod
    def prepare(self) -> None:
        """Load the data and build the networks and optimisers."""

    @abstractmethod
    def modules(self) -> dict[str, Any]:
        """Everything with a state_dict that a checkpoint must hold."""

    @abstractmethod
    def train_step(self, progress: float) -> dict[str, float]:
        """One optimisation step; the losses to show."""

    def restored(self) -> None:
        """Called after a checkpoint is loaded: rebuild what lives in `extra` (e.g. a tokenizer)."""

    def evaluate(self) -> dict[str, float]:
        return {}

    @abstractmethod
    def export(self, folder: Path, report: "RunReport") -> None:
        """Write the model folder the studio ships."""


@dataclass
class RunReport:
    """What a finished run says about itself (metrics.json and the model card's training section)."""

    recipe: str
    steps: int
    seconds: float
    device: str
    hardware: str
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "steps": self.steps,
            "training_seconds": round(self.seconds, 1),
            "device": self.device,
            "hardware": self.hardware,
            "metrics": self.metrics,
        }


def hardware(device: str) -> str:
    """A short description of what trained the model, for the card."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def _save_checkpoint(path: Path, recipe: Recipe, step: int, seconds: float) -> None:
    state = {
        "recipe": recipe.name,
        "tiny": recipe.options.tiny,
        "step": step,
        "seconds": seconds,
        "extra": dict(recipe.extra),
        "rng": torch.get_rng_state(),
        "modules": {name: module.state_dict() for name, module in recipe.modules().items()},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def _load_checkpoint(path: Path, recipe: Recipe) -> tuple[int, float]:
    """Restore a run; StudioError with one sentence when the file is not this run's."""
    try:
        state = torch.load(path, map_location=recipe.device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, not a torch file, or holding more than plain tensors
        raise StudioError(
            f"{path} cannot be read as a checkpoint ({first_line(exc)}); use --fresh to start over."
        ) from None
    if state.get("recipe") != recipe.name or bool(state.get("tiny")) != recipe.options.tiny:
        raise StudioError(f"{path} belongs to another run ({state.get('recipe')!r}); use another --out or --fresh.")
    try:
        for name, module in recipe.modules().items():
            module.load_state_dict(state["modules"][name])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise StudioError(f"{path} does not fit this recipe's networks ({first_line(exc)}); use --fresh.") from None
    recipe.extra.update(state.get("extra", {}))
    torch.set_rng_state(state["rng"].cpu())
    recipe.restored()
    return int(state["step"]), float(state["seconds"])


class ProgressLine:
    """`[prose] 12:04/30:00 ####.... step 1234  loss 3.214` redrawn in place on stderr."""

    def __init__(self, label: str, stream=None, every_s: float = 0.5):
        self.label, self.stream = label, stream or sys.stderr
        # Redrawn in place on a terminal; a log file gets a new line every 30 s instead.
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every_s = every_s if self.tty else 30.0
        self.last = 0.0

    def update(self, seconds: float, budget: float, step: int, losses: dict[str, float], force=False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        done = int(20 * min(seconds / budget, 1.0)) if budget > 0 else 20
        shown = "  ".join(f"{k} {v:.4g}" for k, v in losses.items())
        start, end = ("\r", "") if self.tty else ("", "\n")
        self.stream.write(
            f"{start}[{self.label}] {_clock(seconds)}/{_clock(budget)} [{'#' * done}{'.' * (20 - done)}] "
            f"step {step}  {shown}   {end}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _progress(seconds: float, budget: float, step: int, max_steps: Optional[int]) -> float:
    """The fraction of the run done: of the time budget, or of the step cap when there is one and
    it is further along (tests cap steps, so their schedules and phases do not depend on speed)."""
    done = seconds / budget if budget > 0 else 1.0
    if max_steps:
        done = max(done, step / max_steps)
    return min(done, 1.0)


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60:d}:{int(seconds) % 60:02d}"


def train(recipe: Recipe, say: Callable[[str], None] = print) -> RunReport:
    """Prepare, train within the budget (resuming from a checkpoint), evaluate and export."""
    options = recipe.options
    options.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(options.seed)
    recipe.prepare()
    checkpoint = options.out / CHECKPOINT
    step, seconds = 0, 0.0
    if checkpoint.exists() and options.fresh:
        checkpoint.unlink()  # so an interrupted fresh run never resumes the old one
    if checkpoint.exists():
        step, seconds = _load_checkpoint(checkpoint, recipe)
        say(f"resuming {recipe.name} from step {step} ({_clock(seconds)} trained)")
    budget = options.minutes * 60.0
    line = ProgressLine(recipe.name)
    smoothed: dict[str, float] = {}
    last_save = time.monotonic()
    while seconds < budget and (options.max_steps is None or step < options.max_steps):
        start = time.perf_counter()
        losses = recipe.train_step(_progress(seconds, budget, step, options.max_steps))
        seconds += time.perf_counter() - start
        step += 1
        for key, value in losses.items():  # a smoothed loss reads better than a jumpy one
            smoothed[key] = value if key not in smoothed else 0.95 * smoothed[key] + 0.05 * value
        line.update(seconds, budget, step, smoothed)
        if time.monotonic() - last_save > CHECKPOINT_EVERY_S:
            _save_checkpoint(checkpoint, recipe, step, seconds)
            last_save = time.monotonic()
    line.update(seconds, budget, step, smoothed, force=True)
    line.close()
    _save_checkpoint(checkpoint, recipe, step, seconds)
    say(f"evaluating {recipe.name} …")
    metrics = {k: round(float(v), 5) for k, v in recipe.evaluate().items()}
    report = RunReport(
        recipe=recipe.name,
        steps=step,
        seconds=seconds,
        device=options.device,
        hardware=hardware(options.device),
        metrics=metrics,
    )
    model_dir = options.out / "model"
    shutil.rmtree(model_dir, ignore_errors=True)  # no stale file from an earlier export
    model_dir.mkdir()
    recipe.export(model_dir, report)
    write_atomic(options.out / "metrics.json", (json.dumps(report.as_dict(), indent=2) + "\n").encode())
    for key, value in metrics.items():
        say(f"  {key}: {value}")
    say(f"model written to {model_dir}")
    return report
