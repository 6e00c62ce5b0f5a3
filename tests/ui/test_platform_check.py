"""A bare Linux desktop without Qt's xcb libraries: the window says in one sentence which library
is missing and how to install it, and `make run` checks before it starts; no Qt plugin dump."""

import os
import subprocess
import sys

import pytest

from studio.ui import platform_check


@pytest.fixture
def ldd_reporting(tmp_path, monkeypatch):
    """An `ldd` on PATH that reports the given libraries as not found, whatever this machine has."""

    def install(*missing: str) -> dict[str, str]:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        lines = "".join(f"\techo '\t{name} => not found'\n" for name in missing)
        ldd = bin_dir / "ldd"
        ldd.write_text(f"#!/bin/sh\n{lines}echo '\tlibc.so.6 => /lib/libc.so.6 (0x0)'\n")
        ldd.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
        return {**env, "DISPLAY": ":97"}

    return install


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")
def test_the_missing_xcb_libraries_are_named_with_their_install_command(ldd_reporting):
    env = ldd_reporting("libxcb-icccm.so.4", "libxcb-keysyms.so.1")
    sentence = platform_check.problem(env)
    assert "libxcb-icccm.so.4" in sentence and "libxcb-keysyms.so.1" in sentence
    assert "apt-get install libxcb-icccm4 libxcb-keysyms1" in sentence


def test_headless_platforms_and_a_missing_display_are_told_apart():
    assert platform_check.problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    if sys.platform.startswith("linux"):
        assert "no display" in platform_check.problem({"PATH": os.environ["PATH"]})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")
def test_the_window_refuses_to_start_with_one_sentence_instead_of_qt_diagnostics(ldd_reporting, tmp_path):
    env = ldd_reporting("libxcb-icccm.so.4")
    env.update(
        STUDIO_LOG_DIR=str(tmp_path / "log"),
        STUDIO_CONFIG_DIR=str(tmp_path / "config"),
        STUDIO_MODELS_DIR=str(tmp_path / "models"),
        STUDIO_DATA_DIR=str(tmp_path / "data"),
    )
    for command in ([sys.executable, "-m", "studio.app"], [sys.executable, "-m", "studio.ui.platform_check"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "libxcb-icccm.so.4" in lines[0] and "apt-get install libxcb-icccm4" in lines[0]
        assert "qt.qpa" not in done.stderr and "Aborted" not in done.stderr
