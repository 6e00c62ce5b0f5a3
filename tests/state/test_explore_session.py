"""ExploreSession without a window: the canvas's decodes (newest wins), thumbnails, the map, encodes,
previews and morphs, through the real engine thread over the fake models. No widget is made."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from PIL import Image

from studio.core.events import ImageResult
from studio.core.jobs import MorphJob
from studio.engine.backends.fake import FakeBackend
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry
from studio.state.engine_thread import EngineThread
from studio.state.explore_morphs import MorphKeys, morph_spec
from studio.state.explore_session import ExploreSession, travel_latent
from studio.state.jobs import INTERACTIVE_HISTORY, JobList, JobState

from fake_models import write_fake_model

POINT = (1.5,) + (0.0,) * 7
OTHER = (0.0, -2.0) + (0.0,) * 6
MORPH = {"frames": 4, "spacing": "uniform", "method": "lerp"}


def fake_decode(latent) -> np.ndarray:
    backend = FakeBackend(kind="latent", step_seconds=0.0, latent_dim=8, image_size=32)
    return backend.decode(np.asarray(latent, np.float32)[None, :])[0]


@pytest.fixture
def jobs(fake_models):
    # Slower latent models beside the fixture's: decodes that are still running when the test acts.
    write_fake_model(fake_models / "slow-latent", "latent", step_seconds=0.2, latent_dim=8, image_size=32)
    write_fake_model(fake_models / "steady-latent", "latent", step_seconds=0.05, latent_dim=8, image_size=32)
    engine = EngineThread(Runner(ModelRegistry()))
    engine.start()
    yield JobList(engine)
    engine.stop()


def on(jobs, model: str) -> ExploreSession:
    session = ExploreSession(jobs)
    session.set_model(model)
    return session


@pytest.fixture
def session(jobs):
    return on(jobs, "fake-latent")


def heard(signal) -> list[tuple]:
    """Every emission of `signal`, as a tuple of its arguments."""
    calls: list[tuple] = []
    signal.connect(lambda *args: calls.append(args))
    return calls


def idle(jobs) -> bool:
    return not jobs.active()


# -- the canvas: newest wins ----------------------------------------------------------------------------


def test_a_decode_reaches_the_canvas_with_its_point(qtbot, jobs, session):
    frames = heard(session.frame_ready)
    job = session.decode(POINT)
    assert session.is_decoding()
    qtbot.waitUntil(lambda: bool(frames and not session.is_busy()), timeout=10_000)
    assert len(frames) == 1
    shown, image, latent, seconds = frames[0]
    assert shown is job and latent == POINT and isinstance(seconds, float)
    assert np.array_equal(image, fake_decode(POINT))
    assert (session.shown, session.shown_latent, session.shown_key) == (job, POINT, None)


def test_a_burst_paints_in_request_order_and_ends_on_the_newest(qtbot, jobs, session):
    frames = heard(session.frame_ready)
    asked = [session.decode((i / 10,) + (0.0,) * 7) for i in range(20)]
    qtbot.waitUntil(lambda: idle(jobs) and not session.is_busy(), timeout=10_000)
    painted = [asked.index(job) for job, *_ in frames]
    assert painted == sorted(painted) and len(set(painted)) == len(painted)
    assert frames[-1][0] is asked[-1] and frames[-1][2] == asked[-1].spec.latent
    superseded = [job for job in asked if job.message == "superseded"]
    assert superseded and not any(job in superseded for job, *_ in frames)  # replaced ones never paint


def test_an_overtaken_decode_paints_but_a_late_older_result_never_does(qtbot, jobs):
    session = on(jobs, "slow-latent")
    frames = heard(session.frame_ready)
    first = session.decode(POINT)
    assert first is not None
    qtbot.waitUntil(lambda: first.state is JobState.RUNNING, timeout=10_000)
    second = session.decode(OTHER)  # asked while the first runs: the first still paints, being newer than the canvas
    qtbot.waitUntil(lambda: idle(jobs) and not session.is_busy(), timeout=10_000)
    assert [job for job, *_ in frames] == [first, second]
    # The first one's result arriving again now (older than the canvas) is not painted.
    first.finished.emit(ImageResult(images=(fake_decode(POINT),)))
    assert len(frames) == 2 and session.shown is second and session.shown_latent == OTHER


def test_the_session_keeps_no_decode_alive_once_the_job_list_lets_it_go(qtbot, jobs, session):
    """A drag asks for thousands of decodes: following them must not keep their handles alive."""
    asked = []
    for i in range(40):
        job = session.decode((i / 10,) + (0.0,) * 7)
        assert job is not None
        asked.append(weakref.ref(job))
        del job
        qtbot.waitUntil(lambda: idle(jobs) and not session.is_busy(), timeout=10_000)
    gc.collect()
    alive = [ref() for ref in asked if ref() is not None]
    assert all(job is session.shown or jobs.get(job.id) is job for job in alive)  # the list's history, the canvas's
    assert len(alive) <= INTERACTIVE_HISTORY + 1


def test_another_model_cancels_the_previous_ones_work_and_forgets_its_picture(qtbot, jobs):
    session = on(jobs, "slow-latent")
    frames = heard(session.frame_ready)
    job = session.decode(POINT)
    assert job is not None
    session.set_model("fake-latent")
    assert not session.is_busy() and session.shown is None
    qtbot.waitUntil(lambda: job.is_done and idle(jobs), timeout=10_000)
    qtbot.wait(20)
    assert frames == []


def test_work_for_the_map_or_a_thumbnail_waits_while_a_decode_is_on_its_way(qtbot, jobs, session):
    session.decode(POINT)
    assert session.draw_thumbnail(OTHER) is None and session.decode_map([POINT], "key") is None
    rested = heard(session.idle)
    qtbot.waitUntil(lambda: bool(rested), timeout=10_000)  # the decode ended: now there is room
    assert not session.is_busy()
    assert session.draw_thumbnail(OTHER) is not None and session.is_busy()


# -- thumbnails, the map, encodes ----------------------------------------------------------------------


def test_thumbnails_arrive_and_a_failed_one_is_given_up(qtbot, jobs, session, monkeypatch):
    real_decode = FakeBackend.decode

    def decode(self, latents):
        if np.any(latents == 7.0):
            raise RuntimeError("this point cannot be drawn")
        return real_decode(self, latents)

    monkeypatch.setattr(FakeBackend, "decode", decode)
    ready, failed, frames = heard(session.thumbnail_ready), heard(session.thumbnail_failed), heard(session.frame_ready)
    session.draw_thumbnail(POINT)
    qtbot.waitUntil(lambda: bool(ready and not session.is_busy()), timeout=10_000)
    assert ready[0][0] == POINT and np.array_equal(ready[0][1], fake_decode(POINT))
    broken = (7.0,) * 8
    session.draw_thumbnail(broken)
    qtbot.waitUntil(lambda: bool(failed and not session.is_busy()), timeout=10_000)
    assert failed == [(broken,)] and len(ready) == 1 and frames == []  # a thumbnail is not the canvas's
    assert "cannot be drawn" in jobs.error.message


def test_the_map_brings_its_cells_and_a_failed_map_says_for_which_point(qtbot, jobs, session, monkeypatch):
    decoded, failed = heard(session.map_decoded), heard(session.map_failed)
    cells = [tuple(float(v) for v in row) for row in np.eye(8)[:3] * 2.0]
    session.decode_map(cells, (POINT, "3x3"))
    qtbot.waitUntil(lambda: bool(decoded and not session.is_busy()), timeout=10_000)
    images, got_cells, key = decoded[0]
    assert got_cells == cells and key == (POINT, "3x3")
    assert all(np.array_equal(image, fake_decode(cell)) for image, cell in zip(images, cells, strict=True))

    def broken(self, latents):
        raise RuntimeError("no map today")

    monkeypatch.setattr(FakeBackend, "decode", broken)
    session.decode_map(cells, (OTHER, "3x3"))
    qtbot.waitUntil(lambda: bool(failed and not session.is_busy()), timeout=10_000)
    assert failed == [((OTHER, "3x3"),)] and len(decoded) == 1


def test_an_encoded_picture_brings_its_latent_and_an_unreadable_one_brings_none(qtbot, jobs, session, tmp_path):
    encoded = heard(session.encoded)
    path = tmp_path / "leaf.png"
    Image.new("RGB", (40, 40), (20, 230, 20)).save(path)
    session.encode(str(path), "leaf")
    qtbot.waitUntil(lambda: bool(encoded), timeout=10_000)
    name, latent = encoded[0]
    assert name == "leaf" and len(latent) == 8 and latent[1] > 1.0 and latent[0] < -1.0  # green, not red
    session.encode(str(tmp_path / "nowhere.png"), "nowhere")
    qtbot.waitUntil(lambda: len(encoded) == 2, timeout=10_000)
    assert encoded[1] == ("nowhere", None) and "nowhere.png" in jobs.error.message


# -- a diffusion model's previews -------------------------------------------------------------------------


def test_previews_newest_wins(qtbot, jobs, session):
    session.set_model("fake-image")
    previews, frames = heard(session.preview_ready), heard(session.frame_ready)
    keys = [{"prompt": "red apple", "seed": seed} for seed in range(5)]
    asked = [session.preview(key, {"steps": 3, "width": 64, "height": 64}) for key in keys]  # Random x5
    qtbot.waitUntil(lambda: idle(jobs) and not session.is_busy(), timeout=20_000)
    assert previews[-1][0] is asked[-1] and previews[-1][2] == keys[-1] and previews[-1][1].shape == (64, 64, 3)
    assert sum(job.state is JobState.CANCELLED for job in asked) >= 3 and frames == []
    assert session.shown is asked[-1] and session.shown_key == keys[-1] and session.shown_latent is None
    assert asked[-1].spec.steps == 3


# -- morphs -------------------------------------------------------------------------------------------------


def test_a_playing_morph_keeps_the_canvas_until_a_decode_stops_it(qtbot, jobs, session):
    morphs = session.morphs
    playing, rendered, shown_frames = heard(morphs.playing_changed), heard(morphs.rendered), heard(morphs.frame)
    frames, thumbnails = heard(session.frame_ready), heard(session.thumbnail_ready)
    session.decode(POINT)  # its picture arrives while the morph renders
    job = morphs.play(MorphKeys(latents=(POINT, OTHER), settings=MORPH))
    assert isinstance(job.spec, MorphJob) and job.spec.latents == (POINT, OTHER) and job.spec.frames == 4
    qtbot.waitUntil(lambda: bool(morphs.timer.isActive() and len(shown_frames) >= 3), timeout=10_000)
    assert playing == [(True,)] and len(rendered[0][0]) == 4 and morphs.is_playing()
    assert frames == [] and thumbnails and thumbnails[0][0] == POINT  # the decode became a thumbnail only
    assert session.shown_latent is None

    session.decode(OTHER)  # another action: the loop stops, the decode paints
    assert playing[-1] == (False,) and not morphs.is_playing()
    qtbot.waitUntil(lambda: bool(frames), timeout=10_000)
    assert frames[0][2] == OTHER and session.shown_latent == OTHER


def test_a_morph_cancelled_from_elsewhere_says_so_and_stop_while_rendering_cancels(qtbot, jobs):
    session = on(jobs, "steady-latent")
    morphs = session.morphs
    status, playing = heard(morphs.status), heard(morphs.playing_changed)
    job = morphs.play(MorphKeys(latents=(POINT, OTHER), settings=MORPH))
    assert job is not None
    qtbot.waitUntil(lambda: job.state is JobState.RUNNING, timeout=10_000)
    job.cancel()  # as the jobs panel's Cancel does
    qtbot.waitUntil(lambda: job.is_done, timeout=10_000)
    assert status[-1] == ("Morph cancelled.",) and playing == [(True,), (False,)]

    again = morphs.play(MorphKeys(latents=(POINT, OTHER), settings=MORPH))
    assert again is not None
    morphs.stop()  # the person's Stop: cancelled quietly
    qtbot.waitUntil(lambda: again.state is JobState.CANCELLED, timeout=10_000)
    assert status[-1] == ("Rendering the morph…",) and playing[-1] == (False,) and not morphs.is_playing()


def test_an_export_renders_frames_to_write_and_a_cancel_ends_it(qtbot, jobs):
    session = on(jobs, "steady-latent")
    morphs = session.morphs
    written, ended, progress = heard(morphs.export_rendered), heard(morphs.export_ended), heard(morphs.export_progress)
    assert not morphs.cancel_export()  # nothing rendering
    morphs.export(MorphKeys(latents=(POINT, OTHER), settings=MORPH))
    qtbot.waitUntil(lambda: bool(written), timeout=10_000)
    assert len(written[0][0]) == 4 and ended == [] and not morphs.is_exporting()
    assert progress and progress[-1][1] > 0

    morphs.export(MorphKeys(latents=(POINT, OTHER), settings=MORPH))
    qtbot.waitUntil(
        lambda: morphs.export_job is not None and morphs.export_job.state is JobState.RUNNING, timeout=10_000
    )
    assert morphs.cancel_export()
    qtbot.waitUntil(lambda: bool(ended), timeout=10_000)
    assert ended == [("Export cancelled.",)] and len(written) == 1 and not morphs.is_exporting()


def test_a_diffusion_models_keys_travel_by_prompt_and_seed():
    keys = ({"prompt": "a", "seed": 3}, {"prompt": "a", "seed": 4})
    spec = morph_spec(
        "tiny-sd",
        MorphKeys(
            latents=tuple(travel_latent(k) for k in keys),
            payloads=keys,
            settings=MORPH,
            travel={"steps": 2, "width": 64, "height": 64},
        ),
    )
    assert (spec.seeds, spec.prompt, spec.latents, spec.steps, spec.frames) == ((3, 4), "a", (), 2, 4)
    assert travel_latent(keys[0]) != travel_latent(keys[1]) and travel_latent(keys[0])[0] == 3.0
