"""The slider_drag benchmark's machinery (studio.bench.drag_workloads) on small models: a scripted
mouse drag in the real window gives sane figures and ends on the released slider's frame."""

from __future__ import annotations

import json
import os
from pathlib import Path

from studio.bench import drag_workloads
from studio.models.registry import ModelRegistry

from fake_models import write_fake_model


def check(result, model: str, runtime: str) -> None:
    assert result.model == model and result.runtime == runtime
    assert result.events > 10 and result.requests > 10
    assert 0 < result.shown <= result.requests
    assert result.superseded + result.ran == result.requests  # every request either ran or was replaced
    assert result.fps > 0 and result.drag_s > 0
    assert result.latencies_ms and all(ms > 0 for ms in result.latencies_ms)
    assert result.p95_ms() >= min(result.latencies_ms)


def test_a_scripted_drag_on_the_fake_latent_model(qtbot, make_window, sandbox_dirs):
    models = Path(os.environ["STUDIO_MODELS_DIR"])
    write_fake_model(models / "fake-latent", "latent", step_seconds=0, latent_dim=8, image_size=32)
    window = make_window()
    drag_workloads.open_model(window, "fake-latent", timeout_s=20)
    result = drag_workloads.drag_slider(window, duration_s=0.4, period_s=0.4)
    check(result, "fake-latent", "fake")  # the runtime the backend names in its info
    ws = window.explore
    assert ws.session.shown_latent == ws.panel.latent()  # drag_slider raised otherwise; the window agrees
    bare = drag_workloads.bare_decode_rate(window.jobs.engine.runner, "fake-latent", 0.05)
    assert bare["decodes_s"] > 0 and bare["median_ms"] >= 0


def test_the_onnx_copy_runs_on_onnx_in_the_window(qtbot, sandbox_dirs):
    from studio.bench.tiny_latent import build_tiny_latent
    from studio.engine.runner import Runner
    from studio.state.engine_thread import EngineThread
    from studio.state.jobs import JobList
    from studio.ui.main_window import MainWindow

    source = build_tiny_latent(sandbox_dirs / "src" / "tiny", latent_dim=8, image_size=32, onnx=False)
    root = sandbox_dirs / "onnx-models"
    drag_workloads.onnx_copy(source, root / "tiny")
    assert json.loads((root / "tiny" / "studio.json").read_text())["onnx"] == "decoder.onnx"
    registry = drag_workloads.OnnxFirstRegistry([(root, "bench")])
    assert registry.resolve("tiny").runtimes[0] == "onnx"
    assert ModelRegistry([(root, "bench")]).resolve("tiny").runtimes[0] == "torch"  # why the bench needs it

    engine = EngineThread(Runner(registry))
    engine.start()
    window = MainWindow(JobList(engine), registry)
    qtbot.addWidget(window)
    try:
        window.show()
        drag_workloads.open_model(window, "tiny", timeout_s=60)
        result = drag_workloads.drag_slider(window, duration_s=0.3, period_s=0.3)
        check(result, "tiny", "onnx")
        assert drag_workloads.bare_decode_rate(engine.runner, "tiny", 0.05)["runtime"] == "onnx"
    finally:
        window.close()
        engine.stop()
