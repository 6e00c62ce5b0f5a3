"""SettingsStore: typed values survive a round trip through the INI file; bad ones fall back."""

from __future__ import annotations

from PySide6.QtCore import QByteArray

from studio.models import paths
from studio.state.settings_store import SettingsStore


def test_values_round_trip_with_their_types(sandbox_dirs):
    store = SettingsStore()
    assert store.path == paths.config_dir() / "window.ini"
    for key, value in {
        "image/prompt": "a kite, 2 birds",
        "image/steps": 33,
        "image/guidance_scale": 6.5,
        "image/random_seed": False,
        "window/geometry": QByteArray(b"\x00\x01geom"),
    }.items():
        store.set(key, value)
    store.sync()
    again = SettingsStore()
    assert again.get("image/prompt", "") == "a kite, 2 birds"
    assert again.get("image/steps", 20) == 33
    assert again.get("image/guidance_scale", 7.0) == 6.5
    assert again.get("image/random_seed", True) is False
    assert again.get("window/geometry", QByteArray()) == QByteArray(b"\x00\x01geom")
    assert again.get("missing", 5) == 5


def test_unreadable_values_fall_back_to_the_default(sandbox_dirs):
    store = SettingsStore()
    store.set("image/steps", "many")
    assert store.get("image/steps", 20) == 20
