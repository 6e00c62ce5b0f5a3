"""The front door: the desktop entry and AppStream metainfo pass their standard validators (skipped
only where the validator is not installed), the icon exists at every size a desktop asks for, and
the wheel `make dist` builds carries the embedded models, so an installed studio lists all five
from site-packages."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.studio.Studio"
DESKTOP = PACKAGING / f"{APP_ID}.desktop"
METAINFO = PACKAGING / f"{APP_ID}.metainfo.xml"
ICONS = PACKAGING / "icons" / "hicolor"
SIZES = (16, 32, 48, 64, 128, 256, 512)
EMBEDDED = {"emoji-gan", "emoji-sd", "emoji-vae", "prose", "prose-gguf"}


def validator(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (CI installs it; see .ci/run)")
    return path


def test_the_desktop_entry_passes_desktop_file_validate_without_a_warning():
    done = subprocess.run(
        [validator("desktop-file-validate"), str(DESKTOP)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr


def test_the_metainfo_passes_appstreamcli_without_an_error_or_a_warning():
    done = subprocess.run(
        [validator("appstreamcli"), "validate", "--no-net", "--no-color", str(METAINFO)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [line for line in done.stdout.splitlines() if line.startswith(("E:", "W:"))]
    assert done.returncode == 0 and problems == [], done.stdout + done.stderr


def test_the_desktop_entry_starts_the_installed_window_with_the_packaged_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(DESKTOP, encoding="utf-8")
    desktop = entry["Desktop Entry"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["gui-scripts"]
    assert desktop["Exec"] in scripts and scripts[desktop["Exec"]] == "studio.app:main"
    assert desktop["Icon"] == APP_ID
    metainfo = ET.parse(METAINFO).getroot()
    assert metainfo.findtext("id") == APP_ID and metainfo.findtext("launchable") == DESKTOP.name


def test_the_icon_is_there_at_every_size_and_the_window_carries_its_source():
    for size in SIZES:
        path = ICONS / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert path.is_file(), f"{path} is missing: run packaging/render_icons.py"
        with Image.open(path) as image:
            assert image.size == (size, size) and image.mode == "RGBA"
            # A tile on a clear background: a corner shows through, the middle does not.
            assert image.getpixel((0, 0))[3] == 0 and image.getpixel((size // 2, size // 2))[3] == 255
    source = ICONS / "scalable" / "apps" / f"{APP_ID}.svg"
    window_icon = ROOT / "studio" / "resources" / "icons" / f"{APP_ID}.svg"
    assert window_icon.read_bytes() == source.read_bytes(), "run packaging/render_icons.py after editing the SVG"


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, check=False, **kwargs)
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


@pytest.mark.slow
def test_the_wheel_installed_in_a_clean_venv_lists_the_embedded_models_from_site_packages(tmp_path):
    dist = tmp_path / "dist"
    # As `make dist` builds: an sdist, then the wheel from it (so the sdist must carry the models too).
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT)
    wheel = next(dist.glob("studio-*.whl"))

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # The dependencies come from this venv's site-packages, added as a plain path: the .pth files
    # there (the repository's editable install among them) are not read from it.
    (site / "studio-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if k not in ("STUDIO_EMBEDDED_MODELS_DIR", "PYTHONPATH")}
    where = run(python, "-c", "import studio; print(studio.__file__)", cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(site / "studio"), where

    listed = run(venv / "bin" / "studio", "models", cwd=tmp_path, env=env).stdout
    rows = {line.split()[0]: line for line in listed.splitlines()[1:] if line.strip()}
    assert EMBEDDED <= set(rows), listed
    for model in EMBEDDED:
        assert "embedded" in rows[model] and str(site / "studio" / "resources" / "models" / model) in rows[model]


def test_the_window_wears_the_icon_and_names_its_desktop_entry(qapp):
    from studio import app as studio_app

    app = studio_app.make_app()
    assert studio_app.APP_ID == APP_ID and app.desktopFileName() == APP_ID
    assert not app.windowIcon().pixmap(32, 32).isNull()  # the SVG was found and drawn


def test_the_app_folders_launcher_is_the_command_line_by_name_and_python_for_helpers(tmp_path, fake_models):
    """The app folder has no Python: its one program is the CLI when run as `studio`, and runs
    `-P -m MODULE` as Python would for the helper processes the studio starts (packaging/launcher.py)."""
    launcher = tmp_path / "studio"
    shutil.copyfile(PACKAGING / "launcher.py", launcher)
    listed = run(sys.executable, launcher, "models", cwd=tmp_path).stdout
    assert "fake-image" in listed.split()

    data = tmp_path / "data.json"
    data.write_text('{"b": 1, "a": [2]}', encoding="utf-8")
    shown = run(sys.executable, PACKAGING / "launcher.py", "-P", "-m", "json.tool", "--sort-keys", data).stdout
    assert shown.splitlines()[:2] == ["{", '    "a": [']
