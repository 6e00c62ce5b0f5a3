"""Infotext (A1111) written and parsed, and settings imported from other tools' PNG metadata."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
from core.test_png import itext, png, text, ztext
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.core.errors import MetadataError, SpecError
from studio.core.image_metadata import save_image
from studio.core.infotext import ImportedSettings, a1111_parameters, describe, parse_a1111, read_settings
from studio.core.jobs import SCHEDULERS, ImageJob

TXT2IMG = ImageJob(
    model="/models/dreamy-v2.safetensors",
    prompt="a red fox in snow",
    negative_prompt="blurry",
    seed=1,
    steps=20,
    guidance_scale=7.0,
    width=64,
    height=64,
)


# --- writing ------------------------------------------------------------------------------------


def test_txt2img_infotext_is_exact():
    assert a1111_parameters(TXT2IMG) == (
        "a red fox in snow\n"
        "Negative prompt: blurry\n"
        "Steps: 20, CFG scale: 7, Seed: 1, Size: 64x64, Model: dreamy-v2, Version: studio-0.1.0"
    )


def test_no_negative_line_when_empty_and_karras_is_written_as_schedule_type():
    spec = ImageJob(
        model="emoji-sd",
        prompt="cat",
        seed=5,
        guidance_scale=6.5,
        width=512,
        height=768,
        steps=30,
        scheduler="DPM++ 2M Karras",
    )
    info = {"model_hash": "0123456789abcdef" * 4}
    assert a1111_parameters(spec, info) == (
        "cat\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 5, Size: 512x768, "
        "Model hash: 0123456789, Model: emoji-sd, Version: studio-0.1.0"
    )


def test_img2img_with_lora_and_a_value_that_needs_quoting():
    spec = ImageJob(
        model="/m/base.safetensors",
        prompt="a castle",
        seed=42,
        steps=25,
        guidance_scale=5.0,
        width=64,
        height=64,
        scheduler="Euler a",
        init_image="/canvas/abc.png",
        strength=0.35,
        loras=(("/loras/ink style.safetensors", 0.8), ("/loras/glow.safetensors", 1.0)),
    )
    info = {"model_name": "base, v2: final", "lora_hashes": {"ink style": "0123456789ab", "glow": "ba9876543210"}}
    assert a1111_parameters(spec, info) == (
        "a castle <lora:ink style:0.8> <lora:glow:1>\n"
        'Steps: 25, Sampler: Euler a, CFG scale: 5, Seed: 42, Size: 64x64, Model: "base, v2: final", '
        'Denoising strength: 0.35, Lora hashes: "ink style: 0123456789ab, glow: ba9876543210", Version: studio-0.1.0'
    )


def test_sampler_falls_back_to_what_the_backend_reports_and_newlines_are_quoted():
    spec = ImageJob(model="m", prompt="x", seed=0, width=64, height=64)
    line = a1111_parameters(spec, {"scheduler": "DPM++ 2M Karras", "model_name": "two\nlines"}).split("\n")[-1]
    assert line.startswith("Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 0")
    assert 'Model: "two\\nlines"' in line
    assert "Sampler" not in a1111_parameters(spec)  # the model's own: not claimed


def test_version_comes_from_the_package_when_it_has_one(monkeypatch):
    import studio

    monkeypatch.setattr(studio, "__version__", "9.9.9", raising=False)
    assert a1111_parameters(TXT2IMG).endswith(", Version: studio-9.9.9")


# --- parsing A1111 ------------------------------------------------------------------------------

REFERENCE = (
    "a lighthouse at dusk, (volumetric light:1.2) <lora:inkstyle:0.8>\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, Size: 832x1216, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Denoising strength: 0.35, Hires upscale: 1.5, "
    'Hires steps: 12, Hires upscaler: 4x-UltraSharp, Lora hashes: "inkstyle: 0123456789ab", Version: v1.10.1'
)


def test_parse_a1111_reference_example():
    prompt, negative, params = parse_a1111(REFERENCE)
    assert prompt == "a lighthouse at dusk, (volumetric light:1.2) <lora:inkstyle:0.8>"
    assert negative == "blurry, lowres"
    assert params == {
        "Steps": "25",
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": "6.5",
        "Seed": "1234567890",
        "Size-1": "832",
        "Size-2": "1216",
        "Model hash": "31e35c80fc",
        "Model": "sd_xl_base_1.0",
        "Denoising strength": "0.35",
        "Hires upscale": "1.5",
        "Hires steps": "12",
        "Hires upscaler": "4x-UltraSharp",
        "Lora hashes": "inkstyle: 0123456789ab",
        "Version": "v1.10.1",
    }


def test_parse_a1111_multiline_and_a_last_line_with_few_pairs_stays_prompt():
    prompt, negative, params = parse_a1111("line one\nline two: yes\nNegative prompt: bad\nworse\nSteps: 3, Seed: 4")
    assert (prompt, negative, params) == ("line one\nline two: yes", "bad\nworse\nSteps: 3, Seed: 4", {})
    assert parse_a1111("just a prompt") == ("just a prompt", "", {})


def test_parse_is_linear_on_hostile_lines():
    # findall on these takes tens of seconds; the scan must stay well under one.
    for line in ("a" * 60_000, " " * 60_000, "a b-c/d " * 8_000, 'k: "' * 15_000):
        start = time.perf_counter()
        parse_a1111("prompt\n" + line)
        assert time.perf_counter() - start < 1.0


def test_reference_example_imports_as_automatic1111():
    s = read_settings(png(text("parameters", REFERENCE)))
    assert s.source == "AUTOMATIC1111"
    assert s.prompt == "a lighthouse at dusk, (volumetric light:1.2)"  # the LoRA tag moved to loras
    assert s.loras == (("inkstyle", 0.8),)
    assert (s.negative_prompt, s.steps, s.guidance_scale, s.seed) == ("blurry, lowres", 25, 6.5, 1234567890)
    assert (s.width, s.height, s.scheduler) == (832, 1216, "DPM++ 2M Karras")
    assert (s.model, s.model_hash, s.spec) == ("sd_xl_base_1.0", "31e35c80fc", None)
    assert s.strength is None  # with hires fix, Denoising strength is the second pass's


def test_forge_is_recognised_by_its_version():
    forge = (
        "portrait photo <lora:detail:0.5> of an old sailor\n"
        "Steps: 28, Sampler: Euler a, Schedule type: Automatic, CFG scale: 1, Distilled CFG Scale: 3.5, "
        "Seed: 77, Size: 896x1152, Model hash: 7d3c0b1a2f, Model: flux1-dev-bnb-nf4-v2, "
        "Denoising strength: 0.6, Version: f2.0.1v1.10.1-previous-313-g8a042934"
    )
    s = read_settings(png(itext("parameters", forge)))
    assert s.source == "Forge"
    assert s.prompt == "portrait photo of an old sailor" and s.loras == (("detail", 0.5),)
    assert (s.scheduler, s.guidance_scale, s.seed, s.strength) == ("Euler a", 1.0, 77, 0.6)


def test_unknown_sampler_combination_is_kept_for_display_only():
    s = read_settings(png(text("parameters", "x\nSteps: 2, Sampler: DPM++ SDE, Schedule type: Exponential, Seed: 1")))
    assert s.scheduler == "" and s.sampler == "DPM++ SDE Exponential"
    assert "Sampler: DPM++ SDE Exponential (not available in Studio)" in s.text


def test_fooocus_both_schemes():
    a1111 = "a cat\nSteps: 30, Sampler: DPM++ 2M SDE Karras, CFG scale: 4, Seed: 9, Size: 1024x1024, Version: Fooocus v2.5.5"
    s = read_settings(png(text("parameters", a1111), text("fooocus_scheme", "a1111")))
    assert (s.source, s.prompt, s.steps, s.seed, s.scheduler) == ("Fooocus", "a cat", 30, 9, "")
    own = {
        "prompt": "a dog",
        "negative_prompt": "",
        "steps": 30,
        "guidance_scale": 4,
        "seed": "123",
        "resolution": "(896, 1152)",
        "sampler": "dpmpp_2m_sde_gpu",
        "scheduler": "normal",
        "base_model": "juggernautXL_v8.safetensors",
        "loras": [["sd_xl_offset.safetensors", 0.1]],
    }
    s = read_settings(png(text("parameters", json.dumps(own)), text("fooocus_scheme", "fooocus")))
    assert (s.source, s.prompt, s.seed, s.width, s.height) == ("Fooocus", "a dog", 123, 896, 1152)
    assert (s.scheduler, s.model, s.loras) == ("DPM++ 2M SDE", "juggernautXL_v8", (("sd_xl_offset", 0.1),))


# --- our own images -------------------------------------------------------------------------------


def test_writer_to_parser_round_trip(tmp_path):
    spec = ImageJob(
        model="/m/base.safetensors",
        prompt="a castle, (stone:1.1)\nat night",
        negative_prompt="fog,\nrain",
        seed=4_000_000_000,
        steps=17,
        guidance_scale=7.25,
        width=96,
        height=128,
        scheduler="DPM++ 2M Karras",
        init_image="/c/i.png",
        strength=0.6,
        loras=(("/l/ink.safetensors", -0.5),),
    )
    prompt, negative, params = parse_a1111(a1111_parameters(spec))
    assert (prompt, negative) == ("a castle, (stone:1.1)\nat night <lora:ink:-0.5>", "fog,\nrain")
    # Only infotext: what A1111 itself would read back from our file.
    s = read_settings(png(text("parameters", a1111_parameters(spec))))
    assert (s.prompt, s.negative_prompt, s.loras) == (spec.prompt, spec.negative_prompt, (("ink", -0.5),))
    assert (s.steps, s.guidance_scale, s.seed, s.width, s.height) == (17, 7.25, 4_000_000_000, 96, 128)
    assert (s.scheduler, s.strength, s.model) == ("DPM++ 2M Karras", 0.6, "base")
    # The whole file: the studio chunk gives back the exact spec.
    save_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8), spec, {"model_hash": "f" * 64})
    s = read_settings(tmp_path / "a.png")
    assert (s.source, s.spec, s.model_hash, s.model) == ("Studio", spec, "f" * 64, spec.model)
    assert s.text == describe(s) and s.text.startswith("Source: Studio\nPrompt: a castle")


def test_64_bit_seeds_read_back_and_make_a_job(tmp_path):
    """ComfyUI, Fooocus and SwarmUI draw 64-bit seeds: they are read, not dropped, and a job takes them."""
    biggest = 2**64 - 1
    spec = dataclasses.replace(TXT2IMG, seed=biggest)
    spec.validate()
    s = read_settings(png(text("parameters", a1111_parameters(spec))))
    assert s.seed == biggest
    save_image(tmp_path / "big.png", np.zeros((4, 4, 3), np.uint8), spec, {})
    assert read_settings(tmp_path / "big.png").spec == spec
    with pytest.raises(SpecError, match="`seed`"):
        dataclasses.replace(TXT2IMG, seed=2**64).validate()
    with pytest.raises(SpecError, match="no room for 2 images"):
        dataclasses.replace(TXT2IMG, seed=biggest, count=2).validate()


def test_an_invalid_studio_chunk_falls_back_to_parameters():
    bad = json.dumps({**TXT2IMG.to_dict(), "steps": 0, "info": {}})
    s = read_settings(png(text("studio", bad), text("parameters", a1111_parameters(TXT2IMG))))
    assert (s.source, s.spec, s.prompt, s.steps) == ("AUTOMATIC1111", None, "a red fox in snow", 20)
    s = read_settings(png(text("studio", "{not json"), text("parameters", a1111_parameters(TXT2IMG))))
    assert s.source == "AUTOMATIC1111"


# --- ComfyUI and InvokeAI -------------------------------------------------------------------------

COMFY = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 123456,
            "steps": 24,
            "cfg": 6.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["10", 0],
            "positive": ["12", 0],
            "negative": ["13", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/juggernaut_v9.safetensors"}},
    "10": {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "styles/pixel.safetensors",
            "strength_model": 0.7,
            "strength_clip": 1.0,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    },
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a knight", "clip": ["10", 1]}},
    "8": {"class_type": "CLIPTextEncode", "inputs": {"text": ["9", 0], "clip": ["10", 1]}},
    "9": {"class_type": "PrimitiveString", "inputs": {"value": "in armour"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "ugly", "clip": ["10", 1]}},
    "11": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["8", 0]}},
    "14": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.safetensors"}},
    "12": {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["11", 0],
            "negative": ["7", 0],
            "control_net": ["14", 0],
            "image": ["15", 0],
            "strength": 0.8,
        },
    },
    "13": {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["11", 0],
            "negative": ["7", 0],
            "control_net": ["14", 0],
            "image": ["15", 0],
            "strength": 0.8,
        },
    },
    "15": {"class_type": "LoadImage", "inputs": {"image": "edges.png"}},
    "20": {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "ComfyUI"}},
}


def test_comfyui_graph_through_combine_and_controlnet_nodes():
    s = read_settings(png(text("prompt", json.dumps(COMFY)), text("workflow", "{}")))
    assert s.source == "ComfyUI"
    assert s.prompt == "a knight\nin armour"  # both halves of the combine, the second via a primitive
    assert s.negative_prompt == "ugly"  # the ControlNet node's own negative input, not its positive
    assert (s.seed, s.steps, s.guidance_scale, s.scheduler) == (123456, 24, 6.0, "DPM++ 2M Karras")
    assert (s.width, s.height, s.strength) == (832, 1216, None)
    assert (s.model, s.loras) == ("juggernaut_v9", (("pixel", 0.7),))


def test_comfyui_custom_sampler_loops_and_bad_values():
    graph = {
        "1": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["2", 0],
                "guider": ["3", 0],
                "sampler": ["4", 0],
                "sigmas": ["5", 0],
                "latent_image": ["6", 0],
            },
        },
        "2": {"class_type": "RandomNoise", "inputs": {"noise_seed": 2**64}},  # out of range: seeds are 64-bit
        "3": {
            "class_type": "CFGGuider",
            "inputs": {"cfg": 3.5, "positive": ["7", 0], "negative": ["8", 0], "model": ["9", 0]},
        },
        "4": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "5": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 12, "denoise": 0.55}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0]}},
        "10": {"class_type": "ImageScale", "inputs": {"width": 640, "height": 480, "image": ["11", 0]}},
        "7": {"class_type": "Reroute", "inputs": {"input": ["12", 0]}},
        "12": {"class_type": "Reroute", "inputs": {"input": ["7", 0]}},  # a loop with no text
        "8": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["13", 0]}},
        "13": {"class_type": "CLIPTextEncode", "inputs": {"text": "a positive leaking into the negative"}},
        "9": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
    }
    s = read_settings(png(text("prompt", json.dumps(graph))))
    assert (s.prompt, s.negative_prompt, s.seed) == ("", "", None)
    assert (s.steps, s.guidance_scale, s.scheduler, s.strength) == (12, 3.5, "Euler", 0.55)
    assert (s.width, s.height, s.model) == (640, 480, "flux1-dev")


INVOKE = {
    "generation_mode": "txt2img",
    "positive_prompt": "a lantern festival",
    "negative_prompt": "text",
    "width": 768,
    "height": 512,
    "seed": 3141592653,
    "cfg_scale": 7.5,
    "steps": 35,
    "scheduler": "dpmpp_2m_k",
    "model": {"key": "abc", "hash": "blake3:0f0f", "name": "dreamshaper_8", "base": "sd-1", "type": "main"},
    "loras": [{"model": {"key": "k", "name": "paper_cut"}, "weight": 0.6}],
}


def test_invokeai_metadata():
    s = read_settings(png(itext("invokeai_metadata", json.dumps(INVOKE)), text("invokeai_graph", "{}")))
    assert (s.source, s.prompt, s.negative_prompt) == ("InvokeAI", "a lantern festival", "text")
    assert (s.width, s.height, s.seed, s.guidance_scale, s.steps) == (768, 512, 3141592653, 7.5, 35)
    assert (s.scheduler, s.model, s.model_hash, s.loras) == (
        "DPM++ 2M Karras",
        "dreamshaper_8",
        "blake3:0f0f",
        (("paper_cut", 0.6),),
    )


def test_wrong_types_and_ranges_are_left_out():
    data = {
        **INVOKE,
        "seed": -1,
        "steps": 5000,
        "width": "wide",
        "height": True,
        "cfg_scale": float("inf"),
        "positive_prompt": "p" * 30_000,
        "negative_prompt": ["no"],
        "model": 5,
        "loras": "nope",
    }
    s = read_settings(png(text("invokeai_metadata", json.dumps(data))))
    assert (s.seed, s.steps, s.width, s.height, s.guidance_scale) == (None, None, None, None, None)
    assert (len(s.prompt), s.negative_prompt, s.model, s.loras) == (20_000, "", "", ())


def test_no_settings_is_one_sentence_naming_the_file(tmp_path):
    path = tmp_path / "holiday.png"
    path.write_bytes(png(text("Software", "a camera"), text("prompt", "[1, 2]"), text("parameters", "  ")))
    with pytest.raises(MetadataError, match=r"^holiday\.png holds no generation parameters that Studio can read\.$"):
        read_settings(path)
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(MetadataError, match=r"^notes\.png is not a PNG, JPEG or WebP file\.$"):
        read_settings(tmp_path / "notes.png")


def test_describe_is_plain_text_without_control_characters():
    s = ImportedSettings(
        source="ComfyUI",
        prompt="red\x1b[2Jcat\rx",
        negative_prompt="",
        steps=4,
        seed=9,
        width=64,
        height=32,
        guidance_scale=2.0,
        loras=(("a", 0.5),),
    )
    assert describe(s) == (
        "Source: ComfyUI\nPrompt: red\ufffd[2Jcat\ufffdx\nSteps: 4\nCFG scale: 2\nSeed: 9\nSize: 64x32\nLoRAs: a (0.5)"
    )


# --- anything at all ----------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
_node_ids = st.sampled_from(["1", "2", "3", "4", 5, "x"])
_links = st.tuples(_node_ids, st.integers(0, 2)).map(list)
_inputs = st.dictionaries(
    st.sampled_from(
        [
            "seed",
            "noise_seed",
            "steps",
            "cfg",
            "positive",
            "negative",
            "conditioning",
            "text",
            "latent_image",
            "model",
            "width",
            "height",
            "denoise",
            "guider",
            "sigmas",
            "ckpt_name",
            "lora_name",
            "sampler_name",
            "scheduler",
            "value",
        ]
    ),
    _links | _json_values,
    max_size=8,
)
_graphs = st.dictionaries(
    _node_ids.map(str),
    st.fixed_dictionaries(
        {
            "class_type": st.sampled_from(
                [
                    "KSampler",
                    "SamplerCustomAdvanced",
                    "CLIPTextEncode",
                    "ConditioningCombine",
                    "LoraLoader",
                    "CheckpointLoaderSimple",
                    "EmptyLatentImage",
                    "CFGGuider",
                    "x",
                ]
            ),
            "inputs": _inputs,
        }
    )
    | _json_values,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["parameters", "prompt", "invokeai_metadata", "studio"]),
    st.one_of(st.text(max_size=300), _json_values.map(json.dumps), _graphs.map(json.dumps)),
    st.booleans(),
)
def test_random_metadata_only_raises_metadata_error(key, value, fooocus):
    chunks = [itext(key, value), ztext("fooocus_scheme", b"fooocus")] if fooocus else [itext(key, value)]
    try:
        s = read_settings(png(*chunks))
    except MetadataError as exc:
        assert "no generation parameters" in exc.message
    else:
        assert s.seed is None or 0 <= s.seed < 2**64
        assert s.width is None or 8 <= s.width <= 4096
        assert s.scheduler == "" or s.scheduler in SCHEDULERS
        assert isinstance(s.text, str) and s.text.startswith("Source: ")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parse_a1111_never_raises(value):
    prompt, negative, params = parse_a1111(value)
    assert isinstance(prompt, str) and isinstance(negative, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())


def test_swarmui_json_is_its_own_not_fooocus_and_wins_over_its_comfy_graph():
    params = {
        "sui_image_params": {
            "prompt": "a fox \n",
            "negativeprompt": "fog, ",
            "model": "base_v1",
            "seed": 2083100758,
            "steps": 20,
            "cfgscale": 7.0,
            "width": 1024,
            "height": 768,
            "sampler": "euler_ancestral",
            "scheduler": "karras",
        },
        "sui_models": [{"name": "base_v1.safetensors", "param": "model", "hash": "0x22d8"}],
    }
    graph = {"1": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 3}}}
    s = read_settings(png(text("prompt", json.dumps(graph)), text("parameters", json.dumps(params))))
    assert (s.source, s.prompt, s.negative_prompt, s.model, s.model_hash) == (
        "SwarmUI",
        "a fox",
        "fog,",
        "base_v1",
        "0x22d8",
    )
    assert (s.seed, s.steps, s.guidance_scale, s.width, s.height) == (2083100758, 20, 7.0, 1024, 768)
    assert s.sampler == "euler_ancestral / karras"


def test_novelai_chunks_in_a_png_and_wrapped_in_a_webps_exif():
    comment = {
        "prompt": "1girl, #テスト",
        "steps": 28,
        "height": 1216,
        "width": 832,
        "scale": 5.0,
        "seed": 2043807047,
        "noise_schedule": "karras",
        "sampler": "k_euler_ancestral",
        "v4_negative_prompt": {"caption": {"base_caption": "lowres"}},
    }
    chunks = {"Software": "NovelAI", "Source": "NovelAI Diffusion V4.5 4BDE2A90", "Comment": json.dumps(comment)}
    from_png = read_settings(png(*(text(k, v) for k, v in chunks.items())))
    from_webp = read_settings(png(text("parameters", json.dumps(chunks))))  # the WebP's EXIF holds them as JSON
    for s in (from_png, from_webp):
        assert (s.source, s.prompt, s.negative_prompt, s.model) == (
            "NovelAI",
            "1girl, #テスト",
            "lowres",
            "NovelAI Diffusion V4.5",
        )
        assert (s.steps, s.guidance_scale, s.seed, s.width, s.height) == (28, 5.0, 2043807047, 832, 1216)
        assert s.sampler == "k_euler_ancestral / karras"


def test_json_settings_under_other_tools_names():
    """RuinedFooocus and diffusers apps (Hugging Face spaces) name Fooocus's fields their own way."""
    ruined = {
        "Prompt": "a fox ",
        "Negative": "fog, ",
        "steps": 30,
        "cfg": 8,
        "width": 1024,
        "height": 768,
        "seed": 2020047614,
        "sampler_name": "dpmpp_2m_sde_gpu",
        "scheduler": "karras",
        "base_model_name": "base_v1.safetensors",
        "software": "RuinedFooocus",
    }
    s = read_settings(png(text("parameters", json.dumps(ruined))))
    assert (s.source, s.prompt, s.negative_prompt, s.guidance_scale, s.width, s.height) == (
        "RuinedFooocus",
        "a fox",
        "fog,",
        8.0,
        1024,
        768,
    )
    assert s.sampler == "dpmpp_2m_sde_gpu / karras" and s.model == "base_v1"
    space = {
        "prompt": "a fox",
        "resolution": "1024 x 768",
        "guidance_scale": 5.5,
        "num_inference_steps": 24,
        "seed": 443800072,
        "sampler": "DPM++ 2M Karras",
        "Model": "Some SDXL v16",
        "Model hash": "BDB5",
    }
    s = read_settings(png(text("parameters", json.dumps(space))))
    assert (s.source, s.steps, s.scheduler, s.model, s.model_hash) == (
        "diffusers app",
        24,
        "DPM++ 2M Karras",
        "Some SDXL v16",
        "BDB5",
    )


def test_civitai_graph_with_its_extra_metadata():
    extra = {
        "prompt": "a fox",
        "negativePrompt": "fog, \n",
        "steps": 25,
        "cfgScale": 5,
        "sampler": "Euler a",
        "seed": 7,
    }
    upscale_only = {
        "22": {"class_type": "ImageUpscaleWithModel", "inputs": {"image": ["26", 0]}},
        "26": {"class_type": "LoadImage", "inputs": {"image": "https://example/x.jpeg"}},
        "extraMetadata": json.dumps({**extra, "width": 1024, "height": 1024}),
    }
    s = read_settings(png(text("parameters", json.dumps(upscale_only))))
    assert (s.source, s.prompt, s.negative_prompt, s.steps, s.seed, s.scheduler, s.width) == (
        "Civitai",
        "a fox",
        "fog,",
        25,
        7,
        "Euler a",
        1024,
    )
    graph = {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 7,
                "steps": 25,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 0.3,
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1536, "height": 1536, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "fog,"}},
        "extraMetadata": json.dumps(extra),
    }
    s = read_settings(png(text("parameters", json.dumps(graph))))
    assert (s.source, s.width, s.strength, s.prompt) == ("Civitai", 1536, 0.3, "a fox")  # the graph wins


def test_prompts_in_custom_text_nodes_are_followed():
    graph = {
        "1": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": 20,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
            },
        },
        "2": {"class_type": "Power Prompt (rgthree)", "inputs": {"prompt": "a fox", "opt_clip": ["9", 0]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": ["4", 0]}},
        "4": {"class_type": "DF_Text_Box", "inputs": {"Text": "fog"}},
    }
    s = read_settings(png(text("prompt", json.dumps(graph))))
    assert (s.prompt, s.negative_prompt) == ("a fox", "fog")
