"""The explorer's tab: sliders decode at once; a burst of moves runs only the newest requests."""

from __future__ import annotations

import numpy as np

from studio.engine.backends.fake import FakeBackend
from studio.state.jobs import JobState



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
    qtbot.waitUntil(lambda: ws.shown_job > 0 and idle(window), timeout=10_000)
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
    superseded = [j for j in submitted if window.jobs.get(j) and window.jobs.get(j).message == "superseded"]
    assert superseded, "some requests were replaced before running"
    assert ws.shown_job == submitted[-1]
    final = ws.panel.latent()
    assert final[1] == -2.4
    assert np.array_equal(pixels(ws.canvas.image()), fake_decode(final))


def test_randomise_and_reset_submit_one_decode_each(qtbot, window, pixels):
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    qtbot.waitUntil(lambda: ws.shown_job > 0 and idle(window), timeout=10_000)
    submitted = []
    window.jobs.job_added.connect(submitted.append)
    ws.panel.randomise()
    assert len(submitted) == 1 and any(v != 0 for v in ws.panel.latent())
    values = [s.value() / 100 for s in ws.panel.sliders()]
    assert np.allclose(values, ws.panel.latent(), atol=0.01)  # the sliders show the vector
    qtbot.waitUntil(lambda: idle(window), timeout=10_000)
    ws.panel.reset()
    assert len(submitted) == 2 and ws.panel.latent() == (0.0,) * 8
    qtbot.waitUntil(lambda: ws.shown_job == submitted[-1], timeout=10_000)
    assert window.jobs.get(submitted[-1]).state is JobState.FINISHED
    assert np.array_equal(pixels(ws.canvas.image()), fake_decode([0.0] * 8))
