"""ImageSession without a window: the spec is built from the canvas arrays, only the newest job's
previews reach the canvas, a stopped job puts back what it covered, and a finished image is on disk
before it is shown."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from studio.core.events import ImageResult, RunInfo
from studio.core.jobs import ImageJob, Lane
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry
from studio.state.engine_thread import EngineThread
from studio.state.gallery import Gallery
from studio.state.image_session import ImageSession
from studio.state.jobs import JobHandle, JobList, JobState

from fake_models import write_fake_model


class Canvas:
    """What a canvas widget does with the session's signals, as arrays: the picture it shows, and
    everything it was given in order."""

    def __init__(self, session: ImageSession, picture=None):
        self.picture = picture
        self.log: list[tuple[str, object]] = []
        self.strip: list = []
        self.captions: list[str] = []
        self.on_disk: list[bool] = []  # per write: whether its files were whole when it was announced
        session.preview_shown.connect(self._preview)
        session.picture_restored.connect(lambda picture: self._show("restored", picture))
        session.result_shown.connect(lambda picture: self._show("result", picture))
        session.images_saved.connect(self._saved)
        session.caption_changed.connect(self.captions.append)

    def read(self):
        return self.picture

    def _preview(self, picture, width, height):
        assert (width, height) != (0, 0)
        self._show("preview", picture)

    def _show(self, what, picture):
        self.log.append((what, picture))
        self.picture = picture

    def _saved(self, saved):
        # On disk by the time anyone hears of them: each file already decodes to its picture.
        self.on_disk.append(all(path.is_file() and np.array_equal(decode(path), picture) for path, picture in saved))
        self.log.append(("saved", [path for path, _ in saved]))
        self.strip.extend(saved)

    def kinds(self) -> list[str]:
        return [what for what, _ in self.log]


@pytest.fixture
def jobs(fake_models):
    write_fake_model(fake_models / "slow", "image", step_seconds=0.05)  # stays running while a test acts
    engine = EngineThread(Runner(ModelRegistry()))
    engine.start()
    yield JobList(engine)
    engine.stop()


@pytest.fixture
def session(jobs, tmp_path):
    session = ImageSession(jobs, Gallery(tmp_path / "gallery"), read_canvas=lambda: canvas.read())
    canvas = Canvas(session)
    session.canvas = canvas  # the test's stand-in for the widget
    yield session
    session.finish_writes()


def spec(**kw) -> ImageJob:
    return ImageJob(**{"model": "fake-image", "steps": 3, "width": 64, "height": 64, "seed": 5, **kw})


def decode(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# -- with the engine ------------------------------------------------------------------------------


def test_previews_then_the_image_on_disk_then_on_the_canvas(qtbot, session):
    canvas = session.canvas
    finished = []
    with qtbot.waitSignal(session.result_shown, timeout=10_000):
        job = session.generate(spec(), "txt2img")
        job.finished.connect(finished.append)
    assert job is not None and session.on_canvas is job
    kinds = canvas.kinds()
    assert kinds[0] == "preview" and kinds[-2:] == ["saved", "result"], kinds
    assert canvas.on_disk == [True], "written whole before it was shown"
    assert np.array_equal(canvas.picture, finished[0].images[0])
    assert not np.array_equal(canvas.log[0][1], canvas.picture), "the first preview is still noisy"
    [path] = canvas.log[-2][1]
    assert path.parent == session.gallery.folder and path.stem.endswith("-5")
    assert "seed 5" in canvas.captions[-1] and path.name in canvas.captions[-1]
    assert any(c.startswith("step ") and c.endswith("seed 5") for c in canvas.captions[:-1])


def test_img2img_and_inpainting_start_from_the_canvas_arrays(qtbot, session, jobs):
    picture = np.random.default_rng(3).integers(0, 256, (52, 70, 3), dtype=np.uint8)  # not multiples of 8
    mask = np.zeros((52, 70), np.uint8)
    mask[10:20, 10:30] = 255
    job = session.generate(spec(), "inpaint", picture, mask)
    assert job is not None
    assert (job.spec.width, job.spec.height, job.spec.mode) == (64, 48, "inpaint"), "rounded down to multiples of 8"
    assert decode(job.spec.init_image).shape == (48, 64, 3)
    grey = decode(job.spec.mask)
    assert grey.shape == (48, 64, 3) and grey.any() and (grey[..., 0] == grey[..., 2]).all()

    exact = picture[:48, :64].copy()
    job = session.generate(spec(), "img2img", exact)
    assert np.array_equal(decode(job.spec.init_image), exact), "exactly the canvas pixels"
    assert not job.spec.mask
    qtbot.waitUntil(lambda: not jobs.active(), timeout=20_000)


def test_a_mode_without_its_pictures_is_one_sentence_and_no_job(session, jobs):
    assert session.generate(spec(), "img2img", None) is None
    assert "starts from the canvas" in jobs.error.message
    picture = np.zeros((64, 64, 3), np.uint8)
    assert session.generate(spec(), "inpaint", picture, np.zeros((64, 64), np.uint8)) is None
    assert jobs.error.message.startswith("Paint the area to repaint")
    assert session.generate(spec(width=100), "txt2img") is None
    assert "`width`" in jobs.error.message
    assert len(jobs) == 0


def test_a_cancelled_job_puts_back_what_its_previews_covered(qtbot, session):
    canvas = session.canvas
    canvas.picture = before = np.full((64, 64, 3), 77, np.uint8)
    with qtbot.waitSignal(session.preview_shown, timeout=10_000):
        job = session.generate(spec(model="slow", steps=100), "img2img", before)
    assert canvas.picture is not before
    with qtbot.waitSignal(job.ended, timeout=10_000):
        job.cancel()
    assert canvas.log[-1] == ("restored", before) and canvas.picture is before
    assert canvas.captions[-1] == "Cancelled · the canvas shows what it had before"
    assert session.on_canvas is None


def test_a_dropped_picture_stops_the_running_jobs_painting(qtbot, session):
    canvas = session.canvas
    with qtbot.waitSignal(session.preview_shown, timeout=10_000):
        job = session.generate(spec(model="slow", steps=10), "txt2img")
    dropped = np.full((64, 64, 3), 9, np.uint8)
    canvas.picture = dropped
    session.picture_placed()
    painted = len(canvas.log)
    with qtbot.waitSignal(session.images_saved, timeout=10_000):
        pass
    assert job.state is JobState.FINISHED
    assert canvas.kinds()[painted:] == ["saved"], "into the gallery, not onto the dropped picture"
    assert canvas.picture is dropped and session.on_canvas is None


# -- the canvas's order, with handles driven by hand ----------------------------------------------


@pytest.fixture
def hand_jobs(session, jobs, monkeypatch):
    """Jobs the session submits become handles the test drives itself."""
    ids = itertools.count(1000)
    made = []

    def submit_or_report(spec):
        made.append(JobHandle(next(ids), spec, Lane.BATCH, jobs))
        return made[-1]

    monkeypatch.setattr(jobs, "submit_or_report", submit_or_report)
    return made


def picture(value: int) -> np.ndarray:
    return np.full((64, 64, 3), value, np.uint8)


def finish(qtbot, session, job, *images):
    with qtbot.waitSignal(session.writer.saved, timeout=10_000):
        job.state = JobState.FINISHED
        job.finished.emit(ImageResult(images, RunInfo(seconds=1.5)))


def test_the_newest_job_that_painted_wins_and_older_ones_only_reach_the_gallery(qtbot, session, hand_jobs):
    canvas = session.canvas
    older = session.generate(spec(seed=1), "txt2img")
    newer = session.generate(spec(seed=2), "txt2img")
    older.preview.emit(picture(1))
    assert canvas.picture[0, 0, 0] == 1 and session.on_canvas is older
    newer.preview.emit(picture(2))
    older.preview.emit(picture(3))  # older than what the canvas shows: not painted
    assert canvas.picture[0, 0, 0] == 2 and session.on_canvas is newer
    finish(qtbot, session, older, picture(4))
    assert canvas.picture[0, 0, 0] == 2 and canvas.kinds()[-1] == "saved"
    finish(qtbot, session, newer, picture(5), picture(6))
    assert canvas.picture[0, 0, 0] == 5 and canvas.kinds()[-2:] == ["saved", "result"]
    assert [p[0, 0, 0] for _, p in canvas.strip] == [4, 5, 6] and canvas.on_disk == [True, True]
    assert "2 images" in canvas.captions[-1] and "1.5 s" in canvas.captions[-1]


def test_a_failed_job_restores_only_what_it_painted_over(qtbot, session, hand_jobs):
    canvas = session.canvas
    canvas.picture = start = picture(50)
    first = session.generate(spec(), "txt2img")
    second = session.generate(spec(), "txt2img")
    first.preview.emit(picture(1))
    finish(qtbot, session, first, picture(2))
    assert canvas.picture[0, 0, 0] == 2
    second.preview.emit(picture(3))
    second.state = JobState.FAILED
    second.failed.emit("out of luck")
    assert canvas.log[-1][0] == "restored" and canvas.picture[0, 0, 0] == 2, "the first job's image, not the start"
    assert canvas.captions[-1].startswith("Failed")
    assert start is not canvas.picture

    never_painted = session.generate(spec(), "txt2img")
    shown = len(canvas.log)
    never_painted.state = JobState.CANCELLED
    never_painted.cancelled.emit("cancelled")
    assert len(canvas.log) == shown, "a job that painted nothing puts nothing back"


def test_previews_keep_the_jobs_size_for_the_canvas_to_enlarge_to(session, hand_jobs):
    sizes = []
    session.preview_shown.connect(lambda picture, width, height: sizes.append((picture.shape, width, height)))
    job = session.generate(spec(width=64, height=48), "txt2img")
    job.preview.emit(np.zeros((6, 8, 3), np.uint8))  # a latent-resolution preview
    assert sizes == [((6, 8, 3), 64, 48)]
