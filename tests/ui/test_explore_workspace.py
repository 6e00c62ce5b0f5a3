"""The explorer's tab: sliders decode at once; a burst of moves runs only the newest requests."""

from __future__ import annotations

import shutil

import numpy as np

from studio.engine.backends.fake import FakeBackend
from studio.state.jobs import JobState

from fake_models import write_fake_model


def fake_decode(latent) -> np.ndarray:
    """What the fake latent model (latent_dim 8, 32 px) decodes this vector to."""
    backend = FakeBackend(kind="latent", step_seconds=0.0, latent_dim=8, image_size=32)
    return backend.decode(np.asarray(latent, np.float32)[None, :])[0]


def idle(window) -> bool:
    return not window.jobs.active()


def test_opening_explore_decodes_the_centre_and_a_slider_move_decodes_again(qtbot, window, pixels):
    ws = window.explore
    assert len(ws.panel.sliders()) == 8  # latent_dim from the manifest
    window.tabs.setCurrentWidget(ws)
    qtbot.waitUntil(lambda: not ws.canvas.image().isNull(), timeout=10_000)
    assert np.array_equal(pixels(ws.canvas.image()), fake_decode([0.0] * 8))

    ws.panel.sliders()[0].setValue(150)  # z0 = 1.5
    assert ws.panel.latent()[0] == 1.5
    qtbot.waitUntil(lambda: idle(window) and ws.caption.text() != "", timeout=10_000)
    qtbot.waitUntil(lambda: np.array_equal(pixels(ws.canvas.image()), fake_decode([1.5] + [0.0] * 7)), timeout=5_000)


def test_burst_of_slider_moves_drops_stale_decodes_and_shows_the_last(qtbot, window, pixels):
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    qtbot.waitUntil(lambda: ws.session.shown is not None and idle(window), timeout=10_000)
    started = []
    window.jobs.engine.job_started.connect(started.append)
    submitted = []
    window.jobs.job_added.connect(submitted.append)

    slider = ws.panel.sliders()[1]
    for i in range(1, 21):
        slider.setValue(-i * 12)  # a fast drag: 20 moves in a few milliseconds
    qtbot.waitUntil(lambda: idle(window), timeout=10_000)
    qtbot.wait(50)  # let the last results be painted

    assert len(submitted) == 20
    assert len(started) < 8, f"{len(started)} of 20 decodes ran; stale ones should be dropped"
    superseded = [j for j in submitted if j.message == "superseded"]
    assert superseded, "some requests were replaced before running"
    assert ws.session.shown == submitted[-1]
    final = ws.panel.latent()
    assert final[1] == -2.4
    assert np.array_equal(pixels(ws.canvas.image()), fake_decode(final))


def test_randomise_and_reset_submit_one_decode_each(qtbot, window, pixels):
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    qtbot.waitUntil(lambda: ws.session.shown is not None and idle(window), timeout=10_000)
    submitted = []
    window.jobs.job_added.connect(submitted.append)
    ws.panel.randomise()
    assert len(submitted) == 1 and any(v != 0 for v in ws.panel.latent())
    values = [s.value() / 100 for s in ws.panel.sliders()]
    # The sliders show the vector (a draw beyond ±3σ, which the prior allows, at the slider's end).
    assert np.allclose(values, np.clip(ws.panel.latent(), -3, 3), atol=0.01)
    qtbot.waitUntil(lambda: idle(window), timeout=10_000)
    ws.panel.reset()
    assert len(submitted) == 2 and ws.panel.latent() == (0.0,) * 8
    qtbot.waitUntil(lambda: ws.session.shown == submitted[-1], timeout=10_000)
    assert submitted[-1].state is JobState.FINISHED
    assert np.array_equal(pixels(ws.canvas.image()), fake_decode([0.0] * 8))


def test_looking_for_models_again_keeps_the_sliders_and_the_image(qtbot, window, pixels):
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    qtbot.waitUntil(lambda: ws.session.shown is not None and idle(window), timeout=10_000)
    ws.panel.sliders()[2].setValue(-75)
    qtbot.waitUntil(lambda: idle(window) and ws.session.shown.id == max(r.id for r in window.jobs), timeout=10_000)
    shown = pixels(ws.canvas.image())
    submitted = []
    window.jobs.job_added.connect(submitted.append)

    window.refresh_models()  # File > Look for models again: the same latent model is still there

    assert ws.models.model_id() == "fake-latent"
    assert ws.panel.sliders()[2].value() == -75 and ws.panel.latent()[2] == -0.75
    assert np.array_equal(pixels(ws.canvas.image()), shown)
    assert submitted == []  # nothing to decode again


def test_a_different_model_rebuilds_the_sliders_and_a_vanished_one_is_replaced(qtbot, fake_models, make_window):
    write_fake_model(fake_models / "small-latent", "latent", latent_dim=3, image_size=32)
    window = make_window()
    ws = window.explore
    ws.models.setCurrentIndex(ws.models.findData("fake-latent"))
    ws.panel.sliders()[0].setValue(100)
    ws.models.setCurrentIndex(ws.models.findData("small-latent"))
    assert len(ws.panel.sliders()) == 3 and ws.panel.latent() == (0.0,) * 3

    shutil.rmtree(fake_models / "small-latent")
    window.refresh_models()
    assert ws.models.model_id() == "fake-latent"
    assert len(ws.panel.sliders()) == 8 and ws.panel.latent() == (0.0,) * 8


def test_latent_size_may_be_given_in_the_decoder_part_of_the_manifest(qtbot, fake_models, make_window):
    shutil.rmtree(fake_models / "fake-latent")
    write_fake_model(fake_models / "nested-latent", "latent", decoder={"latent_dim": 5}, image_size=32)
    window = make_window()
    assert window.explore.latent_dim() == 5
    assert len(window.explore.panel.sliders()) == 5


def test_a_bare_onnx_model_says_explore_cannot_offer_sliders_yet(qtbot, fake_models, make_window):
    shutil.rmtree(fake_models / "fake-latent")
    (fake_models / "generator.onnx").write_bytes(b"not read by the window")
    window = make_window()
    ws = window.explore
    submitted = []
    window.jobs.job_added.connect(submitted.append)
    window.tabs.setCurrentWidget(ws)
    qtbot.wait(50)

    assert ws.models.model_id() == "generator" and ws.latent_dim() is None
    assert ws.panel.sliders() == []
    assert "cannot offer sliders" in ws.panel.note.text() and ws.panel.note.isVisible()
    assert not ws.panel.randomise_button.isEnabled() and not ws.panel.reset_button.isEnabled()
    assert submitted == [] and ws.request_decode(()) is None  # nothing is sent to the engine
    assert not window.error_bar.isVisible()
