"""The explorer's tools beyond the sliders' basics: locked and named directions, stored
directions, the slider range, the latent map, pictures as keyframes, crossbreeding, saving and
opening keyframes, a scripted drag that never shows a stale frame, and the GIF frame-rate note."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QItemSelectionModel, QPoint, Qt
from safetensors.numpy import save_file

from studio.core.jobs import LatentBatchJob, LatentDecodeJob, LatentEncodeJob
from studio.engine.backends.fake import FakeBackend

from fake_models import write_fake_model


def idle(window) -> bool:
    return not window.jobs.active()


def fake_decode(latent, dim: int = 8) -> np.ndarray:
    backend = FakeBackend(kind="latent", step_seconds=0.0, latent_dim=dim, image_size=32)
    return backend.decode(np.asarray(latent, np.float32)[None, :])[0]


@pytest.fixture
def quick(fake_models, make_window):
    """The window over a fake latent model that decodes at once, on the Explore tab."""
    write_fake_model(
        fake_models / "fake-latent",
        "latent",
        step_seconds=0,
        latent_dim=8,
        image_size=32,
        directions={"names": ["warmth", "green"]},
    )
    window = make_window()
    window.tabs.setCurrentWidget(window.explore)
    return window


def jobs_of(window, kind) -> list:
    return [r for r in window.jobs if isinstance(r.spec, kind)]


# -- sliders ------------------------------------------------------------------------------------------


def test_the_model_names_its_directions_and_the_rest_are_numbered(quick):
    names = quick.explore.panel.names()
    assert names[:3] == ["warmth", "green", "z2"] and len(names) == 8


def test_a_locked_direction_keeps_its_value_through_randomise_and_reset(qtbot, quick):
    panel = quick.explore.panel
    panel.sliders()[0].setValue(150)
    panel.locks()[0].setChecked(True)
    panel.randomise()
    latent = panel.latent()
    assert latent[0] == 1.5
    assert any(v != 0 for v in latent[1:])  # the others were drawn again
    panel.reset()
    assert panel.latent() == (1.5,) + (0.0,) * 7
    panel.locks()[0].setChecked(False)
    panel.reset()
    assert panel.latent() == (0.0,) * 8


def test_the_range_widens_to_ten_sigma_and_a_point_beyond_the_range_is_kept(qtbot, quick):
    panel = quick.explore.panel
    panel.set_latent((4.0,) + (0.0,) * 7)
    slider = panel.sliders()[0]
    assert slider.value() == 300  # the handle at the end of ±3σ...
    assert panel.latent()[0] == 4.0  # ...the point itself unchanged
    panel.range.setCurrentIndex(panel.range.findData(10))
    assert slider.maximum() == 1000 and slider.value() == 400
    slider.setValue(-950)
    assert panel.latent()[0] == -9.5


def test_stored_directions_move_the_latent_along_their_own_vectors(qtbot, fake_models, make_window):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    components = q[:3].astype(np.float32)  # three orthonormal directions in an 8-d latent
    sigma = np.array([2.0, 0.5, 1.0], np.float32)
    folder = fake_models / "fake-latent"
    write_fake_model(
        folder,
        "latent",
        step_seconds=0,
        latent_dim=8,
        image_size=32,
        directions={"file": "directions.safetensors", "names": ["tilt"]},
    )
    save_file({"components": components, "sigma": sigma}, str(folder / "directions.safetensors"))
    window = make_window()
    panel = window.explore.panel
    assert len(panel.sliders()) == 3 and panel.names() == ["tilt", "z1", "z2"]
    panel.sliders()[0].setValue(150)  # 1.5σ along the first direction
    assert np.allclose(panel.latent(), 1.5 * 2.0 * components[0], atol=1e-6)
    panel.sliders()[1].setValue(-100)
    expected = 3.0 * components[0] - 0.5 * components[1]
    assert np.allclose(panel.latent(), expected, atol=1e-6)
    assert panel.sliders()[0].value() == 150  # the first coordinate kept


def test_a_broken_directions_file_is_one_sentence_and_the_axes_stay_usable(qtbot, fake_models, make_window):
    folder = fake_models / "fake-latent"
    write_fake_model(
        folder, "latent", step_seconds=0, latent_dim=8, image_size=32, directions={"file": "directions.safetensors"}
    )
    save_file(
        {"components": np.ones((2, 5), np.float32), "sigma": np.ones(2, np.float32)},
        str(folder / "directions.safetensors"),
    )
    window = make_window()
    assert "directions.safetensors" in window.jobs.error.message and "(K, 8)" in window.jobs.error.message
    assert len(window.explore.panel.sliders()) == 8


# -- a scripted drag -----------------------------------------------------------------------------------


def test_a_scripted_drag_never_shows_an_older_frame_and_ends_on_the_release_value(
    qtbot, fake_models, make_window, pixels
):
    """Decodes slow enough (15 ms) that a drag outruns them: stale requests are replaced unrun,
    frames reach the canvas in request order only, and the last one is the slider's final value."""
    write_fake_model(fake_models / "fake-latent", "latent", step_seconds=0.015, latent_dim=8, image_size=32)
    window = make_window()
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    qtbot.waitUntil(lambda: ws.session.shown is not None and idle(window), timeout=10_000)
    shown = []
    ws.frame_shown.connect(lambda job, latent: shown.append((job.id, latent)))
    slider = ws.panel.sliders()[2]
    qtbot.mousePress(slider, Qt.MouseButton.LeftButton, pos=slider.rect().center())
    for step in range(60):  # a drag: a move every 4 ms, the events the engine cannot all serve
        slider.setValue(int(250 * np.sin(step / 9)))
        qtbot.wait(4)
    slider.setValue(-123)
    qtbot.mouseRelease(slider, Qt.MouseButton.LeftButton, pos=slider.rect().center())
    qtbot.waitUntil(lambda: idle(window) and shown and shown[-1][1] == ws.panel.latent(), timeout=10_000)

    ids = [job for job, _ in shown]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "an older frame replaced a newer one"
    decodes = jobs_of(window, LatentDecodeJob)
    superseded = [r for r in decodes if r.message == "superseded"]
    assert superseded and len(shown) < 61
    assert ws.panel.latent()[2] == -1.23
    assert np.array_equal(pixels(ws.canvas.image()), fake_decode(ws.panel.latent()))


def test_a_frame_that_outlives_its_job_record_still_knows_its_point(qtbot, fake_models, make_window):
    """A slow decode overtaken by many superseded requests: the job list forgets the oldest
    records, but the frame still arrives with its own latent (the thumbnail matching needs it)."""
    write_fake_model(fake_models / "fake-latent", "latent", step_seconds=0.15, latent_dim=8, image_size=32)
    window = make_window()
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    qtbot.waitUntil(lambda: ws.session.shown is not None and idle(window), timeout=10_000)
    asked = {}
    window.jobs.job_added.connect(lambda job: asked.setdefault(job, job.spec.latent))
    shown = []
    ws.frame_shown.connect(lambda job, latent: shown.append((job, latent)))
    for round_ in range(3):
        ws.panel.sliders()[0].setValue(round_ * 20 + 1)
        qtbot.waitUntil(
            lambda: len(window.jobs.active()) == 1 and window.jobs.active()[0].started_at is not None, timeout=5_000
        )  # that decode is running...
        for i in range(2, 16):  # ...while more requests are replaced than the job list keeps
            ws.panel.sliders()[0].setValue(round_ * 20 + i)
        qtbot.wait(350)
    qtbot.waitUntil(lambda: idle(window), timeout=10_000)
    assert len(shown) >= 2
    assert all(latent == asked[job] for job, latent in shown)


# -- the map -------------------------------------------------------------------------------------------


def test_the_map_decodes_a_grid_around_the_point_and_a_click_goes_to_a_cell(qtbot, quick, pixels):
    ws = quick.explore
    ws.panel.sliders()[0].setValue(50)
    ws.views.setCurrentWidget(ws.map)
    qtbot.waitUntil(lambda: len(ws.map.grid.images) == 25 and idle(quick), timeout=10_000)
    maps = jobs_of(quick, LatentBatchJob)
    cells = np.array(maps[-1].spec.latents)
    assert cells.shape == (25, 8)
    centre = np.array(ws.panel.latent())
    assert np.allclose(cells[12], centre)  # the middle cell is the point itself
    assert np.allclose(cells[14] - centre, [2.0, 0, 0, 0, 0, 0, 0, 0])  # right edge: +2σ across
    assert np.allclose(cells[2] - centre, [0, 2.0, 0, 0, 0, 0, 0, 0])  # top edge: +2σ up
    assert np.array_equal(pixels(ws.map.grid.images[0]), fake_decode(cells[0]))

    # Across the second and third directions, one step of ±1σ in a 3×3 map.
    ws.map.down.setCurrentIndex(2)
    ws.map.reach.setValue(1.0)
    ws.map.cells.setCurrentIndex(ws.map.cells.findData(3))
    qtbot.waitUntil(lambda: len(ws.map.grid.images) == 9 and idle(quick), timeout=10_000)
    cells = np.array(jobs_of(quick, LatentBatchJob)[-1].spec.latents)
    assert np.allclose(cells[0] - centre, [-1.0, 0, 1.0, 0, 0, 0, 0, 0])  # top left: −across, +up

    # A click on the top-left cell moves there, and the map re-centres on it.
    rect = ws.map.grid.cell_rect(0, 0)
    qtbot.mouseClick(ws.map.grid, Qt.MouseButton.LeftButton, pos=rect.center())
    assert np.allclose(ws.panel.latent(), cells[0])
    qtbot.waitUntil(
        lambda: idle(quick) and np.allclose(jobs_of(quick, LatentBatchJob)[-1].spec.latents[4], cells[0]),
        timeout=10_000,
    )
    qtbot.waitUntil(lambda: np.array_equal(pixels(ws.canvas.image()), fake_decode(cells[0])), timeout=10_000)


def test_the_map_never_replaces_a_sliders_decode(qtbot, fake_models, make_window):
    """While the map is shown and the sliders move, every slider decode that is replaced is
    replaced by a newer slider decode, never by the map's batch."""
    write_fake_model(fake_models / "fake-latent", "latent", step_seconds=0.01, latent_dim=8, image_size=32)
    window = make_window()
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    ws.views.setCurrentWidget(ws.map)
    qtbot.waitUntil(lambda: len(ws.map.grid.images) == 25 and idle(window), timeout=10_000)
    for step in range(40):
        ws.panel.sliders()[1].setValue(step * 5)
        qtbot.wait(3)
    qtbot.waitUntil(lambda: idle(window) and ws._map_key == ws._map_key_now(), timeout=10_000)
    records = sorted(window.jobs, key=lambda r: r.id)
    for before, after in zip(records, records[1:]):
        if isinstance(before.spec, LatentDecodeJob) and before.message == "superseded":
            assert isinstance(after.spec, LatentDecodeJob), "a map or thumbnail job replaced a slider's decode"
    assert ws.session.shown.id == max(r.id for r in records if isinstance(r.spec, LatentDecodeJob))


# -- pictures, crossbreeding, saving ---------------------------------------------------------------------


def test_a_dropped_picture_is_encoded_into_a_named_keyframe(qtbot, quick, tmp_path):
    from PySide6.QtCore import QMimeData, QUrl

    ws = quick.explore
    path = tmp_path / "green leaf.png"
    Image.new("RGB", (40, 40), (20, 230, 20)).save(path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    assert ws.canvas.take_image(mime)  # what a drop does
    qtbot.waitUntil(lambda: ws.keyframes.names() == ["green leaf"], timeout=10_000)
    encodes = jobs_of(quick, LatentEncodeJob)
    assert len(encodes) == 1 and encodes[0].spec.image == str(path)
    latent = ws.panel.latent()
    assert latent == ws.keyframes.latents()[0]
    assert latent[1] > 1.0 and latent[0] < -1.0  # green, not red: the picture's own colours
    qtbot.waitUntil(lambda: ws.keyframes.missing_thumbnail() is None, timeout=10_000)


def test_a_picture_that_cannot_be_read_is_one_sentence_and_adds_nothing(qtbot, quick, tmp_path):
    window = quick
    ws = window.explore
    ws.sources.add_picture(str(tmp_path / "nowhere.png"))
    qtbot.waitUntil(lambda: idle(window) and window.jobs.error.message != "", timeout=10_000)
    assert "nowhere.png" in window.jobs.error.message
    assert ws.keyframes.names() == []


def test_crossbreeding_mixes_the_selected_keyframes_live_and_keeps_the_child(qtbot, quick):
    ws = quick.explore
    kp = ws.keyframes
    parents = []
    for values in ((200, 0), (0, 200), (-100, -100)):
        ws.panel.sliders()[0].setValue(values[0])
        ws.panel.sliders()[1].setValue(values[1])
        kp.add_button.click()
        parents.append(np.array(ws.panel.latent()))
    kp.list.setCurrentRow(0, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    kp.list.setCurrentRow(1, QItemSelectionModel.SelectionFlag.Select)
    assert kp.selected_rows() == [0, 1]
    before = ws.panel.latent()

    dialog = ws.sources.open_crossbreed()
    assert len(dialog.weights) == 2
    # Equal weights: (a + b)/√2 — the norm-preserving mix, not the average (a + b)/2.
    assert np.allclose(ws.panel.latent(), (parents[0] + parents[1]) / np.sqrt(2))
    dialog.weights[1].setValue(0)
    assert np.allclose(ws.panel.latent(), parents[0])  # all of the first parent
    dialog.weights[0].setValue(0)
    assert not dialog.add_button.isEnabled()  # no parent at all: nothing to keep
    dialog.weights[0].setValue(30)
    dialog.weights[1].setValue(90)
    w = np.array([0.25, 0.75])
    child = (w[0] * parents[0] + w[1] * parents[1]) / np.sqrt((w**2).sum())
    assert np.allclose(ws.panel.latent(), child)
    dialog.add_button.click()
    assert kp.names()[-1] == "Key 1 × Key 2"
    assert np.allclose(kp.latents()[-1], child)

    dialog = ws.sources.open_crossbreed()  # nothing selected but the child: all four keys are parents
    assert len(dialog.weights) == 4
    dialog.reject()  # Cancel: the sliders go back
    assert np.allclose(ws.panel.latent(), child)
    assert before != ws.panel.latent()


def test_keyframes_save_and_open_again_and_a_wrong_size_is_one_sentence(qtbot, quick, tmp_path):
    ws = quick.explore
    kp = ws.keyframes
    for value in (100, -100):
        ws.panel.sliders()[3].setValue(value)
        kp.add_button.click()
    kp.rename(1, "Smile")
    path = tmp_path / "keys.json"
    assert ws.sources.save_keyframes(str(path))
    saved = json.loads(path.read_text())
    assert saved["model"] == "fake-latent" and [k["name"] for k in saved["keyframes"]] == ["Key 1", "Smile"]

    kp.clear()
    assert ws.sources.open_keyframes(str(path))
    assert kp.names() == ["Key 1", "Smile"]
    assert kp.latents()[1][3] == -1.0
    assert ws.panel.latent() == kp.latents()[0]

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([[0.0] * 5, [1.0] * 5]))
    assert not ws.sources.open_keyframes(str(wrong))
    assert "5 numbers" in quick.jobs.error.message and kp.names() == ["Key 1", "Smile"]  # nothing lost


# -- export ----------------------------------------------------------------------------------------------


def test_the_export_dialog_says_what_a_gif_does_to_sixty_fps(qtbot, quick):
    ws = quick.explore
    for value in (100, -100):
        ws.panel.sliders()[0].setValue(value)
        ws.keyframes.add_button.click()
    ws.keyframes.fps.setValue(60)
    dialog = ws.morphs.open_export()
    dialog.path.setText(str(dialog.file()).rsplit(".", 1)[0] + ".gif")
    assert dialog.gif_note.isVisibleTo(dialog) and "plays at 50 fps" in dialog.gif_note.text()
    dialog.path.setText(dialog.file().rsplit(".", 1)[0] + ".mp4")
    assert not dialog.gif_note.isVisibleTo(dialog)
    dialog.reject()


def test_a_click_on_a_map_cell_outside_the_grid_does_nothing(qtbot, quick):
    ws = quick.explore
    ws.views.setCurrentWidget(ws.map)
    before = ws.panel.latent()
    qtbot.mouseClick(ws.map.grid, Qt.MouseButton.LeftButton, pos=QPoint(1, 1))
    assert ws.panel.latent() == before


# -- review fixes ------------------------------------------------------------------------------------


def test_locks_hold_exactly_along_directions_that_are_not_orthogonal(qtbot, fake_models, make_window):
    a = np.array([1, 0, 0, 0, 0, 0, 0, 0], np.float32)
    b = np.array([1, 1, 0, 0, 0, 0, 0, 0], np.float32) / np.sqrt(2)  # 45° from a
    folder = fake_models / "fake-latent"
    write_fake_model(
        folder, "latent", step_seconds=0, latent_dim=8, image_size=32, directions={"file": "directions.safetensors"}
    )
    save_file({"components": np.stack([a, b]), "sigma": np.ones(2, np.float32)}, str(folder / "directions.safetensors"))
    window = make_window()
    panel = window.explore.panel
    panel.sliders()[0].setValue(100)
    panel.sliders()[1].setValue(200)  # moves coordinate 0 too: its handle follows
    coords = panel.directions.coords(panel.latent())
    assert coords[1] == pytest.approx(2.0) and panel.sliders()[0].value() == round(coords[0] * 100)
    panel.locks()[0].setChecked(True)
    panel.locks()[1].setChecked(True)
    held = panel.directions.coords(panel.latent())
    panel.randomise()
    assert np.allclose(panel.directions.coords(panel.latent()), held)  # both locked coordinates exact
    panel.reset()
    assert np.allclose(panel.directions.coords(panel.latent()), held)


def test_a_point_far_outside_the_range_shows_at_the_sliders_end(qtbot, quick):
    panel = quick.explore.panel
    panel.set_latent((3e7, -3e9) + (0.0,) * 6)
    assert panel.sliders()[0].value() == 300 and panel.sliders()[1].value() == -300
    assert panel.latent()[:2] == (3e7, -3e9)


def test_one_click_on_a_keyframe_selects_it_once(qtbot, quick):
    ws = quick.explore
    for value in (100, -100):
        ws.panel.sliders()[0].setValue(value)
        ws.keyframes.add_button.click()
    picked = []
    ws.keyframes.keyframe_selected.connect(picked.append)
    view = ws.keyframes.list
    rect = view.visualItemRect(view.item(0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert len(picked) == 1  # made current: one request, not a second for the click
    ws.panel.sliders()[0].setValue(0)
    qtbot.wait(10)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert len(picked) == 2  # a click on the current key goes back to it
    assert ws.panel.latent()[0] == 1.0


def test_a_thumbnail_decode_that_fails_is_not_asked_for_again(qtbot, quick, tmp_path, monkeypatch):
    from studio.latent.keyframes_file import write_keyframes

    real_decode = FakeBackend.decode

    def decode(self, latents):
        if np.any(latents == 7.0):
            raise RuntimeError("this point cannot be drawn")
        return real_decode(self, latents)

    monkeypatch.setattr(FakeBackend, "decode", decode)
    ws = quick.explore
    path = tmp_path / "keys.json"
    write_keyframes(path, "fake-latent", ["ok", "broken"], [np.zeros(8), np.full(8, 7.0)])
    assert ws.sources.open_keyframes(str(path))
    qtbot.waitUntil(lambda: idle(quick) and "cannot be drawn" in quick.jobs.error.message, timeout=10_000)
    qtbot.wait(300)
    tries = [r for r in jobs_of(quick, LatentDecodeJob) if r.spec.latent == (7.0,) * 8]
    assert len(tries) == 1 and idle(quick)
    assert ws.keyframes.missing_thumbnail() is None
