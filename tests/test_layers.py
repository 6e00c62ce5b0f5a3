"""DESIGN §1: imports only go down, and heavy libraries load lazily. Each package is imported in a
fresh interpreter and the modules it pulled in are read from sys.modules."""

import json
import subprocess
import sys

import pkgutil
from pathlib import Path

import pytest

HEAVY = ("torch", "diffusers", "transformers", "onnxruntime", "onnx", "safetensors")
STUDIO = Path(__file__).resolve().parents[1] / "studio"
# Modules that may import heavy libraries at their top: the backends and our own networks, which
# only the engine thread and training code import, lazily. They must still never import Qt.
HEAVY_OK = {
    "studio.engine.backends.diffusers_image",
    "studio.engine.backends.transformers_text",
    "studio.engine.backends.latent_torch",
    "studio.engine.backends.onnx_latent",
    "studio.models.nets",
}


def modules_of(package: str) -> list[str]:
    """The package and every module in it, so a rule covers new files without being edited."""
    folder = STUDIO.joinpath(*package.split(".")[1:])
    return [package] + [info.name for info in pkgutil.walk_packages([str(folder)], prefix=package + ".")]


PURE = ("PySide6",) + HEAVY  # no Qt, no ML library
RULES = {}  # module: what importing it must not load
for package, forbidden in (
    ("studio.core", PURE + ("platformdirs",)),
    ("studio.models", PURE),
    ("studio.writing", PURE + ("numpy",)),  # the writer's model is text bookkeeping: stdlib only
    ("studio.latent", PURE + ("av", "PIL")),  # latent math is numpy; encoders load when a file is written
    ("studio.engine.backends", PURE),
    ("studio.state", ("PySide6.QtWidgets", "PySide6.QtGui") + HEAVY),
    ("studio.ui", HEAVY),
    ("studio.bench", PURE),
):
    RULES.update({m: forbidden for m in modules_of(package) if m not in HEAVY_OK})
RULES.update({
    "studio.engine.runner": PURE,
    "studio.engine.queue": PURE,
    "studio.engine.cache": PURE,
    "studio.engine.process": PURE,
    "studio.engine.child": PURE,
    "studio.engine.export": PURE,  # `studio export-onnx` and the window's runtime picker read it
    "studio.engine.export_latent": PURE,
    "studio.engine.export_diffusion": PURE,
    "studio.engine.export_text": PURE,
    "studio.app": HEAVY,
    "studio.cli": PURE,
})
# Training code never touches Qt; its data recipes and command plumbing load no ML library either
# (`studio train --help` stays instant), while the recipes themselves use torch at their top.
LIGHT_TRAINING = {"studio.training", "studio.training.commands", "studio.training.recipes"}
for module in modules_of("studio.training"):
    light = module in LIGHT_TRAINING or module.startswith("studio.training.data")
    RULES[module] = ("PySide6",) + (HEAVY if light else ())
QT_FREE_BACKENDS = sorted(HEAVY_OK)


def loaded_by(module: str) -> set[str]:
    code = f"import importlib, json, sys; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module, forbidden", sorted(RULES.items()))
def test_layer_imports(module, forbidden):
    loaded = loaded_by(module)
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not bad, f"{module} imports {bad[:5]}"


@pytest.mark.parametrize("module", QT_FREE_BACKENDS)
def test_backends_import_no_qt(module):
    assert not any(m.startswith("PySide6") for m in loaded_by(module))


def test_lower_layers_never_import_upper_ones():
    """Static check on the source: imports only go down (ui -> state -> engine -> models -> core)."""
    import ast
    import pathlib

    order = ["core", "models", "latent", "writing", "engine", "training", "state", "ui"]
    allowed = {
        "core": {"core"},
        "models": {"core", "models"},
        "latent": {"core", "models", "latent"},
        "writing": {"core", "models", "writing"},
        # The engine uses the pure-Python pieces beside it: the writer's prompt assembly (measured
        # with the model's tokenizer, which only the engine has) and the latent math.
        "engine": {"core", "models", "latent", "writing", "engine"},
        "training": {"core", "models", "training"},
        "state": {"core", "models", "engine", "state"},
        "ui": set(order),
    }
    root = pathlib.Path(__file__).resolve().parents[1] / "studio"
    problems = []
    for layer, ok in allowed.items():
        for path in (root / layer).rglob("*.py") if (root / layer).is_dir() else []:
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "studio" and len(parts) > 1 and parts[1] in order and parts[1] not in ok:
                        problems.append(f"{path.relative_to(root)} imports {name}")
    assert not problems, problems
