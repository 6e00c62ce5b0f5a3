import json
import os
import signal

import pytest

from studio.core.settings import SCHEMA_VERSION, Settings


def test_settings_round_trip_and_defaults(tmp_path):
    path = tmp_path / "settings.json"
    assert Settings.load(path) == Settings()
    s = Settings(model_dirs=["/models"], cache_budget_mb=512)
    s.save(path)
    assert Settings.load(path) == s
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_a_broken_settings_file_is_kept_aside_not_lost(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{ this is not json")
    assert Settings.load(path) == Settings()
    [backup] = tmp_path.glob("settings.broken-*.json")
    assert backup.read_text() == "{ this is not json"


def test_mistyped_fields_fall_back_to_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"model_dirs": [1, "/x"], "cache_budget_mb": -5}))
    assert Settings.load(path) == Settings()
    path.write_text(json.dumps({"model_dirs": ["/x"], "cache_budget_mb": 100}))
    assert Settings.load(path) == Settings(model_dirs=["/x"], cache_budget_mb=100)


def test_a_file_from_a_newer_studio_is_left_alone(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "model_dirs": ["/x"]}))
    assert Settings.load(path) == Settings()
    assert json.loads(path.read_text())["model_dirs"] == ["/x"]


@pytest.mark.parametrize("text", ["[" * 200_000 + "]" * 200_000, '{"cache_budget_mb": ' + "9" * 5000 + "}"])
def test_json_the_parser_cannot_read_is_kept_aside_not_a_crash(tmp_path, text):
    """Nested past the parser's recursion limit, or a number past Python's 4300 digits."""
    path = tmp_path / "settings.json"
    path.write_text(text)
    assert Settings.load(path) == Settings()
    [backup] = tmp_path.glob("settings.broken-*.json")
    assert backup.read_text() == text


def test_a_named_pipe_as_settings_file_is_never_opened(tmp_path):
    path = tmp_path / "settings.json"
    os.mkfifo(path)

    def hung(signum, frame):
        raise AssertionError("Settings.load opened a named pipe and waited for a writer")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        assert Settings.load(path) == Settings()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
