"""Where the studio keeps things, per platform (platformdirs), with environment overrides for tests."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "studio"
REPO_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_MODELS_DIR = REPO_ROOT / "resources" / "models"


def offline() -> None:
    """Tell the Hugging Face libraries never to reach the network, before any of them is imported:
    they read these variables once, at import time."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(name, "1")


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else Path(default)


def user_models_dir() -> Path:
    """The user's models folder; STUDIO_MODELS_DIR overrides it."""
    return _dir("STUDIO_MODELS_DIR", platformdirs.user_data_dir(APP) + "/models")


def config_dir() -> Path:
    return _dir("STUDIO_CONFIG_DIR", platformdirs.user_config_dir(APP))


def log_dir() -> Path:
    return _dir("STUDIO_LOG_DIR", platformdirs.user_log_dir(APP))


def cache_dir() -> Path:
    """Things the studio can recompute (model hashes); STUDIO_CACHE_DIR overrides it."""
    return _dir("STUDIO_CACHE_DIR", platformdirs.user_cache_dir(APP))


def inputs_dir() -> Path:
    """Pictures img2img and inpainting jobs start from (the canvas, the mask), kept by content so a
    gallery image's settings can name exactly the pixels that went in."""
    return data_dir() / "inputs"


def embedded_models_dir() -> Path:
    """Models shipped with the studio; STUDIO_EMBEDDED_MODELS_DIR overrides it (tests)."""
    return _dir("STUDIO_EMBEDDED_MODELS_DIR", str(EMBEDDED_MODELS_DIR))


def data_dir() -> Path:
    """Documents, gallery and other user work; STUDIO_DATA_DIR overrides it."""
    return _dir("STUDIO_DATA_DIR", platformdirs.user_data_dir(APP))


def settings_file() -> Path:
    return config_dir() / "settings.json"
