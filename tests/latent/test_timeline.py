"""Keyframe timelines and perceptually even frame spacing (reference §2.8)."""

import numpy as np
import pytest

from studio.core.errors import SpecError
from studio.latent import Keyframe, Timeline, even_spacing, lerp, slerp


def latent(seed, d=16):
    return np.random.default_rng(seed).standard_normal(d)


def three_keys():
    timeline = Timeline()
    for i, name in enumerate(["dawn", "noon", "dusk"]):
        timeline.add(name, latent(i))
    return timeline


def test_keyframe_keeps_its_own_read_only_copy():
    source = latent(0)
    key = Keyframe("dawn", source)
    source[:] = 0
    assert np.any(key.latent != 0)
    with pytest.raises(ValueError):
        key.latent[0] = 1.0
    assert Keyframe("ints", [1, 2, 3]).latent.dtype == np.float64


def test_sample_starts_and_ends_on_keys_and_includes_every_key():
    timeline = three_keys()
    frames = timeline.sample(9)
    assert frames.shape == (9, 16)
    assert np.array_equal(frames[0], timeline[0].latent)
    assert np.array_equal(frames[4], timeline[1].latent)
    assert np.array_equal(frames[8], timeline[2].latent)
    assert np.allclose(timeline.frame_positions(9), np.linspace(0, 1, 9))
    # Between keys the path is the chosen interpolation.
    assert np.allclose(frames[2], slerp(timeline[0].latent, timeline[1].latent, 0.5))
    assert np.allclose(timeline.sample(9, "lerp")[6], lerp(timeline[1].latent, timeline[2].latent, 0.5))


@pytest.mark.parametrize("frames", [3, 4, 7, 10, 31])
def test_every_key_is_a_frame_whatever_the_count(frames):
    timeline = three_keys()
    out = timeline.sample(frames)
    assert len(out) == frames
    for key in timeline:
        assert sum(np.array_equal(row, key.latent) for row in out) == 1
    positions = timeline.frame_positions(frames)
    assert positions[0] == 0.0 and positions[-1] == 1.0 and np.all(np.diff(positions) > 0)


def test_durations_give_a_segment_its_share_of_the_frames():
    timeline = three_keys()
    positions = timeline.frame_positions(13, durations=[3, 1])
    assert list(timeline.keyframe_positions([3, 1])) == [0.0, 0.75, 1.0]
    assert np.sum(positions < 0.75) == 9 and 0.75 in positions
    assert np.allclose(np.diff(positions), 1 / 12)


def test_one_key_is_a_still_and_too_few_frames_are_refused():
    timeline = Timeline([Keyframe("only", latent(0))])
    assert np.array_equal(timeline.sample(4), np.tile(timeline[0].latent, (4, 1)))
    with pytest.raises(SpecError, match="`frames` must be a whole number of at least 3"):
        three_keys().sample(2)
    with pytest.raises(SpecError, match="`timeline` has no keyframes"):
        Timeline().sample(5)
    with pytest.raises(SpecError, match="`method` must be 'slerp' or 'lerp'"):
        three_keys().sample(5, method="cubic")
    with pytest.raises(SpecError, match="`durations` must hold one number per segment"):
        three_keys().sample(5, durations=[1])


def test_edits_reorder_rename_delete():
    timeline = three_keys()
    noon = timeline["noon"].latent
    timeline.move("dusk", 0)
    assert timeline.names == ["dusk", "dawn", "noon"]
    timeline.reorder(["dawn", "noon", "dusk"])
    assert timeline.names == ["dawn", "noon", "dusk"]
    timeline.rename(1, "midday")
    assert timeline.names == ["dawn", "midday", "dusk"]
    assert np.array_equal(timeline["midday"].latent, noon)
    assert timeline.delete("dawn").name == "dawn"
    assert timeline.names == ["midday", "dusk"]
    timeline.add("dawn", latent(9), index=0)
    assert timeline.names == ["dawn", "midday", "dusk"]
    assert np.array_equal(timeline.sample(3)[0], latent(9))
    timeline.replace(-1, np.zeros(16))
    assert not timeline[-1].latent.any()


@pytest.mark.parametrize(
    "edit, words",
    [
        (
            lambda t: t.add("big", np.zeros(17)),
            "`latent` has shape (17,), but this timeline's keyframes have shape (16,).",
        ),
        (lambda t: t.add("noon", np.zeros(16)), "`name` 'noon' is already a keyframe"),
        (lambda t: t.add("  ", np.zeros(16)), "`name` must be a non-empty piece of text."),
        (lambda t: t.rename("dawn", "dusk"), "`name` 'dusk' is already a keyframe"),
        (lambda t: t.move("dawn", 3), "`to` must be between 0 and 2"),
        (lambda t: t.delete("midnight"), "`keyframe` 'midnight' is not in this timeline."),
        (lambda t: t.delete(5), "`keyframe` index 5 is outside"),
        (lambda t: t.reorder(["dawn", "dawn", "dusk"]), "`order` must name every keyframe exactly once."),
        (lambda t: t.replace("dawn", np.zeros(4)), "`latent` has shape (4,)"),
        (lambda t: t.add("nan", np.full(16, np.nan)), "`latent` must hold only finite numbers"),
    ],
)
def test_refused_edits_say_why_and_change_nothing(edit, words):
    timeline = three_keys()
    before = [(k.name, k.latent.copy()) for k in timeline]
    with pytest.raises(SpecError) as info:
        edit(timeline)
    assert str(info.value).startswith(words)
    assert [(k.name, k.latent.tolist()) for k in timeline] == [(n, v.tolist()) for n, v in before]


# --- even spacing ---------------------------------------------------------------------------


def brightness(u):
    """A synthetic morph: the picture brightens fast (and unevenly) over the first half, then
    drifts slowly over the second; 90 % of the change happens in the first half."""
    if u <= 0.5:
        return 180.0 * np.sin(np.pi * u)  # 0 -> 180, fastest at the start
    return 180.0 + 20.0 * (u - 0.5) / 0.5


class Renders:
    def __init__(self, level=brightness):
        self.level, self.calls = level, []

    def __call__(self, u):
        self.calls.append(u)
        return np.full((8, 8, 3), self.level(u))


def mean_abs(x, y):
    return float(np.mean(np.abs(x - y)))


@pytest.mark.parametrize("frames", [8, 17, 30])
def test_even_spacing_puts_frames_where_the_picture_changes(frames):
    render = Renders()
    positions = even_spacing(render, mean_abs, frames)
    assert len(positions) == frames and positions[0] == 0.0 and positions[-1] == 1.0
    assert np.all(np.diff(positions) > 0)
    assert np.sum(positions < 0.5) > 3 * np.sum(positions > 0.5)
    steps = np.abs(np.diff([brightness(u) for u in positions]))
    assert steps.max() / steps.min() < 2.0
    # Uniform spacing would be far more uneven: that is what this is for.
    uniform = np.abs(np.diff([brightness(u) for u in np.linspace(0, 1, frames)]))
    assert uniform.max() / uniform.min() > 5 * steps.max() / steps.min()
    assert len(render.calls) <= 2 * frames


def test_render_budget_is_kept():
    render = Renders()
    positions = even_spacing(render, mean_abs, 20, max_renders=12)
    assert len(render.calls) <= 12 and len(positions) == 20


def test_nothing_changing_gives_equal_steps_and_a_hard_cut_ends():
    still = Renders(lambda u: 50.0)
    assert np.allclose(even_spacing(still, mean_abs, 6), np.linspace(0, 1, 6))
    cut = Renders(lambda u: 0.0 if u < 0.3 else 255.0)
    positions = even_spacing(cut, mean_abs, 10)
    assert len(cut.calls) <= 20 and np.all(np.diff(positions) >= 0)
    assert positions[0] == 0.0 and positions[-1] == 1.0


def test_even_spacing_with_a_timeline():
    timeline = three_keys()
    render = Renders(lambda u: float(np.linalg.norm(timeline.at(u) - timeline[0].latent)))
    positions = even_spacing(render, mean_abs, 12)
    assert timeline.at(positions).shape == (12, 16)


def test_even_spacing_refuses_bad_distances_and_passes_cancel_through():
    with pytest.raises(SpecError, match="`distance` must return a finite number"):
        even_spacing(Renders(), lambda x, y: -1.0, 5)

    class Cancelled(Exception):
        pass

    def render(u):
        raise Cancelled

    with pytest.raises(Cancelled):
        even_spacing(render, mean_abs, 5)
    with pytest.raises(SpecError, match="`frames` must be a whole number of at least 2"):
        even_spacing(Renders(), mean_abs, 1)
