"""Model folders served by the fake backend, for tests that need a model but not its maths."""

from __future__ import annotations

import json
from pathlib import Path


def write_fake_model(folder: Path, kind: str, step_seconds: float = 0.02, **extra) -> Path:
    """A model folder served by the fake backend (deterministic, slow on purpose)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "fake", "kind": kind, "title": f"Fake {kind}", "step_seconds": step_seconds, **extra}
    (folder / "studio.json").write_text(json.dumps(manifest))
    return folder
