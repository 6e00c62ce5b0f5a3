import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.core.errors import SpecError
from studio.core.job_fields import field_rules
from studio.core.jobs import (
    SPEC_TYPES,
    ContextJob,
    DiffusionSettings,
    ExportJob,
    ImageJob,
    JobSpec,
    Lane,
    LatentBatchJob,
    LatentDecodeJob,
    MorphJob,
    TextJob,
    spec_from_dict,
    spec_from_json,
)
from studio.core.story import StoryContext


@pytest.mark.parametrize(
    "spec, field",
    [
        (ImageJob(model=""), "model"),
        (ImageJob(model="m", width=100), "width"),
        (ImageJob(model="m", height=4), "height"),
        (ImageJob(model="m", steps=0), "steps"),
        (ImageJob(model="m", seed=-1), "seed"),
        (ImageJob(model="m", guidance_scale=float("nan")), "guidance_scale"),
        (ImageJob(model="m", device="tpu"), "device"),
        (ImageJob(model="m", runtime="tensorflow"), "runtime"),
        (TextJob(model="m", max_new_tokens=0), "max_new_tokens"),
        (TextJob(model="m", top_p=0.0), "top_p"),
        (TextJob(model="m", temperature=-1), "temperature"),
        (LatentDecodeJob(model="m", latent=()), "latent"),
        (LatentDecodeJob(model="m", latent=(1.0, float("inf"))), "latent"),
    ],
)
def test_a_bad_field_is_named_in_one_sentence(spec, field):
    with pytest.raises(SpecError) as info:
        spec.validate()
    assert info.value.field == field
    assert f"`{field}`" in str(info.value)
    assert "\n" not in str(info.value)


def test_specs_are_frozen_and_comparable():
    a = ImageJob(model="m", prompt="a cat", seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.seed = 4  # type: ignore[misc]
    assert a == ImageJob(model="m", prompt="a cat", seed=3)
    assert a != dataclasses.replace(a, seed=4)


def test_lanes():
    assert ImageJob.lane is Lane.BATCH and TextJob.lane is Lane.BATCH
    assert LatentDecodeJob.lane is Lane.INTERACTIVE


@given(
    prompt=st.text(max_size=50),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 100),
    w=st.integers(1, 64).map(lambda v: v * 8),
)
def test_image_spec_round_trips_through_json(prompt, seed, steps, w):
    spec = ImageJob(model="m", prompt=prompt, seed=seed, steps=steps, width=w, height=64)
    assert spec_from_json(spec.to_json()) == spec


def test_latent_spec_round_trips_through_json():
    spec = LatentDecodeJob(model="m", latent=(0.5, -1.25, 3.0))
    assert spec_from_json(spec.to_json()) == spec


def test_untrusted_json_gets_one_sentence():
    with pytest.raises(SpecError, match="`kind`"):
        spec_from_dict({"kind": "rm -rf", "model": "m"})
    with pytest.raises(SpecError, match="`kind`"):
        spec_from_dict({"kind": [], "model": "m"})
    with pytest.raises(SpecError, match="`spec`"):
        spec_from_dict(["not", "an", "object"])
    with pytest.raises(SpecError, match="`evil`"):
        spec_from_dict({"kind": "image", "model": "m", "evil": 1})
    with pytest.raises(SpecError, match="`steps`"):
        spec_from_dict({"kind": "image", "model": "m", "steps": "many"})
    with pytest.raises(SpecError, match="not valid JSON"):
        spec_from_json("{nope")


def test_latents_from_numpy_become_plain_floats():
    import numpy as np

    spec = LatentDecodeJob(model="m", latent=np.array([0.5, -1.0], dtype=np.float32))
    spec.validate()
    assert spec.latent == (0.5, -1.0) and all(type(v) is float for v in spec.latent)
    assert spec_from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match="`latent`"):
        LatentDecodeJob(model="m", latent=("a", 1.0)).validate()


def test_text_titles_show_the_end_of_the_prompt_from_a_word_start():
    title = TextJob(model="m", prompt="The quiet river ran under a lantern moon, and the boats drifted by").title
    assert title.startswith("text · …") and title.endswith("drifted by")
    assert title.split("…", 1)[1].split(" ")[0] in "The quiet river ran under a lantern moon, and the boats".split()


# Written by the studio before the bounds became declarative (MorphJob still copied ImageJob's
# fields): the `studio` chunk of images on people's disks. They must read back, and write the same.
OLD_JSON = [
    '{"device": "auto", "frames": 12, "guidance_scale": 7.0, "height": 64, "kind": "morph", "latents": [], '
    '"method": "slerp", "model": "emoji-sd", "negative_prompt": "", "prompt": "", "prompts": ["a cat", "a dog"], '
    '"runtime": "auto", "scheduler": "DDIM", "seed": 0, "seeds": [3, 4], "spacing": "uniform", "steps": 8, '
    '"width": 64}',
    '{"count": 1, "device": "auto", "guidance_scale": 7.0, "height": 64, "init_image": "in.png", "kind": "image", '
    '"loras": [["a.safetensors", 0.8]], "mask": "", "model": "emoji-sd", "negative_prompt": "", "prompt": "a cat", '
    '"runtime": "auto", "scheduler": "", "seed": 7, "steps": 12, "strength": 0.5, "width": 64}',
    '{"banned": ["dragon"], "device": "auto", "dry_allowed_length": 2, "dry_base": 1.75, "dry_multiplier": 0.0, '
    '"instruct": false, "kind": "text", "max_new_tokens": 8, "min_p": 0.0, "model": "prose", "prompt": "Once", '
    '"repetition_penalty": 1.0, "repetition_range": 0, "runtime": "auto", "seed": 0, "stop": ["\\n\\n"], '
    '"story": null, "temperature": 0.8, "top_k": 0, "top_p": 1.0}',
    '{"device": "auto", "instruct": true, "kind": "text-context", "max_new_tokens": 64, "model": "prose", '
    '"prompt": "", "runtime": "auto", "story": {"authors_note": "", "authors_note_depth": 80, "memory": "", '
    '"text": "Once", "world_info": []}}',
]


def test_specs_older_versions_wrote_read_back_and_write_the_same_json():
    specs = [spec_from_json(text) for text in OLD_JSON]
    assert specs[0] == MorphJob(
        model="emoji-sd",
        prompts=("a cat", "a dog"),
        seeds=(3, 4),
        frames=12,
        spacing="uniform",
        steps=8,
        width=64,
        height=64,
        scheduler="DDIM",
    )
    assert specs[1] == ImageJob(
        model="emoji-sd",
        prompt="a cat",
        seed=7,
        steps=12,
        width=64,
        height=64,
        init_image="in.png",
        strength=0.5,
        loras=(("a.safetensors", 0.8),),
    )
    assert specs[2] == TextJob(model="prose", prompt="Once", stop=("\n\n",), banned=("dragon",), max_new_tokens=8)
    assert specs[3] == ContextJob(model="prose", story=StoryContext(text="Once"), instruct=True)
    # Written again, they say the same, plus the fields added since, at their defaults (which is
    # what reading them back gave): XTC came after these were written.
    added = [{}, {}, {"xtc_threshold": 0.1, "xtc_probability": 0.0}, {}]
    assert [json.loads(spec.to_json()) for spec in specs] == [
        {**json.loads(old), **new} for old, new in zip(OLD_JSON, added)
    ]


def test_every_field_declares_its_bounds():
    # A field added without a rule would go unchecked: spec_from_dict takes it from any image.
    for spec_type in SPEC_TYPES.values():
        missing = set(f.name for f in dataclasses.fields(spec_type)) - set(field_rules(spec_type))
        assert not missing, f"{spec_type.__name__} fields without bounds: {missing}"


def test_a_morph_shares_an_image_jobs_diffusion_settings():
    shared = {f.name for f in dataclasses.fields(DiffusionSettings)} - {f.name for f in dataclasses.fields(JobSpec)}
    assert shared == {"prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "scheduler"}
    for name in shared:  # one declaration: the same default and the same rule
        assert getattr(MorphJob(model="m"), name) == getattr(ImageJob(model="m"), name)
        assert field_rules(MorphJob)[name] is field_rules(ImageJob)[name]
    for bad in ({"width": 100}, {"steps": 0}, {"scheduler": "LMS"}, {"guidance_scale": float("nan")}):
        ((name, value),) = bad.items()
        with pytest.raises(SpecError) as image_error:
            ImageJob(model="m", **bad).validate()
        with pytest.raises(SpecError) as morph_error:
            MorphJob(model="m", seeds=(1, 2), **bad).validate()
        assert morph_error.value.field == name and str(morph_error.value) == str(image_error.value)


@pytest.mark.parametrize(
    "spec, field, message",
    [
        (ImageJob(model="m", width=100), "width", "must be divisible by 8, not 100."),
        (
            ImageJob(model="m", scheduler=None),
            "scheduler",
            "must be one of Euler, Euler a, DPM++ 2M, DPM++ 2M Karras, DDIM, UniPC, Heun, DPM++ 2M SDE, not None.",
        ),
        (ImageJob(model="m", loras=[["a.safetensors", 11]]), "loras", "must be between -10.0 and 10.0, not 11."),
        (ImageJob(model="m", mask="m.png"), "mask", "needs an init_image to paint into."),
        (
            TextJob(model="m", stop=["x" * 201]),
            "stop",
            f"must hold non-empty texts of at most 200 characters, not '{'x' * 58}….",
        ),
        (
            ContextJob(model="m", prompt="a", story=StoryContext(text="b")),
            "prompt",
            "must be empty when a story is given: the story is the prompt.",
        ),
        (MorphJob(model="m", seeds=(1,)), "seeds", "must give at least two keyframes to morph between."),
        (MorphJob(model="m", seeds="12"), "seeds", "must be a list."),
        (LatentBatchJob(model="m"), "latents", "must be a list of 1 to 256 latent vectors."),
        (ExportJob(model="m", out=3), "out", "must be a folder path, not 3."),
    ],
)
def test_each_rule_says_its_own_sentence(spec, field, message):
    with pytest.raises(SpecError) as info:
        spec.validate()
    assert (info.value.field, str(info.value)) == (field, f"`{field}` {message}")
