import json

from studio.core.settings import SCHEMA_VERSION, Settings


def test_settings_round_trip_and_defaults(tmp_path):
    path = tmp_path / "settings.json"
    assert Settings.load(path) == Settings()
    s = Settings(model_dirs=["/models"], device="cpu", cache_budget_mb=512)
    s.save(path)
    assert Settings.load(path) == s
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_a_broken_settings_file_is_kept_aside_not_lost(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{ this is not json")
    assert Settings.load(path) == Settings()
    assert (tmp_path / "settings.broken.json").read_text() == "{ this is not json"


def test_mistyped_fields_fall_back_to_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"device": 3, "cache_budget_mb": 100}))
    s = Settings.load(path)
    assert s.device == "auto" and s.cache_budget_mb == 100
