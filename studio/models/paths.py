"""Where the studio keeps things, per platform (platformdirs), with environment overrides for tests."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from studio.core import untrusted
from studio.core.errors import StudioError

APP = "studio"
# What the studio ships (embedded models, configs, tokenizer data), inside the package so a wheel
# or an app folder carries it: found beside the code, wherever that is installed.
RESOURCES_DIR = Path(__file__).resolve().parents[1] / "resources"
EMBEDDED_MODELS_DIR = RESOURCES_DIR / "models"


# ONNX Runtime's Linux builds carry a telemetry client whose native threads look up its collector's
# host once a session has lived a few seconds; this variable, read by the native library when it
# starts, is the only switch that stops it (disable_telemetry_events() does not). Forced, not
# defaulted: the studio never reaches the network, whatever the user's shell says.
NATIVE_OFFLINE = {"ORT_DISABLE_TELEMETRY": "1"}


def offline() -> None:
    """Tell the Hugging Face libraries never to reach the network, and native libraries never to
    phone home, before any of them is imported: they read these variables once, when they start."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(name, "1")
    os.environ.update(NATIVE_OFFLINE)


def _dir(env: str, default: str, as_written: bool = False) -> Path:
    """The folder `env` names (`~` expanded), else `default`. A `~user` that does not exist is one
    sentence naming the variable, or with `as_written` the path as written, for a caller that
    reports it itself."""
    value = os.environ.get(env)
    if not value:
        return Path(default)
    try:
        return untrusted.expand_user(value)
    except StudioError as exc:
        if as_written:
            return Path(value)
        raise StudioError(f"{env}: {exc.message}") from None


def user_models_dir() -> Path:
    """The user's models folder; STUDIO_MODELS_DIR overrides it. A `~nosuchuser` there is left as
    written: the registry's scan lists it as a problem and still lists every other model."""
    return _dir("STUDIO_MODELS_DIR", platformdirs.user_data_dir(APP) + "/models", as_written=True)


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
