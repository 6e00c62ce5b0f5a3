"""Our own small torch networks for latent models ("studio-latent" manifests).

Imported lazily (by the latent backends, the exporter and the tiny-model builder), never at
startup, so torch may be imported at module top here.

A studio.json names its network by "architecture" and describes it with a config dict per part:

    {"format": "studio-latent", "architecture": "decoder-v1", "latent_dim": 16, "image_size": 32,
     "decoder": {"base_channels": 32}, "weights": "decoder.safetensors", "onnx": "decoder.onnx"}

`latent_dim` and `image_size` live at the top level because every part shares them; each part's
dict ("decoder" now, "encoder" / "discriminator" for a VAE or GAN later) holds only its own knobs.
`part_config(manifest, "decoder")` merges the two, and `build_decoder` builds from the result.
Every network here is plain Linear / Conv / Upsample / activations, so it exports to ONNX as is.
Networks output NCHW images in [0, 1]; backends turn them channels-last. `load_decoder` builds one
from a folder and loads its weights, refusing file names that leave the folder and saying in one
sentence when the weights are truncated or do not match the architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.core.errors import ModelFileError
from studio.models.formats import MANIFEST
from studio.models.safe_files import check_safetensors, model_file

ARCHITECTURES = ("decoder-v1",)  # a VAE ("vae-v1": encoder + decoder) or GAN comes later
DEFAULT_ARCHITECTURE = "decoder-v1"
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 128
MAX_LATENT_DIM = 4096
NORMS = ("none", "batch")
START_SIZE = 4  # the decoder grows a 4x4 feature map by doubling


class LatentDecoder(nn.Module):
    """latent (N, latent_dim) -> image (N, 3, image_size, image_size) in [0, 1].

    Linear -> (C, 4, 4) -> [nearest upsample x2, `convs` x (3x3 conv, optional BatchNorm, LeakyReLU)]
    per doubling -> 3x3 conv to RGB -> sigmoid. BatchNorm ("norm": "batch") trains far faster and
    folds into the convolutions at inference (eval mode), so ONNX export is unchanged. Channels start at base_channels * 2**min(doublings - 1, 3) and halve per block
    down to base_channels."""

    def __init__(self, latent_dim: int, image_size: int, base_channels: int = 32, norm: str = "none", convs: int = 1):
        super().__init__()
        _check_sizes(latent_dim, image_size, base_channels)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
        if convs not in (1, 2):
            raise ValueError(f"convs must be 1 or 2, not {convs!r}")
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.base_channels = base_channels
        doublings = image_size.bit_length() - 1 - (START_SIZE.bit_length() - 1)
        channels = base_channels * 2 ** min(doublings - 1, 3)
        self.start_channels = channels
        self.project = nn.Linear(latent_dim, channels * START_SIZE * START_SIZE)
        blocks: list[nn.Module] = []
        for _ in range(doublings):
            out = max(base_channels, channels // 2)
            blocks += [nn.Upsample(scale_factor=2, mode="nearest")]
            for i in range(convs):
                blocks += _conv_norm_act(channels if i == 0 else out, out, norm)
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Conv2d(channels, 3, kernel_size=3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.project(latent).reshape(-1, self.start_channels, START_SIZE, START_SIZE)
        return torch.sigmoid(self.to_rgb(self.blocks(x)))


def _conv_norm_act(cin: int, cout: int, norm: str) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=norm == "none")]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2))
    return layers


class LatentEncoder(nn.Module):
    """image (N, 3, S, S) in [0, 1] -> (mu, logvar), each (N, latent_dim): a VAE's encoder.

    [4x4 stride-2 conv, BatchNorm, LeakyReLU] halving down to 4x4 (channels doubling from
    base_channels, capped at 8x), then one Linear for the mean and one for the log-variance; kept
    apart so a shipped model can fold its principal basis into `to_mu` alone. In a shipped model
    only the mean is in the model's latent axes; the log-variance stays in the raw training axes
    (it is for training, not for use)."""

    def __init__(self, latent_dim: int, image_size: int, base_channels: int = 32):
        super().__init__()
        _check_sizes(latent_dim, image_size, base_channels)
        self.latent_dim, self.image_size, self.base_channels = latent_dim, image_size, base_channels
        layers: list[nn.Module] = []
        cin, channels, size = 3, base_channels, image_size
        while size > START_SIZE:
            layers += [
                nn.Conv2d(cin, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.LeakyReLU(0.2),
            ]
            cin, size = channels, size // 2
            channels = min(channels * 2, base_channels * 8)
        self.features = nn.Sequential(*layers, nn.Flatten())
        width = cin * START_SIZE * START_SIZE
        self.to_mu = nn.Linear(width, latent_dim)
        self.to_logvar = nn.Linear(width, latent_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(image)
        return self.to_mu(h), self.to_logvar(h)


def _check_sizes(latent_dim: Any, image_size: Any, base_channels: Any) -> None:
    if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or not 1 <= latent_dim <= MAX_LATENT_DIM:
        raise ValueError(f"latent_dim must be a whole number from 1 to {MAX_LATENT_DIM}, not {latent_dim!r}")
    if (
        not isinstance(image_size, int)
        or isinstance(image_size, bool)
        or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE
        or image_size & (image_size - 1)
    ):
        raise ValueError(
            f"image_size must be a power of two from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, not {image_size!r}"
        )
    if not isinstance(base_channels, int) or isinstance(base_channels, bool) or not 1 <= base_channels <= 1024:
        raise ValueError(f"base_channels must be a whole number from 1 to 1024, not {base_channels!r}")


def part_config(manifest: dict[str, Any], part: str) -> dict[str, Any]:
    """One part's build config: the shared top-level sizes plus the part's own dict.

    ValueError (a phrase naming the key) when the manifest is inconsistent or unknown."""
    architecture = manifest.get("architecture", DEFAULT_ARCHITECTURE)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    own = manifest.get(part, {})
    if not isinstance(own, dict):
        raise ValueError(f"{part!r} must be a JSON object")
    config = dict(own)
    for key in ("latent_dim", "image_size"):
        if key in manifest:
            if key in own and own[key] != manifest[key]:
                raise ValueError(f"{part}.{key} ({own[key]!r}) disagrees with {key} ({manifest[key]!r})")
            config[key] = manifest[key]
        elif key not in config:
            raise ValueError(f"{key} is missing")
    return config


def build_decoder(config: dict[str, Any]) -> LatentDecoder:
    """A LatentDecoder from a decoder config: latent_dim, image_size, optional base_channels.

    ValueError naming the bad key for anything else or out of range."""
    _check_keys("decoder", config, {"latent_dim", "image_size", "base_channels", "norm", "convs"})
    return LatentDecoder(
        latent_dim=config["latent_dim"],
        image_size=config["image_size"],
        base_channels=config.get("base_channels", 32),
        norm=config.get("norm", "none"),
        convs=config.get("convs", 1),
    )


def build_encoder(config: dict[str, Any]) -> LatentEncoder:
    """A LatentEncoder from an encoder config: latent_dim, image_size, optional base_channels."""
    _check_keys("encoder", config, {"latent_dim", "image_size", "base_channels", "weights"})
    return LatentEncoder(config["latent_dim"], config["image_size"], config.get("base_channels", 32))


def _check_keys(part: str, config: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{part} key {unknown[0]!r} is unknown (expected {', '.join(sorted(known))})")
    if "latent_dim" not in config or "image_size" not in config:
        raise ValueError(f"{part} config needs latent_dim and image_size")


# Loading a part from its folder: safe file names, complete safetensors, matching keys.


def load_weights(path: Path) -> dict[str, Any]:
    """A safetensors file as a dict of CPU tensors in the dtype they were stored in (float16 or
    bfloat16 files stay so: `apply_weights` casts them to the network's own float32), with one
    sentence when the file is broken."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as exc:
        detail = str(exc).removeprefix("Error while deserializing header: ").strip()
        raise ModelFileError(f"{path.name} is not a valid safetensors file ({detail}).") from None


def _list(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def apply_weights(net: Any, weights: dict[str, Any], file_name: str) -> None:
    """Load `weights` into `net` strictly, each cast to the dtype of the parameter it fills (float32
    for our networks), or one sentence saying how they do not match."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(
        f"{k} {'x'.join(map(str, weights[k].shape))} vs {'x'.join(map(str, expected[k].shape))}"
        for k in set(expected) & set(weights)
        if tuple(weights[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_list(wrong)}")
    if problems:
        raise ModelFileError(f"{file_name} does not match the architecture in {MANIFEST} ({'; '.join(problems)}).")
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()}, strict=True)


def load_decoder(model_path: Path, manifest: dict[str, Any]) -> LatentDecoder:
    """The decoder a studio-latent folder describes, its weights loaded (float32, CPU), in eval
    mode; ModelFileError with one sentence when the manifest or the weights are wrong."""
    try:
        net = build_decoder(part_config(manifest, "decoder"))
    except ValueError as exc:
        raise ModelFileError(f"{model_path / MANIFEST} cannot describe a decoder: {exc}.") from None
    weights_path = model_file(model_path, manifest.get("weights"), "weights")
    apply_weights(net, load_weights(weights_path), weights_path.name)
    return net.eval()


def load_encoder(model_path: Path, manifest: dict[str, Any]) -> LatentEncoder:
    """The encoder of a studio-latent VAE folder ("encoder": {..., "weights": file}), loaded like
    `load_decoder`; ModelFileError when the folder has none or it is broken."""
    if "encoder" not in manifest:
        raise ModelFileError(f"{model_path.name} has no encoder (a GAN or a decoder-only model cannot encode images).")
    try:
        config = part_config(manifest, "encoder")
        net = build_encoder(config)
    except ValueError as exc:
        raise ModelFileError(f"{model_path / MANIFEST} cannot describe an encoder: {exc}.") from None
    weights_path = model_file(model_path, config.get("weights"), "encoder.weights")
    apply_weights(net, load_weights(weights_path), weights_path.name)
    return net.eval()
