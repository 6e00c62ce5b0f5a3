"""docs/DESIGN.md §1: importing a module stays light. Which layer may import which is checked
statically by import-linter (the contracts in .importlinter, run by `make lint`); what a static
check cannot see is whether an import runs at a module's top or lazily inside a function. So each
group of modules is imported, one after another, in a fresh interpreter, and after each import
sys.modules is read for what the group must not load: the first module that loads it is named."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "diffusers", "transformers", "onnxruntime", "onnx", "safetensors")
PURE = ("PySide6",) + HEAVY  # no Qt, no ML library
STUDIO = Path(__file__).resolve().parents[1] / "studio"
# Modules that may import heavy libraries at their top: the backends and our own networks, which
# only the engine and training code import, lazily. They must still never import Qt.
HEAVY_OK = (
    "studio.engine.backends.diffusion.diffusers_image",
    "studio.engine.backends.text.transformers_text",
    "studio.engine.backends.latent.torch_latent",
    "studio.engine.backends.latent.onnx_latent",
    "studio.models.nets",
)
# Training code never touches Qt; its data recipes and command plumbing load no ML library either
# (`studio train --help` stays instant), while the recipes themselves use torch at their top.
LIGHT_TRAINING = ("studio.training", "studio.training.commands", "studio.training.recipes")


def modules_of(package: str) -> list[str]:
    """The package and every module in it, so a rule covers new files without being edited."""
    folder = STUDIO.joinpath(*package.split(".")[1:])
    return [package] + [info.name for info in pkgutil.walk_packages([str(folder)], prefix=package + ".")]


def group(package: str, keep=lambda module: True) -> list[str]:
    return [m for m in modules_of(package) if m not in HEAVY_OK and keep(m)]


GROUPS = {  # name: (modules, what importing them must not load)
    "core": (group("studio.core"), PURE + ("platformdirs",)),
    "models": (group("studio.models"), PURE),
    "writing": (group("studio.writing"), PURE + ("numpy",)),  # the writer's model is stdlib text bookkeeping
    "latent": (group("studio.latent"), PURE + ("av", "PIL")),  # numpy; encoders load when a file is written
    # The engine, its host, exporters and morphs: `studio export-onnx` and the window's runtime
    # picker read the export package; only the backends in HEAVY_OK load an ML library.
    "engine": (group("studio.engine"), PURE),
    "state": (group("studio.state"), ("PySide6.QtGui", "PySide6.QtWidgets") + HEAVY),  # QtCore only
    "ui": (group("studio.ui"), HEAVY),
    "bench": (group("studio.bench"), PURE),
    "entry points": (["studio.cli", "studio.app"], HEAVY),
    "light training": (group("studio.training", lambda m: m in LIGHT_TRAINING or ".data" in m), PURE),
    "training recipes": (group("studio.training"), ("PySide6",)),
    "heavy backends": (list(HEAVY_OK), ("PySide6",)),
}

PROBE = """
import importlib, json, sys
modules, forbidden = json.loads(sys.argv[1])
for module in modules:
    importlib.import_module(module)
    bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
    if bad:
        print(json.dumps([module, bad[:5]]))
        break
else:
    print(json.dumps(None))
"""


@pytest.mark.parametrize("name", GROUPS)
def test_importing_stays_light(name):
    modules, forbidden = GROUPS[name]
    assert modules, f"no modules found for {name}"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([modules, forbidden])], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    culprit = json.loads(out.stdout.strip().splitlines()[-1])
    assert culprit is None, f"importing {culprit[0]} loads {culprit[1]}"


def test_the_probe_names_a_module_that_loads_what_it_must_not():
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([["studio.core.errors", "wave"], ["wave"]])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["wave", ["wave"]]
