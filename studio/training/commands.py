"""`studio train RECIPE` and `studio eval MODEL`: argument handling for the training code.

Kept apart from studio/cli.py so the command-line module stays free of torch; this module is
imported only when one of these two commands runs."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from studio.core.errors import SpecError
from studio.training.recipes import RECIPES


def recipe_class(name: str):
    if name not in RECIPES:
        raise SpecError("recipe", f"{name!r} is not a recipe; choose one of {', '.join(RECIPES)}.")
    module, cls = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def check_device(device: str) -> None:
    import torch

    if device not in ("cpu", "cuda"):
        raise SpecError("--device", f"must be cpu or cuda, not {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device", "is cuda, but torch sees no CUDA GPU here; use --device cpu.")


def train_command(args) -> int:
    from studio.training.loop import TrainOptions, train

    cls = recipe_class(args.recipe)
    if args.minutes is not None and not args.minutes > 0:
        raise SpecError("--minutes", f"must be more than 0, not {args.minutes}.")
    check_device(args.device)
    out = Path(args.out) if args.out else Path("runs") / args.recipe
    options = TrainOptions(
        out=out,
        minutes=args.minutes if args.minutes is not None else cls.default_minutes,
        device=args.device,
        seed=args.seed,
        max_steps=args.max_steps,
        tiny=args.tiny,
        fresh=args.fresh,
    )
    train(cls(options), say=lambda line: print(line, file=sys.stderr))
    print(out / "model")
    return 0


def eval_command(args, registry) -> int:
    from studio.training.evaluate import evaluate_model

    model = registry.resolve(args.model)
    evaluate_model(model, device=args.device, update_card=args.update_card, quick=args.quick)
    return 0
