"""Can the window start here? Qt's X11 platform plugin (xcb) needs system libraries that pip cannot
install; without them Qt prints a page of plugin diagnostics and aborts. This check finds the
missing ones first and says, in one sentence, which Debian/Ubuntu packages bring them.

Run by `make run` (`python -m studio.ui.platform_check`) and by the window before Qt starts. It
imports nothing from Qt: only the plugin's file is inspected (with ldd, which reads the dynamic
section; the plugin is PySide6's own, not a user file)."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

# Shared library → the Debian/Ubuntu package that ships it: everything Qt 6's xcb plugin links
# or loads beyond what a minimal system has.
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}
# Loaded by Qt at run time rather than linked, so ldd cannot see it missing.
LOADED_AT_RUN_TIME = {"xcb-cursor": "libxcb-cursor.so.0"}
HEADLESS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")


def problem(environ: Optional[dict[str, str]] = None) -> Optional[str]:
    """One sentence saying why the window cannot start here, or None when it can (or when this is
    not a platform the check knows)."""
    env = os.environ if environ is None else environ
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    if not sys.platform.startswith("linux") or platform in HEADLESS or platform.startswith("wayland"):
        return None
    if not platform and env.get("WAYLAND_DISPLAY"):
        return None  # Qt picks its Wayland plugin, which needs none of the X11 libraries
    if not env.get("DISPLAY"):
        return (
            "There is no display to open the window on (DISPLAY is not set): start the studio from a "
            "desktop session, or use the `studio` command, which needs none."
        )
    missing = missing_libraries()
    if not missing:
        return None
    packages = sorted({PACKAGES.get(name, name) for name in missing})
    return (
        f"The window cannot start: Qt needs the system {_plural(len(missing), 'library', 'libraries')} "
        f"{', '.join(missing)}; install {'it' if len(packages) == 1 else 'them'} with "
        f"`sudo apt-get install {' '.join(packages)}` (Debian/Ubuntu package names)."
    )


def missing_libraries() -> list[str]:
    """Shared libraries the xcb platform plugin needs that this system lacks, sorted."""
    missing = set(_not_found_by_ldd(xcb_plugin()))
    for short, soname in LOADED_AT_RUN_TIME.items():
        if ctypes.util.find_library(short) is None:
            missing.add(soname)
    return sorted(missing)


def xcb_plugin() -> Optional[Path]:
    """PySide6's xcb platform plugin, found without importing Qt."""
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(list(spec.submodule_search_locations)[0]) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def _not_found_by_ldd(plugin: Optional[Path]) -> list[str]:
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None:
        return []
    try:
        out = subprocess.run(
            [ldd, str(plugin)], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def main() -> int:
    sentence = problem()
    if sentence:
        print(f"studio: {sentence}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
