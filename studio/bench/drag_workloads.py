"""The explorer's slider preview under a scripted drag, in the real main window (Qt offscreen).

A drag is a stream of mouse-move events on slider 0's handle, sent on a GUI-thread timer every
~8 ms along a wall-clock trajectory (a hand sweeping the slider back and forth), so the window
does exactly what it does for a person: QSlider.mouseMoveEvent -> valueChanged ->
LatentPanel.latent_changed -> ExploreWorkspace.request_decode -> ExploreSession.decode -> the
engine's interactive lane. Each decode that reaches the canvas emits
ExploreWorkspace.frame_shown(job handle, latent); the bench
then repaints the canvas at once (the paint the window would do next anyway, so no work is added)
and takes that moment as "pixels". Drag-to-pixels latency is that moment minus the moment the
mouse event that asked for this latent was delivered.

The ONNX runs use a copy of each model with its decoder exported to ONNX, behind a registry that
lists ONNX first among the copy's runtimes: the window submits runtime "auto", which the runner
resolves to a model's first runtime, and studio-latent folders list torch first."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from studio.bench.suite import Figure
from studio.engine.runner import Runner
from studio.models.registry import ModelInfo, ModelRegistry

MODELS = ("emoji-vae", "emoji-gan")
RUNTIMES = ("torch", "onnx")
EVENT_INTERVAL_MS = 8  # one mouse move every 8 ms: ~125 Hz, a fast mouse
SWEEP_PERIOD_S = 1.5  # one full back-and-forth of the hand (~290 px/s at its fastest on a 160 px slider)
AMPLITUDE = 0.95  # of the slider's half range: the hand stays just inside +-3 sigma
FPS_GOAL, P95_GOAL_MS = 60.0, 33.0


def _onnx_first(model: ModelInfo) -> ModelInfo:
    if "onnx" not in model.runtimes or model.runtimes[0] == "onnx":
        return model
    return dataclasses.replace(model, runtimes=("onnx",) + tuple(r for r in model.runtimes if r != "onnx"))


class OnnxFirstRegistry(ModelRegistry):
    """A registry whose models that can run on ONNX Runtime run there when a job says "auto"."""

    def models(self, kind: Optional[str] = None) -> list[ModelInfo]:
        return [_onnx_first(m) for m in super().models(kind)]

    def resolve(self, id_or_path: str) -> ModelInfo:
        return _onnx_first(super().resolve(id_or_path))


def onnx_copy(source: Path, target: Path) -> Path:
    """Copy a studio-latent folder to `target`, export its decoder to decoder.onnx there and name
    it in the copy's studio.json; returns `target` (reused when it is already there)."""
    from studio.engine.export.latent import export_decoder_onnx

    if (target / "decoder.onnx").is_file():
        return target
    shutil.copytree(source, target, dirs_exist_ok=True)
    name = export_decoder_onnx(target, "decoder.onnx").name
    manifest_path = target / "studio.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["onnx"] = name
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return target


@dataclass
class DragResult:
    model: str
    runtime: str  # what the engine reported running the decodes on
    drag_s: float  # first mouse move to release
    events: int  # mouse moves sent
    requests: int  # decodes asked for (moves that changed the slider's value)
    shown: int  # frames that reached the canvas, release tail included
    shown_during_drag: int
    superseded: int  # requests replaced in the interactive lane before they ran
    ran: int  # requests the engine started
    latencies_ms: list[float] = field(default_factory=list)  # event -> pixels, per shown frame
    job_ms: list[float] = field(default_factory=list)  # the engine's own seconds per shown decode
    event_gaps_ms: list[float] = field(default_factory=list)  # between mouse moves actually sent
    settle_ms: float = 0.0  # release -> the final value's frame on the canvas (0: already there)

    @property
    def fps(self) -> float:
        return self.shown_during_drag / self.drag_s if self.drag_s > 0 else 0.0

    def p95_ms(self) -> float:
        return _p95(self.latencies_ms)


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


def _pump(condition, timeout_s: float, what: str) -> None:
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        raise RuntimeError("slider_drag: there is no QApplication to deliver the window's events")
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout_s:
            raise RuntimeError(f"slider_drag: {what} did not happen within {timeout_s:.0f} s")
        QApplication.processEvents()
        time.sleep(0.001)


def open_model(window, model_id: str, timeout_s: float = 180.0) -> None:
    """Show the Explore tab with `model_id` selected and wait for its first decode (model load)."""
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    index = ws.models.findData(model_id)
    if index < 0:
        raise RuntimeError(f"slider_drag: the Explore tab does not offer {model_id!r}")
    ws.models.setCurrentIndex(index)
    _pump(
        lambda: (
            ws.models.model_id() == model_id
            and ws.session.shown is not None
            and not window.jobs.active()
            and ws.panel.sliders()
            and ws.panel.sliders()[0].isVisible()
            and ws.panel.sliders()[0].width() > 50
        ),
        timeout_s,
        f"the first decode of {model_id}",
    )


def drag_slider(
    window,
    duration_s: float,
    interval_ms: int = EVENT_INTERVAL_MS,
    period_s: float = SWEEP_PERIOD_S,
    timeout_s: float = 60.0,
) -> DragResult:
    """Drag slider 0 of the Explore tab's selected model with mouse events for `duration_s`, release
    it, wait for the engine to go idle, and measure. RuntimeError when the window shows a stale
    frame (ids not growing, or the last frame is not the released slider's point)."""
    from PySide6.QtCore import QElapsedTimer, QEvent, QEventLoop, QPoint, QPointF, Qt, QTimer
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionSlider

    ws = window.explore
    engine = window.jobs.engine
    slider = ws.panel.sliders()[0]
    model_id = ws.models.model_id()

    # Where the handle is, and which pixel puts it at which value (as QSlider maps them).
    opt = QStyleOptionSlider()
    slider.initStyleOption(opt)
    style = slider.style()
    handle = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle, slider)
    groove = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderGroove, slider)
    span = groove.width() - handle.width()
    press = handle.center()
    click_offset = press.x() - handle.left()
    y = press.y()
    lo, hi = slider.minimum(), slider.maximum()

    def x_for(value: float) -> int:
        return groove.left() + QStyle.sliderPositionFromValue(lo, hi, round(value), span) + click_offset

    clock = QElapsedTimer()
    clock.start()

    def now_ms() -> float:
        return clock.nsecsElapsed() / 1e6

    requests: dict[int, tuple[float, tuple]] = {}  # job id -> (its mouse event's time, its latent)
    shown: list[tuple[int, tuple, float]] = []  # (job id, latent, pixels time)
    superseded: set[int] = set()
    started: set[int] = set()
    runtimes: set[str] = set()
    job_seconds: dict[int, float] = {}
    event_time = [0.0]
    recording = [True]

    def on_added(job) -> None:
        if recording[0] and getattr(job.spec, "latent", None) is not None:
            requests[job.id] = (event_time[0], tuple(job.spec.latent))

    def on_cancelled(job_id: int, reason: str) -> None:
        if job_id in requests and reason == "superseded":
            superseded.add(job_id)

    def on_started(job_id: int) -> None:
        if job_id in requests:
            started.add(job_id)

    def on_finished(job, result) -> None:
        info = result.info
        job_id = job.id
        if job_id in requests:
            runtimes.add(str(info.runtime or "unreported"))
            if info.seconds is not None:
                job_seconds[job_id] = info.seconds * 1000

    def on_shown(job, latent) -> None:
        ws.canvas.viewport().repaint()  # the paint update() asked for, now: its end is "pixels"
        shown.append((job.id, tuple(latent), now_ms()))

    connections = [
        (window.jobs.job_added, on_added),
        (engine.job_cancelled, on_cancelled),
        (engine.job_started, on_started),
        (window.jobs.finished, on_finished),
        (ws.frame_shown, on_shown),
    ]
    for signal, slot in connections:
        signal.connect(slot)

    def send(kind, x: int, button, buttons) -> None:
        pos = QPointF(x, y)
        event = QMouseEvent(
            kind, pos, QPointF(slider.mapToGlobal(QPoint(x, y))), button, buttons, Qt.KeyboardModifier.NoModifier
        )
        event_time[0] = now_ms()
        QApplication.sendEvent(slider, event)

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    # The hand sweeps about the slider's middle, starting where the handle is.
    centre, amplitude = (lo + hi) / 2, AMPLITUDE * (hi - lo) / 2
    phase0 = math.asin(max(-1.0, min(1.0, (slider.value() - centre) / amplitude)))
    gaps: list[float] = []
    state = {"last_x": press.x(), "events": 0, "last_event": None, "t0": 0.0, "released": None}
    loop = QEventLoop()

    def tick() -> None:
        t = now_ms() - state["t0"]
        if t >= duration_s * 1000:
            send(QEvent.Type.MouseButtonRelease, state["last_x"], left, none)
            state["released"] = event_time[0]
            timer.stop()
            settle.start()
            return
        target = centre + amplitude * math.sin(phase0 + 2 * math.pi * t / (period_s * 1000))
        x = x_for(max(lo, min(hi, target)))
        if x == state["last_x"]:
            return  # the hand did not move a pixel: a mouse sends nothing
        send(QEvent.Type.MouseMove, x, none, left)
        if state["last_event"] is not None:
            gaps.append(event_time[0] - state["last_event"])
        state["last_event"] = event_time[0]
        state["last_x"] = x
        state["events"] += 1

    def check_settled() -> None:
        if not window.jobs.active() or now_ms() - state["released"] > timeout_s * 1000:
            settle.stop()
            QTimer.singleShot(20, loop.quit)  # anything still posted (the last paint) lands

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(interval_ms)
    timer.timeout.connect(tick)
    settle = QTimer()
    settle.setInterval(2)
    settle.timeout.connect(check_settled)
    try:
        send(QEvent.Type.MouseButtonPress, press.x(), left, left)
        if not slider.isSliderDown():
            raise RuntimeError("slider_drag: pressing the handle did not grab slider 0")
        state["t0"] = now_ms()
        timer.start()
        loop.exec()
    finally:
        timer.stop()
        settle.stop()
        recording[0] = False
        for signal, slot in connections:
            signal.disconnect(slot)

    released = state["released"]
    if window.jobs.active():
        raise RuntimeError(f"slider_drag: {model_id} decodes still running {timeout_s:.0f} s after the release")
    if not requests or not shown:
        raise RuntimeError(f"slider_drag: {model_id}: {len(requests)} requests, {len(shown)} frames shown")
    ids = [s[0] for s in shown]
    if any(b <= a for a, b in zip(ids, ids[1:])):
        raise RuntimeError(f"slider_drag: {model_id}: frame_shown job ids did not only grow: {ids}")
    final = ws.panel.latent()  # where the released slider put the point
    newest = max(requests)
    if requests[newest][1] != final:
        raise RuntimeError(f"slider_drag: {model_id}: the newest decode asked for is not the released slider's point")
    last_id, last_latent = shown[-1][0], shown[-1][1]
    if last_id != newest or last_latent != final:
        raise RuntimeError(
            f"slider_drag: {model_id}: a stale frame stays on the canvas after the release: job {last_id} shown, "
            f"the released slider's point is job {newest}"
        )
    for job_id, latent, _ in shown:
        if requests.get(job_id, (0, latent))[1] != latent:
            raise RuntimeError(f"slider_drag: frame_shown gave job {job_id} a latent it was not asked for")
    latencies = [t - requests[j][0] for j, _, t in shown if j in requests]
    return DragResult(
        model=model_id,
        runtime="/".join(sorted(runtimes)),
        drag_s=(released - state["t0"]) / 1000,
        events=state["events"],
        requests=len(requests),
        shown=len(shown),
        shown_during_drag=sum(1 for _, _, t in shown if t <= released),
        superseded=len(superseded),
        ran=len(started),
        latencies_ms=latencies,
        job_ms=[job_seconds[j] for j, _, _ in shown if j in job_seconds],
        event_gaps_ms=gaps,
        settle_ms=max(0.0, shown[-1][2] - released),
    )


def bare_decode_rate(runner, model_id: str, seconds: float, dim: Optional[int] = None) -> dict:
    """The backend the window's decodes ran on (same cache entry), called in a loop on one latent
    at a time, no window, no engine thread: decodes per second and the median ms of one."""
    from studio.core.jobs import LatentDecodeJob

    probe = LatentDecodeJob(model=model_id, latent=(0.0,) * (dim or 1))
    backend = runner.backend_for(probe)[0]
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((64, backend.latent_dim)).astype(np.float32)
    backend.decode(latents[:1])  # warm
    times = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        backend.decode(latents[i % 64 : i % 64 + 1])
        times.append(time.perf_counter() - start)
        i += 1
    return {
        "runtime": backend.info.runtime or "unreported",
        "decodes_s": len(times) / sum(times),
        "median_ms": statistics.median(times) * 1000,
    }


def slider_drag(tmp: Path, quick: bool) -> list[Figure]:
    """Slider preview fps and drag-to-pixels latency for emoji-vae and emoji-gan, torch and ONNX."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["STUDIO_CONFIG_DIR"] = str(tmp / "config")  # never touch the person's window settings
    os.environ["STUDIO_DATA_DIR"] = str(tmp / "data")
    from studio.app import Studio, make_app
    from studio.models import paths

    duration = 1.5 if quick else 4.0
    warm = 0.5
    onnx_root = tmp / "slider-drag-onnx"
    for model in MODELS:
        onnx_copy(paths.EMBEDDED_MODELS_DIR / model, onnx_root / model)
    registries = {
        "torch": ModelRegistry([(paths.EMBEDDED_MODELS_DIR, "embedded")]),
        "onnx": OnnxFirstRegistry([(onnx_root, "bench")]),
    }
    results: dict[tuple[str, str], tuple[DragResult, dict]] = {}
    app = make_app()
    for runtime in RUNTIMES:
        studio = Studio(registries[runtime])
        window = studio.window
        window.resize(1240, 800)
        window.show()
        try:
            for model in MODELS:
                open_model(window, model)
                drag_slider(window, warm)  # first decodes after the load: allocator, ORT's first runs
                result = drag_slider(window, duration)
                if result.runtime != runtime:
                    raise RuntimeError(f"slider_drag: {model} was meant to run on {runtime}, ran on {result.runtime}")
                # The window's decodes ran in the engine process; the bare rate is measured here, on
                # the same model files through a runner of this process's own.
                bare = bare_decode_rate(
                    Runner(registries[runtime]), model, 0.5 if quick else 1.5, window.explore.latent_dim()
                )
                if bare["runtime"] != runtime:
                    raise RuntimeError(f"slider_drag: the bare decode of {model} ran on {bare['runtime']}")
                results[(model, runtime)] = (result, bare)
        finally:
            studio.shutdown()
            window.close()
            app.processEvents()

    figures = []
    for model in MODELS:
        stem = model.replace("-", "_")
        for runtime in RUNTIMES:
            r, bare = results[(model, runtime)]
            p95 = r.p95_ms()
            common = {
                "drag_s": round(r.drag_s, 2),
                "events": r.events,
                "requests": r.requests,
                "requests_s": round(r.requests / r.drag_s, 1),
                "superseded": r.superseded,
                "ran": r.ran,
                "shown": r.shown,
            }
            figures.append(
                Figure(
                    f"{stem}_slider_fps_{runtime}",
                    r.fps,
                    "frames/s",
                    f">= {FPS_GOAL:g}",
                    r.fps >= FPS_GOAL,
                    {
                        **common,
                        "bare_decodes_s": round(bare["decodes_s"], 1),
                        "bare_decode_ms": round(bare["median_ms"], 3),
                        "job_ms_median": round(statistics.median(r.job_ms), 3) if r.job_ms else None,
                        "event_gap_ms_median": round(statistics.median(r.event_gaps_ms), 2)
                        if r.event_gaps_ms
                        else None,
                    },
                )
            )
            figures.append(
                Figure(
                    f"{stem}_drag_p95_ms_{runtime}",
                    p95,
                    "ms",
                    f"<= {P95_GOAL_MS:g}",
                    p95 <= P95_GOAL_MS,
                    {
                        "median_ms": round(statistics.median(r.latencies_ms), 2),
                        "max_ms": round(max(r.latencies_ms), 2),
                        "frames": len(r.latencies_ms),
                        "settle_ms": round(r.settle_ms, 2),
                        "what": "mouse-move delivered -> canvas repainted with its decode",
                    },
                )
            )
    return figures
