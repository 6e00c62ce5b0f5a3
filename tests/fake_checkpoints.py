"""Single-file Stable Diffusion checkpoints for tests, written in the ORIGINAL (LDM/CompVis) layout.

diffusers knows how to read that layout (LDM -> diffusers); here is the other direction, written
from the layout itself, so a test can save a tiny random pipeline as one .safetensors file, load it
back through `from_single_file` and check every tensor came home:

UNet (`model.diffusion_model.`)
    conv_in -> input_blocks.0.0; time_embedding.linear_1/2 -> time_embed.0/2;
    add_embedding.linear_1/2 -> label_emb.0.0/0.2 (SDXL);
    down_blocks.b.resnets.l / .attentions.l -> input_blocks.(1 + b*(L+1) + l).0 / .1;
    down_blocks.b.downsamplers.0.conv -> input_blocks.(1 + b*(L+1) + L).0.op;
    mid_block.resnets.0, .attentions.0, .resnets.1 -> middle_block.0, .1, .2;
    up_blocks.u.resnets.l / .attentions.l -> output_blocks.(u*(L+1) + l).0 / .1;
    up_blocks.u.upsamplers.0.conv -> output_blocks.(u*(L+1) + L).1.conv, or .2.conv after an attention;
    conv_norm_out / conv_out -> out.0 / out.2; inside a resnet norm1, conv1, time_emb_proj, norm2,
    conv2, conv_shortcut -> in_layers.0, in_layers.2, emb_layers.1, out_layers.0, out_layers.3,
    skip_connection (attention blocks keep their names).
VAE (`first_stage_model.`)
    encoder.down_blocks.i.resnets.j -> encoder.down.i.block.j; downsamplers.0 -> downsample;
    decoder.up_blocks.i -> decoder.up.(N-1-i) (the decoder counts from the bottom);
    mid_block.resnets.k -> mid.block_(k+1); mid_block.attentions.0 -> mid.attn_1 with group_norm,
    to_q/k/v, to_out.0 -> norm, q/k/v, proj_out as 1x1 convolutions; conv_norm_out -> norm_out;
    conv_shortcut -> nin_shortcut.
CLIP (SD 1.x `cond_stage_model.transformer.`, SDXL `conditioner.embedders.0.transformer.`)
    transformers' names under `text_model.`.
OpenCLIP (SD 2.x `cond_stage_model.model.`, SDXL `conditioner.embedders.1.model.`)
    token_embedding, positional_embedding, ln_final, text_projection (transposed),
    transformer.resblocks.n.{ln_1, ln_2, attn.in_proj_weight/bias (q, k, v stacked), attn.out_proj,
    mlp.c_fc, mlp.c_proj}.

Also: `write_header_only` for detection tests (names and shapes, zero data as a sparse file)."""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

IMAGE_SIZE = 64

RESNET_NAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)


# ---------------------------------------------------------------------------------------------
# diffusers -> LDM names
# ---------------------------------------------------------------------------------------------


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    for new, old in RESNET_NAMES:
        if head == new:
            return f"{old}.{tail}"
    raise KeyError(rest)


def unet_to_ldm(state: Mapping[str, Any], config: Mapping[str, Any], prefix: str = "model.diffusion_model.") -> dict:
    per_block = config["layers_per_block"]
    step = per_block + 1
    fixed = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    up_has_attention = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    out = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module in fixed:
            out[prefix + fixed[module] + "." + param] = value
            continue
        m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*)", key)
        if m:
            b, part, i, rest = int(m[1]), m[2], int(m[3]), m[4]
            if part == "resnets":
                new = f"input_blocks.{1 + b * step + i}.0.{_resnet(rest)}"
            elif part == "attentions":
                new = f"input_blocks.{1 + b * step + i}.1.{rest}"
            else:
                new = f"input_blocks.{1 + b * step + per_block}.0.op.{rest.removeprefix('conv.')}"
            out[prefix + new] = value
            continue
        m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            part, i, rest = m[1], int(m[2]), m[3]
            new = f"middle_block.{2 * i}.{_resnet(rest)}" if part == "resnets" else f"middle_block.1.{rest}"
            out[prefix + new] = value
            continue
        m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*)", key)
        if m:
            u, part, i, rest = int(m[1]), m[2], int(m[3]), m[4]
            if part == "resnets":
                new = f"output_blocks.{u * step + i}.0.{_resnet(rest)}"
            elif part == "attentions":
                new = f"output_blocks.{u * step + i}.1.{rest}"
            else:
                new = f"output_blocks.{u * step + per_block}.{2 if u in up_has_attention else 1}.{rest}"
            out[prefix + new] = value
            continue
        raise KeyError(f"no LDM name for UNet tensor {key}")
    return out


def vae_to_ldm(state: Mapping[str, Any], config: Mapping[str, Any], prefix: str = "first_stage_model.") -> dict:
    n_up = len(config["up_block_types"])
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in state.items():
        new = key
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)$", key)
        if m:
            new = f"{m[1]}.mid.attn_1.{attention[m[2]]}.{m[3]}"
            if m[3] == "weight" and m[2] != "group_norm":
                value = value.reshape(*value.shape, 1, 1)  # LDM keeps these as 1x1 convolutions
            out[prefix + new] = value
            continue
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(
            r"^decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.block.", new
        )
        new = re.sub(
            r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.upsample.",
            new,
        )
        new = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m[1]) + 1}.", new)
        new = new.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        out[prefix + new] = value
    return out


def clip_to_ldm(state: Mapping[str, Any], prefix: str) -> dict:
    """transformers CLIPTextModel -> `prefix + text_model.*` (older transformers already had the
    text_model level, newer flattens it away)."""
    return {
        prefix + (k if k.startswith("text_model.") else "text_model." + k): v
        for k, v in state.items()
        if not k.endswith("position_ids")
    }


def openclip_to_ldm(state: Mapping[str, Any], prefix: str) -> dict:
    """transformers CLIPTextModel(WithProjection) -> OpenCLIP's own names under `prefix`."""
    import torch

    state = {k.removeprefix("text_model."): v for k, v in state.items() if not k.endswith("position_ids")}
    fixed = {
        "embeddings.token_embedding.weight": "token_embedding.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "final_layer_norm.weight": "ln_final.weight",
        "final_layer_norm.bias": "ln_final.bias",
    }
    inner = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    out = {}
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")})
    for key, value in state.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("encoder.layers."):
            n, rest = key.split(".", 3)[2], key.split(".", 3)[3]
            module, _, param = rest.rpartition(".")
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                continue  # stacked below
            out[prefix + f"transformer.resblocks.{n}.{inner[module]}.{param}"] = value
        else:
            raise KeyError(f"no OpenCLIP name for {key}")
    for n in layers:
        for param in ("weight", "bias"):
            parts = [state[f"encoder.layers.{n}.self_attn.{p}_proj.{param}"] for p in "qkv"]
            out[prefix + f"transformer.resblocks.{n}.attn.in_proj_{param}"] = torch.cat(parts, dim=0)
    return out


def pipeline_to_ldm(pipe: Any) -> dict:
    """The whole pipeline as one LDM-layout state dict (SD 1.x or SDXL, chosen by its components)."""
    state = {}
    state.update(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    state.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    if getattr(pipe, "text_encoder_2", None) is not None:
        state.update(clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        state.update(openclip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        state.update(clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    return state


def save_single_file(pipe: Any, path: Path, metadata: Optional[dict[str, str]] = None) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in pipeline_to_ldm(pipe).items()}
    save_file(state, str(path), metadata=metadata)
    return path


# ---------------------------------------------------------------------------------------------
# Tiny pipelines with CLIP's real tokenizer (the one the single-file loader builds)
# ---------------------------------------------------------------------------------------------


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )


def _text_config(hidden: int, pad_token_id: int, projection: int, act: str = "quick_gelu"):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection,
        hidden_act=act,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=pad_token_id,
    )


def tiny_sd1_pipeline(seed: int = 0, in_channels: int = 4):
    """A tiny random Stable Diffusion 1.x pipeline (text-to-image, or inpainting with 9 channels)."""
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    from studio.models.clip_tokenizer import load_clip_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=IMAGE_SIZE // 8,
            in_channels=in_channels,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = _tiny_vae()
        text_encoder = CLIPTextModel(_text_config(32, 49407, 32))
    cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
    return cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_sdxl_pipeline(seed: int = 0):
    """A tiny random SDXL base pipeline: CLIP width 32 + OpenCLIP width 64 = UNet context 96."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from studio.models.clip_tokenizer import PAD_OPENCLIP, load_clip_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=IMAGE_SIZE // 8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 2),
            cross_attention_dim=96,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
            norm_num_groups=32,
        )
        vae = _tiny_vae()
        text_encoder = CLIPTextModel(_text_config(32, 49407, 32))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(64, 0, 32, act="gelu"))
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=load_clip_tokenizer(),
        tokenizer_2=load_clip_tokenizer(pad_token=PAD_OPENCLIP),
        unet=unet,
        scheduler=EulerDiscreteScheduler(steps_offset=1, timestep_spacing="leading"),
    )


def write_config_root(pipe_folder: Path, root: Path, family: str) -> Path:
    """`root/family/`: the configs (no weights) of a saved pipeline folder, as the loader's
    config_root expects them; tokenizer folders keep only tokenizer_config.json and
    special_tokens_map.json, as in studio/resources/sd-configs."""
    target = root / family
    for path in Path(pipe_folder).rglob("*.json"):
        rel = path.relative_to(pipe_folder)
        if rel.parts[0].startswith("tokenizer") and rel.name not in (
            "tokenizer_config.json",
            "special_tokens_map.json",
        ):
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / rel)
    for folder in target.glob("tokenizer*"):
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        specials = {k: settings[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in settings}
        if not (folder / "special_tokens_map.json").is_file():
            (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    return root


# ---------------------------------------------------------------------------------------------
# Headers only
# ---------------------------------------------------------------------------------------------

DTYPE_BYTES = {"F16": 2, "F32": 4, "BF16": 2, "I64": 8}


def write_header_only(
    path: Path, shapes: Mapping[str, Iterable[int]], metadata: Optional[dict[str, str]] = None, dtype: str = "F16"
) -> Path:
    """A valid .safetensors file with these tensor names and shapes, all zeros (the data part is
    left sparse, so even full-size shapes cost no disk)."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, shape in shapes.items():
        shape = [int(d) for d in shape]
        size = math.prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return path
