"""Every test runs sandboxed: its own models, config and log folders, no embedded models unless it
asks, no network at Hugging Face's level, and it fails if it leaves a QThread running."""

from __future__ import annotations

import gc
import os
import socket
from pathlib import Path

import pytest

from fake_models import write_fake_model

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


# The slow lane: what `make test-fast` leaves out for the inner loop (`make test` runs everything).
# Listed here, with why, rather than marked file by file, so the lanes are read in one place.
SLOW_LANE = {
    "fuzz/": "fuzzing: thousands of random inputs",
    "engine/host/test_soak.py": "soak: hundreds of jobs through the engine process",
    "engine/host/test_process.py": "process tests: starts, kills and restarts engine processes",
    "engine/host/test_child_imports.py": "process tests: a real engine process per model family",
    "ui/test_engine_crash.py": "process tests: crashes the window's engine process",
    "test_offline_cli.py": "process tests: the CLI and its engine process with the network gone",
    "test_offline_native.py": "process tests: native threads watched with strace",
    "models/test_malicious_pickles.py": "pickle attacks, each in a child process",
    "models/test_convert_limits.py": "pickle conversions at their limits, each in a child process",
    "writing/test_autosave_kill.py": "kill loops: a writer killed mid-save, again and again",
    "training/test_recipes.py": "trains each embedded model's recipe for a few steps",
    "training/test_evaluate.py": "evaluates trained models on their test sets",
    "test_embedded_models.py": "runs every shipped model end to end",
    "models/test_single_file.py": "builds and loads a Stable Diffusion checkpoint of every family",
    "engine/export/": "exports models to ONNX and checks their parity with torch",
    "engine/backends/test_onnx_diffusion.py": "exports a diffusion pipeline to ONNX before its tests",
    "test_cli_progress.py": "process tests: the CLI run with its stderr piped",
}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    for item in items:
        where = item.path.relative_to(tests).as_posix()
        if any(where == lane or (lane.endswith("/") and where.startswith(lane)) for lane in SLOW_LANE):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def garbage_on_the_main_thread():
    """Cyclic garbage is collected here, on the main thread, after the test's threads have stopped:
    never by the collector firing on an engine or writer thread, which would destroy the test's
    QObjects on that thread (what studio/state/gui_thread_gc.py prevents in the window)."""
    gc.disable()
    yield
    gc.collect()
    gc.enable()


def pytest_sessionstart(session):
    """The libraries most tests load, loaded once and kept out of every collection (gc.freeze), so
    the full collection after each test looks only at what tests made: over all that torch and
    diffusers create it would cost a quarter of a second a test."""
    import diffusers  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from diffusers import StableDiffusionPipeline  # noqa: F401  (diffusers loads its modules lazily)

    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def sandbox_dirs(tmp_path_factory, monkeypatch):
    """Point every per-user folder at a fresh temporary one."""
    root = tmp_path_factory.mktemp("home")
    for name, sub in (
        ("STUDIO_MODELS_DIR", "models"),
        ("STUDIO_CONFIG_DIR", "config"),
        ("STUDIO_LOG_DIR", "log"),
        ("STUDIO_EMBEDDED_MODELS_DIR", "embedded"),
        ("STUDIO_DATA_DIR", "data"),
        ("STUDIO_TRAINING_CACHE", "training-cache"),
        ("STUDIO_CACHE_DIR", "cache"),
    ):
        (root / sub).mkdir()
        monkeypatch.setenv(name, str(root / sub))
    return root


@pytest.fixture(autouse=True)
def no_package_fetching(monkeypatch):
    """Training data comes from npm and apt; a test that reaches for them fails instead."""
    from studio.training.data import fetch

    def refuse(command, cwd, what):
        raise AssertionError(f"a test tried to fetch training data: {what}")

    monkeypatch.setattr(fetch, "_run", refuse)


@pytest.fixture
def fake_models(sandbox_dirs) -> Path:
    """Fake image, text and latent models in the sandboxed user models folder."""
    models = Path(os.environ["STUDIO_MODELS_DIR"])
    write_fake_model(models / "fake-image", "image")
    write_fake_model(models / "fake-text", "text")
    write_fake_model(models / "fake-latent", "latent", latent_dim=8, image_size=32)
    return models


@pytest.fixture(autouse=True)
def no_dangling_qthreads(monkeypatch):
    """Fail any test that leaves a QThread running (napari's _dangling_qthreads, adapted)."""
    try:
        from PySide6.QtCore import QThread
    except ImportError:  # Qt-free test runs
        yield
        return
    started: list = []
    original_start = QThread.start

    def recording_start(self, *args, **kwargs):
        started.append(self)
        return original_start(self, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield
    running = [t for t in started if _alive(t)]
    for thread in running:  # do not let one test's leftovers break the next
        stop = getattr(thread, "stop", None)
        if callable(stop):
            stop()
        thread.wait(5000)
    assert not running, f"test left {len(running)} QThread(s) running: {[t.objectName() for t in running]}"


@pytest.fixture(autouse=True)
def no_dangling_processes():
    """Fail any test that leaves an engine process (or any other child) running."""
    from processes import running_children

    yield
    left = running_children()
    for child in left:  # do not let one test's leftovers break the next
        child.kill()
    assert not left, f"test left {len(left)} child process(es) running: {[c.cmdline()[-2:] for c in left]}"


def _alive(thread) -> bool:
    try:
        return thread.isRunning()
    except RuntimeError:  # the C++ object is already gone
        return False


@pytest.fixture
def no_sockets(monkeypatch):
    """docs/DESIGN.md §4 in a test: every way to reach the network records the attempt and fails, as on an unplugged machine."""
    attempts = []

    def refuse(name):
        def blocked(*args, **kwargs):
            attempts.append((name, args[1:] if name.startswith("socket.") else args))
            raise OSError(f"network access in an offline test: {name}")

        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts
