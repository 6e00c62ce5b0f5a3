"""Morph jobs on latent models: keyframes from seeds or vectors, slerp between them, frames spaced
evenly by image change, progress and cancel on every decode; and `studio morph` writing GIF/MP4."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.core.errors import SpecError
from studio.core.events import Cancelled, Failed, Finished, Progress
from studio.core.jobs import MorphJob, spec_from_json
from studio.engine.morph.latent_morph import seeded_latent
from studio.engine.runner import Runner
from studio.models import paths
from studio.models.registry import ModelRegistry

from fake_models import write_fake_model
from run_jobs import run


@pytest.fixture
def runner(tmp_path):
    write_fake_model(tmp_path / "fake-latent", "latent", step_seconds=0.0, latent_dim=8, image_size=16)
    return Runner(ModelRegistry([(tmp_path, "user")]))


def frames_of(events) -> np.ndarray:
    assert isinstance(events[-1], Finished), events[-1]
    return np.stack(events[-1].result.images)


def test_uniform_frames_start_and_end_on_the_keyframes(runner):
    events = run(runner, MorphJob(model="fake-latent", seeds=(3, 4, 5), frames=9, spacing="uniform"))
    frames = frames_of(events)
    backend = runner.backend_for(MorphJob(model="fake-latent", seeds=(1, 2)))[0]
    keys = [backend.decode(seeded_latent(s, 8)[None])[0] for s in (3, 4, 5)]
    assert frames.shape == (9, 16, 16, 3)
    assert (
        np.array_equal(frames[0], keys[0]) and np.array_equal(frames[4], keys[1]) and np.array_equal(frames[8], keys[2])
    )
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == progress[-1].total == 9


def test_even_spacing_keeps_neighbouring_frames_about_equally_different(runner):
    uniform = frames_of(run(runner, MorphJob(model="fake-latent", seeds=(1, 2), frames=24, spacing="uniform")))
    even = frames_of(run(runner, MorphJob(model="fake-latent", seeds=(1, 2), frames=24)))

    def spread(frames):
        steps = np.abs(np.diff(frames.astype(float), axis=0)).mean(axis=(1, 2, 3))
        return steps.max() / max(steps.min(), 1e-9)

    assert np.array_equal(even[0], uniform[0]) and np.array_equal(even[-1], uniform[-1])
    assert spread(even) <= spread(uniform)


def test_latents_given_directly_and_a_wrong_length_is_one_sentence(runner):
    keys = (tuple([0.5] * 8), tuple([-0.5] * 8))
    assert frames_of(run(runner, MorphJob(model="fake-latent", latents=keys, frames=4))).shape[0] == 4
    events = run(runner, MorphJob(model="fake-latent", latents=((1.0, 2.0), (3.0, 4.0)), frames=4))
    assert isinstance(events[-1], Failed) and "this model takes 8" in events[-1].message


def test_cancel_stops_at_the_next_decode(runner):
    seen = []

    def cancel_early(job, event):
        if isinstance(event, Progress):
            seen.append(event)
            if len(seen) == 3:
                job.cancel.set()

    events = run(runner, MorphJob(model="fake-latent", seeds=(1, 2), frames=50), cancel_early)
    assert isinstance(events[-1], Cancelled) and len(seen) == 3


@pytest.mark.parametrize(
    "spec, field",
    [
        (dict(seeds=(1,)), "seeds"),
        (dict(seeds=(1, 2), latents=((1.0,), (2.0,))), "seeds"),
        (dict(seeds=(1, 2), frames=1), "frames"),
        (dict(seeds=(1, 2, 3), frames=2, spacing="uniform"), "frames"),
        (dict(seeds=(1, 2), spacing="wobbly"), "spacing"),
        (dict(latents=((1.0, 2.0), (1.0,))), "latents"),
        (dict(latents=((1.0, float("nan")), (1.0, 2.0))), "latents"),
    ],
)
def test_bad_morphs_are_refused_naming_the_field(spec, field):
    with pytest.raises(SpecError) as error:
        MorphJob(model="m", **spec).validate()
    assert error.value.field == field


def test_a_morph_round_trips_through_json():
    job = MorphJob(model="emoji-vae", latents=((0.25, -1.0), (1.0, 2.0)), frames=12, method="lerp")
    assert spec_from_json(job.to_json()) == job


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setenv("STUDIO_EMBEDDED_MODELS_DIR", str(paths.EMBEDDED_MODELS_DIR))


def test_studio_morph_writes_a_gif_of_the_shipped_vae(shipped, tmp_path, capsys):
    out = tmp_path / "morph.gif"
    assert (
        main(
            [
                "morph",
                "--model",
                "emoji-vae",
                "--seeds",
                "1,2",
                "--frames",
                "12",
                "--fps",
                "10",
                "--size",
                "96",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and "morph" in captured.err  # progress on stderr
    with Image.open(out) as gif:
        assert gif.n_frames == 12 and gif.size == (96, 96) and gif.info["duration"] == 100


def test_studio_morph_writes_an_mp4_from_a_latents_file(shipped, tmp_path, capsys):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([[0.0] * 128, [2.0] + [0.0] * 127]))
    out = tmp_path / "morph.mp4"
    assert (
        main(
            [
                "morph",
                "--model",
                "emoji-gan",
                "--latents",
                str(keys),
                "--frames",
                "8",
                "--spacing",
                "uniform",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[4:8] == b"ftyp"
    import av

    with av.open(str(out)) as video:
        assert sum(1 for _ in video.decode(video=0)) == 8


def test_studio_morph_refuses_a_text_model_and_a_bad_out(shipped, tmp_path, capsys):
    # Image models morph too (tests/test_cli_morph_diffusion.py); a text model has nothing to morph.
    assert main(["morph", "--model", "prose", "--seeds", "1,2", "--out", str(tmp_path / "x.gif")]) == 2
    assert "prose is a text model; a morph job needs a latent or an image model." in capsys.readouterr().err
    assert main(["morph", "--model", "emoji-vae", "--seeds", "1,2", "--out", str(tmp_path / "x.png")]) == 2
    assert ".gif or .mp4" in capsys.readouterr().err


def test_a_picture_encodes_to_a_keyframe_of_the_shipped_vae(shipped, tmp_path):
    from studio.core.jobs import LatentDecodeJob, LatentEncodeJob
    from studio.models.registry import default_roots

    runner = Runner(ModelRegistry(default_roots([])))
    target = seeded_latent(4, 128)
    original = runner.backend_for(LatentDecodeJob(model="emoji-vae", latent=(0.0,)))[0].decode(target[None])[0]
    Image.fromarray(original).resize((256, 256)).save(tmp_path / "drop.png")  # a dropped picture, any size
    events = run(runner, LatentEncodeJob(model="emoji-vae", image=str(tmp_path / "drop.png")))
    assert isinstance(events[-1], Finished), events[-1]
    (latent,) = events[-1].result.latents
    again = frames_of(run(runner, MorphJob(model="emoji-vae", latents=(latent, latent), frames=2, spacing="uniform")))[
        0
    ]
    other = runner.backend_for(LatentDecodeJob(model="emoji-vae", latent=(0.0,)))[0].decode(
        seeded_latent(9, 128)[None]
    )[0]

    def differ(a, b):
        return float(np.abs(a.astype(float) - b.astype(float)).mean())

    assert differ(again, original) < 0.5 * differ(other, original)  # it came back near the picture


def test_encoding_needs_an_encoder_and_a_picture(shipped, tmp_path):
    from studio.core.jobs import LatentEncodeJob
    from studio.models.registry import default_roots

    runner = Runner(ModelRegistry(default_roots([])))
    Image.new("RGB", (64, 64), "red").save(tmp_path / "red.png")
    events = run(runner, LatentEncodeJob(model="emoji-gan", image=str(tmp_path / "red.png")))
    assert isinstance(events[-1], Failed) and "no encoder" in events[-1].message
    events = run(runner, LatentEncodeJob(model="emoji-vae", image=str(tmp_path / "missing.png")))
    assert isinstance(events[-1], Failed) and "`image`" in events[-1].message and "does not exist" in events[-1].message


def test_numpy_keyframes_are_taken_and_huge_numbers_refused_with_a_sentence():
    job = MorphJob(model="m", latents=np.zeros((2, 3), np.float32), frames=4)
    job.validate()
    assert job.latents == ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    MorphJob(model="m", seeds=np.array([1, 2]), frames=4).validate()
    with pytest.raises(SpecError) as error:
        spec_from_json('{"kind": "morph", "model": "m", "latents": [[1' + "0" * 400 + ", 1.0], [1.0, 2.0]]}")
    assert error.value.field == "latents"


def test_a_latents_file_that_is_not_numbers_is_one_sentence(shipped, tmp_path, capsys):
    keys = tmp_path / "keys.json"
    keys.write_text("[[1" + "0" * 400 + ", 1.0], [1, 2]]")
    assert main(["morph", "--model", "emoji-vae", "--latents", str(keys), "--out", str(tmp_path / "x.gif")]) == 2
    keys.write_text("[" * 100_000)
    assert main(["morph", "--model", "emoji-vae", "--latents", str(keys), "--out", str(tmp_path / "x.gif")]) == 2
    assert "--latents: keys.json is not a keyframes file" in capsys.readouterr().err


def test_studio_morph_takes_the_keyframes_the_explore_tab_saves(shipped, tmp_path, capsys):
    from studio.latent.keyframes_file import write_keyframes

    keys = tmp_path / "keys.json"
    write_keyframes(keys, "emoji-vae", ["A", "B"], [np.zeros(128), np.ones(128)])
    out = tmp_path / "saved.gif"
    assert (
        main(
            [
                "morph",
                "--model",
                "emoji-vae",
                "--latents",
                str(keys),
                "--frames",
                "5",
                "--spacing",
                "uniform",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with Image.open(out) as gif:
        assert gif.n_frames == 5
