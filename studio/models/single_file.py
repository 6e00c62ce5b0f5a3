"""Single-file Stable Diffusion checkpoints (.safetensors): which family a file belongs to, from its
header alone (tensor names, shapes and metadata; no tensor is read, no ML library is imported).

The original (LDM/CompVis, A1111-style) layout names its parts by prefix:

- UNet            `model.diffusion_model.*` (its first conv, `input_blocks.0.0.weight`, has 4 input
                  channels, or 9 for an inpainting model: latents + mask + masked-image latents);
- VAE             `first_stage_model.*`;
- text encoders   SD 1.x: `cond_stage_model.transformer.text_model.*` (CLIP ViT-L, width 768);
                  SD 2.x: `cond_stage_model.model.*` (OpenCLIP ViT-H, width 1024, in OpenCLIP's own
                  names: `transformer.resblocks.N...`);
                  SDXL:   `conditioner.embedders.0.transformer.text_model.*` (CLIP ViT-L) and
                  `conditioner.embedders.1.model.*` (OpenCLIP ViT-bigG).
The UNet's cross-attention context (`attn2.to_k.weight`, last dimension) must equal the text
encoder's width (768, 1024, or 768 + 1280 = 2048 for SDXL), which catches mixed-up files.

SD 2.x came in two flavours whose tensors are identical in names and shapes: 512 px predicting the
noise (`epsilon`: 2.0-base, 2.1-base) and 768 px predicting `v` (2.0-v, 2.1). The header cannot
tell them apart, so we read, in order: the file's metadata (`modelspec.prediction_type`,
`modelspec.resolution`, kohya's `ss_v_parameterization`), a `v_pred` marker tensor, then the file
name ("512" without "768" means the base model, as in `v2-1_512-ema-pruned.safetensors`), and
otherwise take 768-v: it is what SD 2.1, the release most fine-tunes start from, is, and what
diffusers itself assumes for an SD 2 checkpoint. A wrong guess gives a washed-out or noisy image,
not a failure; the user can rename the file to say "512"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from studio.core.errors import ModelFileError
from studio.models.safe_files import check_safetensors

UNET = "model.diffusion_model."
CONV_IN = UNET + "input_blocks.0.0.weight"
VAE = "first_stage_model."
SD1_TEXT = "cond_stage_model.transformer."
SD1_TOKENS = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
# A CLIP text encoder saved flat (transformers 5), without the text_model level.
FLAT_CLIP_TOKENS = "embeddings.token_embedding.weight"
SD2_TEXT = "cond_stage_model.model."
SD2_TOKENS = "cond_stage_model.model.token_embedding.weight"
XL_TEXT_1 = "conditioner.embedders.0.transformer."
XL_TOKENS_1 = "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"
XL_TEXT_2 = "conditioner.embedders.1.model."
XL_TOKENS_2 = "conditioner.embedders.1.model.token_embedding.weight"
XL_REFINER_TEXT = "conditioner.embedders.0.model."

FAMILIES = ("sd15", "sd15-inpaint", "sd2", "sdxl")
TITLES = {
    "sd15": "Stable Diffusion 1.x",
    "sd15-inpaint": "Stable Diffusion 1.x inpainting",
    "sd2": "Stable Diffusion 2.x",
    "sdxl": "Stable Diffusion XL",
}
IMAGE_SIZE = {"sd15": 512, "sd15-inpaint": 512, "sd2": 768, "sdxl": 1024}
PREDICTION = {"sd15": "epsilon", "sd15-inpaint": "epsilon", "sd2": "v_prediction", "sdxl": "epsilon"}

# Key shapes of LoRA-like files (kohya/A1111, diffusers/peft, LyCORIS).
LORA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_")
LORA_SUFFIXES = (
    ".lora_down.weight",
    ".lora_up.weight",
    ".lora_A.weight",
    ".lora_B.weight",
    ".lora.down.weight",
    ".lora.up.weight",
    ".hada_w1_a",
    ".lokr_w1",
)


@dataclass(frozen=True)
class Checkpoint:
    """What the header says about a single-file checkpoint."""

    family: str  # one of FAMILIES, or "lora"
    prediction_type: Optional[str] = None  # "epsilon" | "v_prediction"; None for a LoRA
    image_size: int = 512

    def manifest(self) -> dict[str, Any]:
        """The registry's `manifest` for this file (formats.Detected)."""
        if self.family == "lora":
            return {}
        return {"family": self.family, "prediction_type": self.prediction_type, "image_size": self.image_size}


def detect_family(path: Path) -> str:
    """ "sd15", "sd15-inpaint", "sd2", "sdxl" or "lora" for a .safetensors file; ModelFileError (one
    sentence) for anything else, read from the header only."""
    return inspect_checkpoint(path).family


def inspect_checkpoint(path: Path) -> Checkpoint:
    """The family, prediction type and native image size of a .safetensors file, header only."""
    path = Path(path)
    name = path.name
    header = check_safetensors(path)
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict):
        metadata = {}
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    if not tensors:
        raise ModelFileError(f"{name} holds no tensors, so it is not a Stable Diffusion 1.x/2.x/XL checkpoint.")

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in tensors)

    if CONV_IN not in tensors and _is_lora(tensors):  # some LoRAs name their targets model.diffusion_model.*
        return Checkpoint("lora")
    if not has(UNET):
        raise ModelFileError(
            f"{name} is not a Stable Diffusion 1.x/2.x/XL checkpoint (its tensors are named like {_sample(tensors)})."
        )

    # 1. Which text encoder(s) it carries decides the generation.
    if has(XL_REFINER_TEXT) and not has(XL_TEXT_1):
        raise ModelFileError(
            f"{name} is a Stable Diffusion XL refiner, which the studio cannot load yet (only SDXL base models)."
        )
    if has(XL_TEXT_2) or has(XL_TEXT_1):
        if not (has(XL_TEXT_1) and has(XL_TEXT_2)):
            raise ModelFileError(
                f"{name} is a Stable Diffusion XL checkpoint with only one of its two text encoders; "
                "the studio needs the full checkpoint."
            )
        base, width = "sdxl", _dim(tensors, XL_TOKENS_1, 1) + _dim(tensors, XL_TOKENS_2, 1)
    elif has(SD2_TEXT):
        base, width = "sd2", _dim(tensors, SD2_TOKENS, 1)
    elif has(SD1_TEXT + "text_model."):
        base, width = "sd1", _dim(tensors, SD1_TOKENS, 1)
    elif has(SD1_TEXT + FLAT_CLIP_TOKENS):
        # The same CLIP without its text_model level, as diffusers' conversion script writes it on
        # transformers 5 (which saves CLIP flat); the loader reads it itself (flat_text_encoder_prefixes).
        base, width = "sd1", _dim(tensors, SD1_TEXT + FLAT_CLIP_TOKENS, 1)
    elif has(SD1_TEXT):
        raise ModelFileError(
            f"{name} stores its text encoder in a layout the studio does not know (neither "
            "text_model.* nor embeddings.* under cond_stage_model.transformer)."
        )
    else:
        raise ModelFileError(
            f"{name} holds a Stable Diffusion UNet but no text encoder; the studio needs a full "
            "checkpoint (UNet, VAE and text encoder in one file)."
        )
    if not has(VAE):
        raise ModelFileError(
            f"{name} holds a Stable Diffusion UNet but no VAE (first_stage_model); the studio needs a "
            "full checkpoint (UNet, VAE and text encoder in one file)."
        )

    # 2. The UNet must listen to that text encoder.
    context = _context_dim(tensors)
    if context and width and context != width:
        raise ModelFileError(
            f"{name} mixes parts of different models: its UNet expects text features of width "
            f"{context} but its text encoder gives {width}."
        )

    # 3. Input channels: 4 for text-to-image, 9 for inpainting (latents, mask, masked image).
    channels = _dim(tensors, CONV_IN, 1)
    generation = {"sd1": "1.x", "sd2": "2.x", "sdxl": "XL"}[base]
    if channels == 9 and base == "sd1":
        family = "sd15-inpaint"
    elif channels == 9:
        raise ModelFileError(
            f"{name} is a Stable Diffusion {generation} inpainting checkpoint, which the studio cannot "
            "load yet (only SD 1.x inpainting)."
        )
    elif channels in (0, 4):
        family = {"sd1": "sd15", "sd2": "sd2", "sdxl": "sdxl"}[base]
    else:
        raise ModelFileError(
            f"{name} is a Stable Diffusion {generation} checkpoint whose UNet takes {channels} input "
            "channels (an InstructPix2Pix, depth or upscaling model), which the studio cannot load yet."
        )
    prediction, size = _prediction_and_size(family, name, metadata, tensors)
    return Checkpoint(family, prediction, size)


def _prediction_and_size(family: str, name: str, metadata: dict[str, Any], tensors: dict[str, Any]) -> tuple[str, int]:
    prediction: Optional[str] = None
    spec = str(metadata.get("modelspec.prediction_type", "")).strip().lower().replace("-", "_")
    kohya = str(metadata.get("ss_v_parameterization", "")).strip().lower()
    if spec in ("v", "v_prediction", "v_pred"):
        prediction = "v_prediction"
    elif spec in ("epsilon", "eps"):
        prediction = "epsilon"
    elif kohya in ("true", "false"):
        prediction = "v_prediction" if kohya == "true" else "epsilon"
    elif "v_pred" in tensors:
        prediction = "v_prediction"
    size = _resolution(metadata.get("modelspec.resolution"))
    if family == "sd2" and prediction is None and "512" in name and "768" not in name:
        prediction = "epsilon"
    prediction = prediction or PREDICTION[family]
    if size is None:
        size = 512 if family == "sd2" and prediction == "epsilon" else IMAGE_SIZE[family]
    return prediction, size


def _resolution(value: Any) -> Optional[int]:
    """The side of "768x768" / "1024" (modelspec.resolution), None when absent or odd."""
    try:
        side = int(str(value).lower().split("x")[0])
    except ValueError:
        return None
    return side if 64 <= side <= 4096 and side % 8 == 0 else None


def _is_lora(tensors: dict[str, Any]) -> bool:
    return any(k.startswith(LORA_PREFIXES) or k.endswith(LORA_SUFFIXES) for k in tensors)


def flat_text_encoder_prefixes(tensor_names: Any) -> dict[str, str]:
    """{pipeline component: tensor-name prefix} for the text encoders a checkpoint stores flat (no
    text_model level), which diffusers' single-file loader cannot read and the studio loads itself."""
    names = set(tensor_names)
    return {"text_encoder": SD1_TEXT} if SD1_TEXT + FLAT_CLIP_TOKENS in names else {}


def _dim(tensors: dict[str, Any], key: str, axis: int) -> int:
    """One dimension of a tensor's shape from the header, 0 when the tensor or the axis is absent."""
    shape = tensors.get(key, {}).get("shape")
    if isinstance(shape, list) and len(shape) > axis and isinstance(shape[axis], int):
        return shape[axis]
    return 0


def _context_dim(tensors: dict[str, Any]) -> int:
    """The UNet's cross-attention context width (the input side of any attn2.to_k), 0 if none."""
    for key in tensors:
        if key.startswith(UNET) and key.endswith("attn2.to_k.weight"):
            shape = tensors[key].get("shape")
            return shape[-1] if isinstance(shape, list) and shape and isinstance(shape[-1], int) else 0
    return 0


def _sample(tensors: dict[str, Any], count: int = 3, limit: int = 60) -> str:
    names = sorted(tensors)[:count]
    shown = ", ".join(repr(n if len(n) <= limit else n[: limit - 1] + "…") for n in names)
    return shown + (", …" if len(tensors) > count else "")
