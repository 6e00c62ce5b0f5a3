"""The studio's settings file: versioned JSON, migrated forward, validated field by field.

Window geometry lives in QSettings (the UI's business); everything the engine and the CLI need
lives here, so both read the same file. The path is passed in, so tests sandbox it."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core import untrusted
from studio.core.atomic import write_text_atomic
from studio.core.errors import StudioError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_NAME = "settings.json"
MAX_BYTES = 1024 * 1024  # a few folder names and numbers; a larger file is not our settings


@dataclass
class Settings:
    model_dirs: list[str] = field(default_factory=list)  # extra folders scanned for models
    cache_budget_mb: int = 8192  # resident models, in MB
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def load(cls, path: Path) -> "Settings":
        """Read settings. A missing file gives defaults; a broken one is kept aside (never lost)
        and defaults are used; one from a newer studio is left as it is and defaults are used."""
        if not path.exists():
            return cls()
        try:
            data = untrusted.read_json(path, MAX_BYTES, what="a settings file")
            if not isinstance(data, dict):
                raise StudioError(f"{path} does not hold a JSON object.")
        except StudioError as exc:
            backup = path.with_name(f"{path.stem}.broken-{time.strftime('%Y%m%d-%H%M%S')}.json")
            log.warning(
                "settings file %s is unreadable (%s); keeping it as %s and using defaults", path, exc.message, backup
            )
            try:
                path.replace(backup)
            except OSError:
                pass
            return cls()
        version = data.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            log.warning("settings file %s is from a newer studio (schema %d); using defaults, file kept", path, version)
            return cls()
        return cls.from_dict(migrate(data))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            check = VALID.get(f.name)
            if check is not None and not check(value):
                log.warning("settings: ignoring %s=%r (not a valid value)", f.name, value)
                continue
            values[f.name] = value
        values["schema_version"] = SCHEMA_VERSION
        return cls(**values)

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")


# Each field's check: a hand-edited file must not be able to crash the studio at start.
VALID = {
    "model_dirs": lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v),
    "cache_budget_mb": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
    "schema_version": lambda v: True,
}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older settings dict up to SCHEMA_VERSION (no older versions exist yet)."""
    return data
