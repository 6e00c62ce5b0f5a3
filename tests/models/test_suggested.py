"""A model's suggested settings (ModelInfo.suggested): read once, from its configs and studio.json,
and only what an image job can take."""

import json
import logging
import math

import pytest

from studio.models import formats
from studio.models.registry import ModelRegistry, Suggested

from fake_models import write_fake_model


def _model(tmp_path, **manifest):
    write_fake_model(tmp_path / "models" / "m", "image", **manifest)
    return ModelRegistry([(tmp_path / "models", "user")]).resolve("m")


def test_a_good_manifest_gives_its_size_steps_and_guidance(tmp_path):
    model = _model(tmp_path, image_size=96, defaults={"steps": 13, "guidance_scale": 4.5, "prompt_template": "{label}"})
    assert model.suggested == Suggested(size=96, steps=13, guidance_scale=4.5)
    assert model.default_size == 96
    whole = _model(tmp_path, defaults={"guidance_scale": 5})  # a whole number is a guidance scale too
    assert whole.suggested == Suggested(size=512, steps=None, guidance_scale=5.0)
    assert type(whole.suggested.guidance_scale) is float


def test_a_diffusers_folder_suggests_the_size_its_configs_give(tmp_path):
    folder = tmp_path / "models" / "sd"
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": 32}))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [1, 2, 3, 4]}))
    model = ModelRegistry([(tmp_path / "models", "user")]).resolve("sd")
    assert model.suggested == Suggested(size=256, steps=None, guidance_scale=None)


@pytest.mark.parametrize(
    "defaults",
    [
        {"steps": "20", "guidance_scale": "7"},
        {"steps": True, "guidance_scale": False},
        {"steps": 12.0, "guidance_scale": [7]},
        {"steps": 0, "guidance_scale": -1},  # out of an image job's bounds
        {"steps": 1001, "guidance_scale": math.inf},
        {"steps": None, "guidance_scale": None},
    ],
)
def test_suggestions_of_the_wrong_type_or_out_of_bounds_are_ignored(tmp_path, defaults, caplog):
    with caplog.at_level(logging.WARNING, logger="studio.models.registry"):
        model = _model(tmp_path, image_size=64, defaults=defaults)
        assert model.suggested == Suggested(size=64, steps=None, guidance_scale=None)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == sum(v is not None for v in defaults.values())  # one line per value left out, none for absent
    assert all(line.startswith("m: studio.json suggests ") for line in said)


@pytest.mark.parametrize("defaults", [["steps", 4], "steps=4", 4])
def test_defaults_that_are_not_an_object_suggest_nothing(tmp_path, defaults):
    assert _model(tmp_path, defaults=defaults).suggested == Suggested(size=512)


def test_the_suggestion_is_read_once(tmp_path, monkeypatch):
    model = _model(tmp_path, image_size=48, defaults={"steps": 9})
    reads = []
    real = formats.default_image_size
    monkeypatch.setattr(formats, "default_image_size", lambda *a: reads.append(a) or real(*a))
    assert [model.suggested.steps, model.default_size, model.default_size, model.suggested.size] == [9, 48, 48, 48]
    assert len(reads) == 1
