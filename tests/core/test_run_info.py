"""RunInfo: a result's typed report of its run, and the JSON it leaves in an image's `studio` chunk."""

from __future__ import annotations

import json

import numpy as np

from studio.core.events import RunInfo
from studio.core.image_metadata import save_image
from studio.core.infotext import read_settings
from studio.core.jobs import ImageJob
from studio.core.kinds import Device, Runtime
from studio.core.png import read_png_text

HASH = "0123456789abcdef" * 4


def test_to_dict_holds_only_the_fields_that_are_set():
    assert RunInfo().to_dict() == {}
    assert RunInfo(device="cpu", tokens=0, seconds=0.0).to_dict() == {"device": "cpu", "tokens": 0, "seconds": 0.0}
    assert "scheduler" not in RunInfo(scheduler="").to_dict()


def test_a_diffusers_run_writes_the_same_json_as_the_old_info_dict():
    # What diffusers_image, pipeline_jobs and the runner put in the info dict before RunInfo.
    old = {
        "device": Device.CPU,
        "runtime": Runtime.TORCH,
        "dtype": "float32",
        "model_name": "tiny-sd",
        "model_hash": HASH,
        "scheduler": "Euler a",
        "lora_hashes": {"ink": "0123456789ab", "glow": "ba9876543210"},
        "model": "tiny-sd",
        "memory_saving": "VAE tiling",
        "seconds": 1.2345,
    }
    info = RunInfo(device=Device.CPU, runtime=Runtime.TORCH, dtype="float32", model_name="tiny-sd", model_hash=HASH)
    info = info.replace(scheduler="Euler a", lora_hashes=old["lora_hashes"])
    info = info.replace(model="tiny-sd", memory_saving="VAE tiling", seconds=1.2345)
    assert json.dumps(info.to_dict(), sort_keys=True) == json.dumps(old, sort_keys=True)
    assert type(info.to_dict()["device"]) is str  # plain values, not the enums


def test_lora_hashes_keep_their_order_and_read_as_a_map():
    info = RunInfo().replace(lora_hashes={"b": "bbbbbbbbbbbb", "a": "aaaaaaaaaaaa"})
    assert info.lora_hashes == (("b", "bbbbbbbbbbbb"), ("a", "aaaaaaaaaaaa"))
    assert info.lora_hash_map() == {"b": "bbbbbbbbbbbb", "a": "aaaaaaaaaaaa"}
    assert info.to_dict() == {"lora_hashes": {"b": "bbbbbbbbbbbb", "a": "aaaaaaaaaaaa"}}


def test_a_morph_info_turns_its_sequences_into_json_lists():
    info = RunInfo(runtime="fake").replace(positions=[0.0, 0.5, 1.0], keyframes=["seed 1", "seed 2"], seed=9)
    assert info.positions == (0.0, 0.5, 1.0) and info.keyframes == ("seed 1", "seed 2")
    assert info.to_dict() == {
        "runtime": "fake",
        "positions": [0.0, 0.5, 1.0],
        "keyframes": ["seed 1", "seed 2"],
        "seed": 9,
    }


def test_a_png_written_with_a_run_info_reads_back_its_settings(tmp_path):
    spec = ImageJob(model="m", prompt="a fox", seed=9, steps=12, loras=(("ink.safetensors", 0.5),))
    info = RunInfo(model_name="m", model_hash=HASH, scheduler="DDIM", lora_hashes=(("ink", "0123456789ab"),))
    save_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8), spec, info)
    chunks = read_png_text((tmp_path / "a.png").read_bytes())
    assert json.loads(chunks["studio"])["info"] == info.to_dict()
    assert "Sampler: DDIM" in chunks["parameters"] and "Model hash: 0123456789" in chunks["parameters"]
    assert 'Lora hashes: "ink: 0123456789ab"' in chunks["parameters"]
    settings = read_settings(tmp_path / "a.png")
    assert settings.spec == spec
    assert settings.model_hash == HASH and settings.sampler == "DDIM (the model's own)"
