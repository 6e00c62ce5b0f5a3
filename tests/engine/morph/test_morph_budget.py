"""A morph is checked before its first frame: every `studio morph` setting, and the memory its
frames and file will take against what the machine has free; and the writers read frames one at
a time, so a large morph is never held whole at its final size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from studio import cli
from studio.core import memory
from studio.core.events import Failed, Progress
from studio.core.jobs import MorphJob
from studio.engine.runner import Runner
from studio.latent.animation import ResizedFrames, write_gif, write_mp4
from studio.models.registry import ModelRegistry

from fake_models import write_fake_model
from run_jobs import run

GB = 10**9


@pytest.fixture
def latent_model(fake_models):
    write_fake_model(fake_models / "small-latent", "latent", step_seconds=0.0, latent_dim=8, image_size=16)
    return "small-latent"


@pytest.fixture
def jobs_run(monkeypatch):
    """The specs `studio morph` got as far as running (none, when it refuses up front)."""
    started = []
    real = cli.run_job

    def spy(runner, spec, on_event):
        started.append(spec)
        return real(runner, spec, on_event)

    monkeypatch.setattr(cli, "run_job", spy)
    return started


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("studio: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--fps", "0"], "--fps must be more than 0"),
        (["--fps", "nan"], "--fps must be more than 0"),
        (["--size", "99999"], "--size must be a whole number of pixels from 8 to 4096, not 99999."),
        (["--size", "2"], "--size must be a whole number of pixels from 8 to 4096, not 2."),
    ],
)
def test_bad_writer_settings_are_refused_before_any_frame_is_rendered(
    latent_model, jobs_run, tmp_path, capsys, flags, words
):
    out = tmp_path / "m.gif"
    assert (
        cli.main(["morph", "--model", latent_model, "--seeds", "1,2", "--frames", "4", *flags, "--out", str(out)]) == 2
    )
    assert words in one_line(capsys.readouterr().err)
    assert jobs_run == [] and not out.exists()


def test_a_morph_larger_than_free_memory_is_refused_before_any_frame(
    latent_model, jobs_run, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 * GB)
    out = tmp_path / "m.gif"
    assert (
        cli.main(
            ["morph", "--model", latent_model, "--seeds", "1,2", "--frames", "400", "--size", "4096", "--out", str(out)]
        )
        == 2
    )
    line = one_line(capsys.readouterr().err)
    # 400 GIF frames of 4096² pixels: about 20 GB for the writer alone.
    assert "A morph of 400 frames at 4096×4096 would need about 20 GB of memory" in line
    assert "this machine has 8.0 GB free" in line and "fewer --frames or a smaller --size" in line
    assert jobs_run == [] and not out.exists()


def test_the_same_morph_runs_where_the_memory_is_there(latent_model, jobs_run, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * GB)
    out = tmp_path / "m.mp4"
    assert (
        cli.main(
            [
                "morph",
                "--model",
                latent_model,
                "--seeds",
                "1,2",
                "--frames",
                "3",
                "--size",
                "32",
                "--spacing",
                "uniform",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert len(jobs_run) == 1 and out.read_bytes()[4:8] == b"ftyp"


def test_the_engine_refuses_a_morph_whose_frames_would_not_fit_before_decoding_any(
    fake_models, latent_model, monkeypatch
):
    """The window's morphs go straight to the engine: it checks too, once it knows the frame size."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 100_000)
    spec = MorphJob(model=latent_model, seeds=(1, 2), frames=400)  # 3 x 400 renders of 16² px: ~0.9 MB (922 KB)
    events = run(Runner(ModelRegistry()), spec)
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "bad input", failed
    assert failed.message.startswith("`frames` (400 frames of 16×16 pixels) would need about ")
    assert "922 KB of memory; this machine has 100 KB free; use fewer frames or a smaller size." in failed.message
    assert not any(isinstance(e, Progress) for e in events)


class CountedFrames(Sequence):
    """A sequence of frames that records when each is read, beside the writer's progress."""

    def __init__(self, count: int, log: list):
        self.count, self.log = count, log

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if not 0 <= index < self.count:
            raise IndexError(index)
        self.log.append(("read", index))
        return np.full((8, 8, 3), index * 20, np.uint8)


@pytest.mark.parametrize("write", [write_gif, write_mp4])
def test_writers_read_frames_one_at_a_time(tmp_path, write):
    log: list = []
    suffix = ".gif" if write is write_gif else ".mp4"
    write(
        CountedFrames(4, log), tmp_path / f"m{suffix}", fps=10, progress=lambda done, total: log.append(("done", done))
    )
    # Frame k + 1 is read only once frame k has been encoded: never all of them first.
    assert log == [
        ("read", 0),
        ("done", 1),
        ("read", 1),
        ("done", 2),
        ("read", 2),
        ("done", 3),
        ("read", 3),
        ("done", 4),
    ]


def test_resized_frames_are_made_when_read_and_match_a_full_resize(tmp_path):
    from PIL import Image

    small = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    lazy = ResizedFrames(small, 64)
    assert len(lazy) == 3 and lazy[1].shape == (64, 64, 3)
    full = np.stack([np.asarray(Image.fromarray(f).resize((64, 64), Image.Resampling.LANCZOS)) for f in small])
    assert np.array_equal(np.stack(list(lazy)), full)
    path = write_gif(lazy, tmp_path / "big.gif", fps=10)

    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.size == (64, 64)
