import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.core.errors import SpecError
from studio.core.jobs import ImageJob, LatentDecodeJob, Lane, TextJob, spec_from_dict, spec_from_json


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
