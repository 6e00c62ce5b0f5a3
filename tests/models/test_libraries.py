"""Keeping the libraries' console output quiet, importing only what is named."""

import types

import pytest

from studio.models import libraries


def test_quiet_library_logs_imports_only_the_libraries_named(monkeypatch):
    imported, calls = [], []

    def fake_import(name):
        imported.append(name)
        return types.SimpleNamespace(
            disable_progress_bar=lambda: calls.append((name, "bar")),
            set_verbosity_error=lambda: calls.append((name, "error")),
        )

    monkeypatch.setattr("importlib.import_module", fake_import)
    libraries.quiet_library_logs("transformers")
    assert imported == ["transformers.utils.logging"]
    assert calls == [("transformers.utils.logging", "bar"), ("transformers.utils.logging", "error")]
    imported.clear()
    libraries.quiet_library_logs("diffusers", "transformers")
    assert imported == ["diffusers.utils.logging", "transformers.utils.logging"]
    with pytest.raises(ValueError, match="torch"):
        libraries.quiet_library_logs("torch")
