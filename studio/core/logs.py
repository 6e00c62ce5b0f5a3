"""One log file per user: tracebacks go there, people see one sentence."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


def configure_logging(log_dir: Path, level: int = logging.INFO, name: str = "studio.log") -> Path:
    """Send the studio's log to `log_dir/name` (rotated); returns the file's path. The engine
    process logs to a file of its own: two processes rotating one file would lose lines."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / name
    root = logging.getLogger()
    if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    return path
