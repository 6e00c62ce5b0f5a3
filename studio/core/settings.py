"""The studio's settings file: versioned JSON, migrated forward, validated field by field.

Window geometry lives in QSettings (the UI's business); everything the engine and the CLI need
lives here, so both read the same file. The path is passed in, so tests sandbox it."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.atomic import write_text_atomic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_NAME = "settings.json"


@dataclass
class Settings:
    model_dirs: list[str] = field(default_factory=list)  # extra folders scanned for models
    device: str = "auto"  # auto | cpu | cuda
    cache_budget_mb: int = 8192  # resident models, in MB
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def load(cls, path: Path) -> "Settings":
        """Read settings; a missing file gives defaults, a broken one is kept aside and replaced."""
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return cls.from_dict(migrate(data))
        except (OSError, ValueError, TypeError) as exc:
            backup = path.with_suffix(".broken.json")
            log.warning("settings file %s is unreadable (%s); keeping it as %s and using defaults", path, exc, backup)
            try:
                path.replace(backup)
            except OSError:
                pass
            return cls()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        defaults = cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(defaults, f.name)
            if type(value) is not type(default):
                log.warning("settings: ignoring %s=%r (expected %s)", f.name, value, type(default).__name__)
                continue
            values[f.name] = value
        values["schema_version"] = SCHEMA_VERSION
        return cls(**values)

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older settings dict up to SCHEMA_VERSION (no older versions exist yet)."""
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r} is newer than this studio understands")
    return data
