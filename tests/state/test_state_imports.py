"""The state layer is QtCore only: no widgets, no ML library (DESIGN §1)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_state_modules_import_no_widgets_and_no_ml_library():
    code = ("import json, sys; import studio.state.jobs, studio.state.settings_store, studio.state.gallery; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    bad = [m for m in loaded if m.split(".")[0] in ("torch", "diffusers", "transformers", "onnxruntime")
           or m.startswith("PySide6.QtWidgets")]
    assert not bad
