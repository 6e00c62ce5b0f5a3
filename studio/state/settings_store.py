"""What the person last used (prompt, steps, seed, model per workspace, window layout), kept with
QSettings in an INI file beside settings.json, so tests sandbox it through STUDIO_CONFIG_DIR.

The engine's settings (model folders, cache budget) live in core.settings; this is only
the UI's memory, and losing it costs nothing but a few clicks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QByteArray, QObject, QSettings

from studio.models import paths

FILE_NAME = "window.ini"


class SettingsStore(QObject):
    """Typed get/set over QSettings, grouped by workspace ("image/steps", "write/model", ...)."""

    def __init__(self, path: Optional[Path] = None, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.path = path or paths.config_dir() / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._settings = QSettings(str(self.path), QSettings.Format.IniFormat)

    def get(self, key: str, default: Any) -> Any:
        """The stored value converted to the default's type; the default when absent or unreadable."""
        if not self._settings.contains(key):
            return default
        raw = self._settings.value(key)
        try:
            if isinstance(default, bool):  # INI stores "true"/"false" as text
                return raw if isinstance(raw, bool) else str(raw).lower() in ("true", "1", "yes")
            if isinstance(default, int):
                return int(raw)
            if isinstance(default, float):
                return float(raw)
            if isinstance(default, str):
                return str(raw)
            if isinstance(default, QByteArray):
                return raw if isinstance(raw, QByteArray) else default
        except (TypeError, ValueError):
            return default
        return raw

    def set(self, key: str, value: Any) -> None:
        self._settings.setValue(key, value)

    def sync(self) -> None:
        self._settings.sync()
