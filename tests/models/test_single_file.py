"""Single-file Stable Diffusion checkpoints: the CLIP tokenizer we ship, family detection from the
header alone, one sentence per broken file, and offline loading that gives back every tensor."""

import gzip
import hashlib
import json
import re
import sys
import zipfile

import pytest

from studio.core.errors import ModelFileError
from studio.engine.backends.diffusion.single_file_pipeline import CONFIG_ROOT
from studio.models import formats
from studio.models.clip_tokenizer import MERGES_FILE, TOKENIZER_DIR, load_clip_tokenizer
from studio.models.clip_tokenizer import main as tokenizer_main
from studio.models.registry import ModelRegistry
from studio.models.single_file import detect_family, inspect_checkpoint

import fake_checkpoints as fc

PROMPT = "a photo of a cat"


# ---------------------------------------------------------------------------------------------
# The CLIP tokenizer
# ---------------------------------------------------------------------------------------------


def test_the_clip_tokenizer_gives_clips_well_known_ids_and_decodes_back():
    tokenizer = load_clip_tokenizer()
    ids = tokenizer(PROMPT)["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.decode(ids, skip_special_tokens=True) == PROMPT
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    padded = tokenizer("a cat", padding="max_length", max_length=77)["input_ids"]
    assert len(padded) == 77 and padded[3:5] == [49407, 49407]  # SD 1.x pads with <|endoftext|>
    openclip = load_clip_tokenizer(pad_token="!")  # SD 2.x and SDXL's second encoder pad with "!"
    assert openclip("a cat", padding="max_length", max_length=6)["input_ids"] == [49406, 320, 2368, 49407, 0, 0]


def test_derive_rebuilds_the_shipped_merges_from_a_wheel(tmp_path, capsys):
    # A stand-in for the open_clip_torch wheel: the BPE file's own first line, our merges, then the
    # merges CLIP never uses (the real file has 262145 lines).
    merges = MERGES_FILE.read_text(encoding="utf-8").splitlines()[1:]
    text = "\n".join(['"bpe_simple_vocab_16e6.txt#version: 0.2', *merges, "x y", "z w</w>"]) + "\n"
    wheel = tmp_path / "open_clip_torch-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("open_clip/bpe_simple_vocab_16e6.txt.gz", gzip.compress(text.encode()))
    assert tokenizer_main(["derive", str(wheel), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "merges.txt").read_bytes() == MERGES_FILE.read_bytes()
    assert "48894 merges" in capsys.readouterr().out
    # The README records the shipped file's hash; a changed file must change the README too.
    readme = (TOKENIZER_DIR / "README.md").read_text()
    assert hashlib.sha256(MERGES_FILE.read_bytes()).hexdigest() in readme


# ---------------------------------------------------------------------------------------------
# The shipped configs
# ---------------------------------------------------------------------------------------------

# Parameter counts of the published models (UNet, VAE, text encoder(s)).
PUBLISHED = {
    "sd15": (859_520_964, 83_653_863, (123_060_480,)),
    "sd15-inpaint": (859_535_364, 83_653_863, (123_060_480,)),
    "sd2": (865_910_724, 83_653_863, (340_387_840,)),  # OpenCLIP ViT-H text without its last block
    "sdxl": (2_567_463_684, 83_653_863, (123_060_480, 694_659_840)),
}


def meta_components(family):
    """The family's UNet, VAE and text encoders built from the shipped configs, without memory."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = CONFIG_ROOT / family
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        texts = [CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))]
        if (folder / "text_encoder_2").is_dir():
            texts.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2"))))
    return unet, vae, texts


@pytest.mark.parametrize("family", sorted(PUBLISHED))
def test_the_shipped_configs_build_the_published_architectures(family):
    unet, vae, texts = meta_components(family)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(unet), count(vae), tuple(count(t) for t in texts)) == PUBLISHED[family]
    index = json.loads((CONFIG_ROOT / family / "model_index.json").read_text())
    assert index["_class_name"] == {
        "sdxl": "StableDiffusionXLPipeline",
        "sd15-inpaint": "StableDiffusionInpaintPipeline",
    }.get(family, "StableDiffusionPipeline")


def full_size_checkpoint(path, family):
    """Every tensor name and shape a real checkpoint of the family has (the shipped configs' models,
    renamed to the original layout), zeros behind them, as a sparse file (up to 7 GB for SDXL)."""
    if sys.platform == "win32":
        pytest.skip("needs sparse files")
    unet, vae, texts = meta_components(family)
    state = {**fc.unet_to_ldm(unet.state_dict(), unet.config), **fc.vae_to_ldm(vae.state_dict(), vae.config)}
    if family == "sdxl":
        state.update(fc.clip_to_ldm(texts[0].state_dict(), "conditioner.embedders.0.transformer."))
        state.update(fc.openclip_to_ldm(texts[1].state_dict(), "conditioner.embedders.1.model."))
    elif family == "sd2":
        state.update(fc.openclip_to_ldm(texts[0].state_dict(), "cond_stage_model.model."))
    else:
        state.update(fc.clip_to_ldm(texts[0].state_dict(), "cond_stage_model.transformer."))
    return fc.write_header_only(path, {k: v.shape for k, v in state.items()})


@pytest.mark.parametrize("family", sorted(PUBLISHED))
def test_a_full_size_checkpoint_header_is_detected(tmp_path, family):
    found = inspect_checkpoint(full_size_checkpoint(tmp_path / f"{family}-model.safetensors", family))
    assert (found.family, found.image_size) == (family, {"sdxl": 1024, "sd2": 768}.get(family, 512))
    assert found.prediction_type == ("v_prediction" if family == "sd2" else "epsilon")


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(PUBLISHED))
def test_a_full_size_checkpoint_loads_against_the_shipped_configs(tmp_path, family, no_sockets):
    """The real configs and tokenizers, a full-size (zero-filled, memory-mapped) file: 4 s for SD 1.5,
    about 20 s for SDXL on a laptop CPU, and little memory (fp16 straight from the mapping)."""
    import torch

    from studio.engine.backends.diffusion.single_file_pipeline import PIPELINES, load_single_file_pipeline

    path = full_size_checkpoint(tmp_path / f"{family}.safetensors", family)
    pipe = load_single_file_pipeline(path, family, torch.float16)
    assert type(pipe).__name__ == PIPELINES[family]
    unet, vae, texts = PUBLISHED[family]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(pipe.unet), count(pipe.vae)) == (unet, vae)
    assert pipe.tokenizer(PROMPT)["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert no_sockets == []


# ---------------------------------------------------------------------------------------------
# Detection from small synthetic headers
# ---------------------------------------------------------------------------------------------

UNET = "model.diffusion_model."
VAE_KEY = {"first_stage_model.encoder.conv_in.weight": (1, 3, 3, 3)}


def sd_header(text, context, channels=4, extra=None):
    shapes = {
        UNET + "input_blocks.0.0.weight": (1, channels, 1, 1),
        UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (1, context),
        **VAE_KEY,
        **text,
    }
    return {**shapes, **(extra or {})}


SD1_TEXT = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (1, 768)}
SD2_TEXT = {
    "cond_stage_model.model.token_embedding.weight": (1, 1024),
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (3, 1),
}
XL_TEXT = {
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (1, 768),
    "conditioner.embedders.1.model.token_embedding.weight": (1, 1280),
    "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": (3, 1),
}


@pytest.mark.parametrize(
    "name, shapes, family",
    [
        ("sd15.safetensors", sd_header(SD1_TEXT, 768), "sd15"),
        ("sd15-inpainting.safetensors", sd_header(SD1_TEXT, 768, channels=9), "sd15-inpaint"),
        ("sd21.safetensors", sd_header(SD2_TEXT, 1024), "sd2"),
        ("sdxl.safetensors", sd_header(XL_TEXT, 2048), "sdxl"),
        (
            "kohya-lora.safetensors",
            {
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 8),
                "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": (),
            },
            "lora",
        ),
        ("peft-lora.safetensors", {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": (4, 8)}, "lora"),
        ("lycoris.safetensors", {"lora_unet_mid_block_attentions_0_proj_in.hada_w1_a": (4, 8)}, "lora"),
        ("ldm-named-lora.safetensors", {UNET + "input_blocks.1.1.proj_in.lora_down.weight": (4, 8)}, "lora"),
    ],
)
def test_the_family_comes_from_the_header(tmp_path, name, shapes, family):
    assert detect_family(fc.write_header_only(tmp_path / name, shapes)) == family


@pytest.mark.parametrize(
    "name, metadata, tensors, expected",
    [
        ("v2-1_768-ema-pruned.safetensors", None, {}, ("v_prediction", 768)),
        ("v2-1_512-ema-pruned.safetensors", None, {}, ("epsilon", 512)),
        ("my-sd2-finetune.safetensors", {"modelspec.prediction_type": "epsilon"}, {}, ("epsilon", 512)),
        (
            "my-sd2-finetune.safetensors",
            {"ss_v_parameterization": "True", "modelspec.resolution": "640x640"},
            {},
            ("v_prediction", 640),
        ),
        ("my-sd2-finetune.safetensors", None, {"v_pred": ()}, ("v_prediction", 768)),
    ],
)
def test_sd2_prediction_type_and_size_come_from_metadata_then_the_name(tmp_path, name, metadata, tensors, expected):
    path = fc.write_header_only(tmp_path / name, sd_header(SD2_TEXT, 1024, extra=tensors), metadata)
    found = inspect_checkpoint(path)
    assert (found.family, found.prediction_type, found.image_size) == ("sd2", *expected)


def test_formats_and_the_registry_list_checkpoints_as_images_and_loras_apart(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    fc.write_header_only(root / "dreamy-xl.safetensors", sd_header(XL_TEXT, 2048))
    fc.write_header_only(root / "style.safetensors", {"lora_unet_x.lora_up.weight": (8, 4)})
    (root / "half-copied.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    detected = formats.detect(root / "dreamy-xl.safetensors")
    assert (detected.kind, detected.format, detected.runtimes) == ("image", "sd-single-file", ("torch",))
    assert detected.manifest["family"] == "sdxl"
    assert formats.detect(root / "style.safetensors") == formats.Detected("lora", "lora", ("torch",))
    registry = ModelRegistry([(root, "user")])
    assert [m.id for m in registry.models("image")] == ["dreamy-xl"]
    assert [m.id for m in registry.models("lora")] == ["style"]
    assert registry.resolve("dreamy-xl").default_size == 1024
    assert [(p.path.name, p.message) for p in registry.problems] == [
        ("half-copied.safetensors", "half-copied.safetensors is incomplete: check its size and copy it again.")
    ]


# ---------------------------------------------------------------------------------------------
# One sentence per broken or unwanted file
# ---------------------------------------------------------------------------------------------


def sentence(path):
    with pytest.raises(ModelFileError) as info:
        detect_family(path)
    message = info.value.message
    assert "\n" not in message and message.endswith(".")
    return message


def test_a_truncated_checkpoint_is_incomplete(tmp_path):
    whole = fc.write_header_only(tmp_path / "whole.safetensors", sd_header(SD1_TEXT, 768))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[:-10])
    assert sentence(cut) == "cut.safetensors is incomplete: check its size and copy it again."


@pytest.mark.parametrize("content", [b"PK\x03\x04" + b"\0" * 60, b"\x80\x02\x8a\x0alZ\xfc\x9cF\xf9 j\xa8P\x19."])
def test_a_pickle_renamed_to_safetensors_is_named(tmp_path, content):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    assert sentence(path) == (
        "model.safetensors is a pickle file renamed to .safetensors, which could run code when loaded; the studio "
        "loads only real .safetensors files; convert it once with `studio convert PATH --out NEW.safetensors` "
        "(only its tensors are read, nothing in it runs), or find the .safetensors release."
    )


def test_a_git_lfs_pointer_is_named(tmp_path):
    path = tmp_path / "sd.safetensors"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 4265146304\n")
    assert sentence(path) == (
        "sd.safetensors is a Git LFS pointer, not the model: run git lfs pull in the repository it came from "
        "(or download the file itself) and copy it again."
    )


def test_a_web_page_saved_as_safetensors_is_named(tmp_path):
    path = tmp_path / "sd.safetensors"
    path.write_text("\n<!DOCTYPE html>\n<html lang=en><head><title>Hugging Face</title></head></html>")
    assert sentence(path) == (
        "sd.safetensors is a web page saved under a model's name, not the model: download the file itself "
        "(the download link, not the page) and copy it again."
    )


def test_an_unknown_family_says_what_its_tensors_look_like(tmp_path):
    path = fc.write_header_only(
        tmp_path / "upscaler.safetensors",
        {
            "conv_first.weight": (4, 3, 3, 3),
            "body.0.rdb1.conv1.weight": (4, 4, 3, 3),
            "conv_last.weight": (3, 4, 3, 3),
            "conv_up1.weight": (4, 4, 3, 3),
        },
    )
    assert sentence(path) == (
        "upscaler.safetensors is not a Stable Diffusion 1.x/2.x/XL checkpoint (its tensors are named like "
        "'body.0.rdb1.conv1.weight', 'conv_first.weight', 'conv_last.weight', …)."
    )


@pytest.mark.parametrize(
    "shapes, words",
    [
        (sd_header(SD1_TEXT, 1024), "mixes parts of different models"),
        (sd_header(SD2_TEXT, 1024, channels=9), "Stable Diffusion 2.x inpainting checkpoint"),
        (sd_header(SD1_TEXT, 768, channels=8), "takes 8 input channels"),
        ({UNET + "input_blocks.0.0.weight": (1, 4, 1, 1), **VAE_KEY}, "no text encoder"),
        ({k: v for k, v in sd_header(SD1_TEXT, 768).items() if not k.startswith("first_stage")}, "no VAE"),
        (sd_header({"conditioner.embedders.0.model.token_embedding.weight": (1, 1280)}, 1280), "SDXL base"),
    ],
)
def test_checkpoints_the_studio_cannot_run_say_why(tmp_path, shapes, words):
    assert words in sentence(fc.write_header_only(tmp_path / "odd.safetensors", shapes))


# ---------------------------------------------------------------------------------------------
# Loading, offline, and getting every tensor back
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sd1(tmp_path_factory):
    """A tiny SD 1.x pipeline three ways: in memory, as a diffusers folder, as one LDM-layout file."""
    root = tmp_path_factory.mktemp("tiny-sd1")
    pipe = fc.tiny_sd1_pipeline()
    pipe.save_pretrained(str(root / "folder"), safe_serialization=True)
    fc.write_config_root(root / "folder", root / "configs", "sd15")
    return pipe, root / "folder", fc.save_single_file(pipe, root / "tiny-sd15.safetensors"), root / "configs"


def assert_same_weights(original, loaded, components):
    import torch

    for name in components:
        want, got = getattr(original, name).state_dict(), getattr(loaded, name).state_dict()
        assert set(got) == set(want), name
        different = [k for k in want if not torch.equal(want[k], got[k])]
        assert different == [], f"{name}: {different[:3]}"


def generate(pipe, **extra):
    import torch

    return pipe(
        prompt=PROMPT,
        num_inference_steps=2,
        width=64,
        height=64,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(7),
        output_type="np",
        **extra,
    ).images[0]


def test_an_sd1_checkpoint_loads_offline_with_every_tensor_and_draws_the_same_image(tiny_sd1, no_sockets):
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.engine.backends.diffusion.single_file_pipeline import load_single_file_pipeline

    original, folder, path, configs = tiny_sd1
    assert detect_family(path) == "sd15"
    pipe = load_single_file_pipeline(path, "sd15", torch.float32, config_root=configs)
    assert type(pipe) is StableDiffusionPipeline
    assert_same_weights(original, pipe, ("unet", "vae", "text_encoder"))
    assert pipe.tokenizer(PROMPT)["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    from_folder = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    image = generate(pipe)
    assert image.shape == (64, 64, 3)
    np.testing.assert_array_equal(image, generate(from_folder))
    assert no_sockets == []


def test_the_loader_uses_the_shipped_configs_and_explains_a_mismatch(tiny_sd1, no_sockets):
    import torch

    from studio.engine.backends.diffusion.single_file_pipeline import load_single_file_pipeline

    _, _, path, _ = tiny_sd1  # a tiny model against the real SD 1.5 configs: shapes cannot fit
    with pytest.raises(ModelFileError) as info:
        load_single_file_pipeline(path, "sd15", torch.float32)
    assert info.value.message == (
        "tiny-sd15.safetensors does not fit the Stable Diffusion 1.x layout its tensor names suggest (a tensor has "
        "an unexpected shape): it may be another kind of model or a damaged file."
    )
    assert no_sockets == []


def test_a_checkpoint_missing_a_tensor_is_one_sentence(tiny_sd1, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from studio.engine.backends.diffusion.single_file_pipeline import load_single_file_pipeline

    _, _, path, configs = tiny_sd1
    state = load_file(str(path))
    del state["model.diffusion_model.out.2.bias"]
    save_file(state, str(tmp_path / "pruned.safetensors"))
    with pytest.raises(ModelFileError) as info:
        load_single_file_pipeline(tmp_path / "pruned.safetensors", "sd15", torch.float32, config_root=configs)
    assert (
        info.value.message
        == "pruned.safetensors lacks some of its weights: it is not a complete Stable Diffusion 1.x checkpoint."
    )


def test_a_v_prediction_file_gets_a_v_prediction_scheduler(tiny_sd1):
    import torch

    from studio.engine.backends.diffusion.single_file_pipeline import load_single_file_pipeline

    _, _, path, configs = tiny_sd1
    pipe = load_single_file_pipeline(path, "sd15", torch.float32, config_root=configs, prediction_type="v_prediction")
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def as_single_file_and_back(original, tmp_path, family: str):
    """Save a tiny pipeline as a single-file checkpoint of `family` (with tiny configs beside it),
    check the family is detected from the file alone, and load it back with sockets blocked."""
    import torch

    from studio.engine.backends.diffusion.single_file_pipeline import load_single_file_pipeline

    original.save_pretrained(str(tmp_path / "folder"), safe_serialization=True)
    fc.write_config_root(tmp_path / "folder", tmp_path / "configs", family)
    path = fc.save_single_file(original, tmp_path / f"tiny-{family}.safetensors")
    assert detect_family(path) == family
    return load_single_file_pipeline(path, family, torch.float32, config_root=tmp_path / "configs")


def test_an_inpainting_checkpoint_loads_as_an_inpainting_pipeline(tmp_path, no_sockets):
    from diffusers import StableDiffusionInpaintPipeline

    original = fc.tiny_sd1_pipeline(seed=1, in_channels=9)
    pipe = as_single_file_and_back(original, tmp_path, "sd15-inpaint")
    assert type(pipe) is StableDiffusionInpaintPipeline
    assert_same_weights(original, pipe, ("unet", "vae", "text_encoder"))
    assert no_sockets == []


def test_an_sdxl_checkpoint_loads_offline_with_every_tensor_and_draws_the_same_image(tmp_path, no_sockets):
    import numpy as np
    from diffusers import StableDiffusionXLPipeline

    original = fc.tiny_sdxl_pipeline()
    pipe = as_single_file_and_back(original, tmp_path, "sdxl")
    assert type(pipe) is StableDiffusionXLPipeline
    assert_same_weights(original, pipe, ("unet", "vae", "text_encoder", "text_encoder_2"))
    assert pipe.tokenizer_2.pad_token == "!" and pipe.tokenizer.pad_token == "<|endoftext|>"
    np.testing.assert_array_equal(generate(pipe), generate(original))
    assert no_sockets == []


def test_no_shipped_resource_is_over_a_megabyte():
    root = CONFIG_ROOT.parent
    big = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.stat().st_size > 1_000_000 and not p.is_relative_to(root / "models")
    ]
    assert big == []
    assert all(re.fullmatch(r"[\w.-]+", p.name) for p in (root / "sd-configs").rglob("*"))


def test_a_checkpoint_with_a_flat_text_encoder_loads_every_tensor_and_draws_the_same_image(tiny_sd1, tmp_path):
    """diffusers' conversion script on transformers 5 writes the CLIP text encoder without its
    text_model level (`cond_stage_model.transformer.embeddings…`): the same model, read as such."""
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    from studio.engine.backends.diffusion.single_file_pipeline import load_single_file_pipeline

    original, _, path, configs = tiny_sd1
    prefix = "cond_stage_model.transformer."
    tensors = {k.replace(prefix + "text_model.", prefix): v for k, v in load_file(str(path)).items()}
    assert not any(k.startswith(prefix + "text_model.") for k in tensors)
    flat = tmp_path / "flat-sd15.safetensors"
    save_file(tensors, str(flat))
    assert detect_family(flat) == "sd15"
    pipe = load_single_file_pipeline(flat, "sd15", torch.float32, config_root=configs)
    assert_same_weights(original, pipe, ("unet", "vae", "text_encoder"))
    np.testing.assert_array_equal(
        generate(pipe), generate(load_single_file_pipeline(path, "sd15", torch.float32, config_root=configs))
    )
