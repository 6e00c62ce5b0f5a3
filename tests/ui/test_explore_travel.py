"""The Explore tab with a diffusion model: keyframes are a prompt and a seed, Preview generates
one, and Play travels between them (seed travel and prompt travel) through the real engine."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from studio.bench.tiny_models import build_tiny_diffusers
from studio.core.jobs import ImageJob, MorphJob
from studio.state.explore_morphs import travel_keys

STEPS = 2


@pytest.fixture
def travel_window(fake_models, make_window, qtbot):
    build_tiny_diffusers(Path(os.environ["STUDIO_MODELS_DIR"]) / "tiny-sd")
    window = make_window()
    ws = window.explore
    window.tabs.setCurrentWidget(ws)
    ws.models.setCurrentIndex(ws.models.findData("tiny-sd"))
    ws.travel.steps.setValue(STEPS)
    ws.travel.image_size.setValue(64)  # the panel's smallest; the tiny model makes 64 px pictures quickly
    return window


def idle(window) -> bool:
    return not window.jobs.active()


def test_latent_models_come_first_and_a_diffusion_model_swaps_sliders_for_prompt_and_seed(travel_window):
    ws = travel_window.explore
    ids = [ws.models.itemData(i) for i in range(ws.models.count())]
    assert ids.index("fake-latent") < ids.index("tiny-sd") and "fake-text" not in ids
    assert ws.side_stack.currentWidget() is ws.travel
    assert not ws.views.isTabEnabled(ws.views.indexOf(ws.map))
    assert not ws.keyframes.more_button.isVisibleTo(ws.keyframes)
    ws.models.setCurrentIndex(ws.models.findData("fake-latent"))
    assert ws.side_stack.currentWidget() is ws.panel and ws.views.isTabEnabled(ws.views.indexOf(ws.map))


def test_preview_add_keyframes_and_play_a_seed_travel(qtbot, travel_window, pixels):
    window = travel_window
    ws = window.explore
    ws.travel.prompt.setText("red apple")
    ws.travel.seed.setValue(1)
    ws.travel.preview_button.click()
    qtbot.waitUntil(lambda: idle(window) and not ws.canvas.image().isNull(), timeout=30_000)
    first = pixels(ws.canvas.image())
    ws.keyframes.add_button.click()
    ws.travel.seed.setValue(2)
    ws.keyframes.add_button.click()  # added before its preview: the preview comes for the thumbnail
    assert ws.keyframes.names() == ["red apple · 1", "red apple · 2"]
    qtbot.waitUntil(lambda: idle(window) and ws.keyframes.missing_thumbnail() is None, timeout=30_000)
    previews = [r.spec for r in window.jobs if isinstance(r.spec, ImageJob)]
    assert [(s.prompt, s.seed, s.steps) for s in previews] == [("red apple", 1, STEPS), ("red apple", 2, STEPS)]

    # Picking the first key puts its prompt and seed back, and previews it again: the same picture.
    ws.keyframes.list.setCurrentRow(0)
    assert ws.travel.key() == {"prompt": "red apple", "seed": 1}
    qtbot.waitUntil(lambda: idle(window) and ws.session.shown_key == {"prompt": "red apple", "seed": 1}, timeout=30_000)
    assert np.array_equal(pixels(ws.canvas.image()), first)

    ws.keyframes.frames.setValue(4)
    ws.keyframes.spacing.setCurrentIndex(ws.keyframes.spacing.findData("uniform"))
    job = ws.morphs.play()
    spec = job.spec
    assert isinstance(spec, MorphJob) and spec.seeds == (1, 2) and spec.prompt == "red apple" and not spec.prompts
    assert spec.steps == STEPS and spec.width == 64
    qtbot.waitUntil(lambda: len(ws.morphs.play_frames) == 4, timeout=60_000)
    frames = [pixels(f) for f in ws.morphs.play_frames]
    assert np.array_equal(frames[0], first)  # the morph starts on the first keyframe's picture
    assert not np.array_equal(frames[1], frames[0]) and not np.array_equal(frames[1], frames[3])
    ws.session.morphs.stop()


def test_keys_with_different_prompts_travel_between_prompts():
    assert travel_keys([{"prompt": "a", "seed": 3}, {"prompt": "b", "seed": 3}]) == {"prompts": ("a", "b"), "seed": 3}
    assert travel_keys([{"prompt": "a", "seed": 3}, {"prompt": "a", "seed": 4}]) == {"seeds": (3, 4), "prompt": "a"}
    assert travel_keys([{"prompt": "a", "seed": 3}, {"prompt": "b", "seed": 4}]) == {
        "prompts": ("a", "b"),
        "seeds": (3, 4),
    }


def test_adding_a_key_without_a_prompt_is_one_sentence(travel_window):
    ws = travel_window.explore
    ws.travel.prompt.setText("   ")
    assert ws.add_keyframe() is None
    assert "prompt" in travel_window.jobs.error.message and ws.keyframes.names() == []


def test_a_picture_dropped_on_a_diffusion_models_canvas_is_one_sentence(travel_window, tmp_path):
    ws = travel_window.explore
    assert ws.sources.add_picture(str(tmp_path / "cat.png")) is None
    assert "prompt and a seed" in travel_window.jobs.error.message and ws.keyframes.names() == []
