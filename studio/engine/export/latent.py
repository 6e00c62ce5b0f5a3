"""ONNX exports of our own latent models (studio-latent folders: the emoji VAE and GAN).

The decoder becomes `decoder.onnx`: "latent" (batch, latent_dim) float32 in, "image" (batch, 3, H, W)
in [0, 1] out. A VAE's encoder becomes `encoder.onnx`: "image" (batch, 3, H, W) in [0, 1] in,
"latent" (batch, latent_dim) out (the mean, in the same axes the decoder takes). Both have a
dynamic batch axis. An export folder is a model of its own ("onnx-latent" in its studio.json),
with the latent size and image size the sliders need."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.atomic import write_atomic
from studio.core.errors import ModelFileError, StudioError
from studio.core.kinds import ModelFormat
from studio.engine.export.graph import Parity, Say, export_graph

DECODER, ENCODER = "decoder.onnx", "encoder.onnx"
LATENT, IMAGE = "latent", "image"
PARITY_BATCH = 8  # latents (and pictures) compared between torch and ONNX Runtime
# What an export's studio.json keeps from its source's: what the latent axes mean and how to show them.
KEPT_KEYS = ("kind", "latent_dim", "image_size", "latent_basis", "output_range")


def _source(model_dir: Path) -> Any:
    from studio.models.registry import inspect

    model = inspect(Path(model_dir), "path")
    if model.format != ModelFormat.STUDIO_LATENT:
        raise ModelFileError(f"{model_dir} is a {model.format} model; only studio-latent folders export to ONNX.")
    return model


def _state_image_size(size: int):
    """The tracer loses the image's static size through Resize; state it, so readers of the graph
    (and the ONNX backend) see (batch, 3, H, W) rather than four unknowns."""

    def adjust(model: Any) -> None:
        dims = model.graph.output[0].type.tensor_type.shape.dim
        for dim, value in zip(dims[1:], (3, size, size)):
            dim.ClearField("dim_param")
            dim.dim_value = value

    return adjust


def _write_decoder(model_dir: Path, manifest: dict[str, Any], target: Path) -> Path:
    import torch

    from studio.models.nets import load_decoder

    net = load_decoder(model_dir, manifest)
    example = torch.zeros(1, net.latent_dim, dtype=torch.float32)
    return export_graph(
        net,
        (example,),
        target,
        [LATENT],
        [IMAGE],
        {LATENT: {0: "batch"}, IMAGE: {0: "batch"}},
        adjust=_state_image_size(net.image_size),
    )


def _mean_only(encoder: Any) -> Any:
    """The encoder as ONNX sees it: the mean only (the log-variance is for training)."""
    import torch

    class Mean(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, image: Any) -> Any:
            return self.inner(image)[0]

    return Mean(encoder).eval()


def _write_encoder(model_dir: Path, manifest: dict[str, Any], target: Path) -> Path:
    import torch

    from studio.models.nets import load_encoder

    encoder = load_encoder(model_dir, manifest)
    example = torch.zeros(1, 3, encoder.image_size, encoder.image_size, dtype=torch.float32)
    return export_graph(
        _mean_only(encoder), (example,), target, [IMAGE], [LATENT], {IMAGE: {0: "batch"}, LATENT: {0: "batch"}}
    )


def export_decoder_onnx(model_dir: Path, out_name: str = DECODER) -> Path:
    """Export a studio-latent folder's torch decoder to `model_dir / out_name` (beside its weights,
    for the folder's studio.json "onnx" key) and return that path. studio.json is left as it is."""
    model_dir = Path(model_dir)
    if not out_name or Path(out_name).name != out_name or not out_name.endswith(".onnx"):
        raise StudioError(f"The export name {out_name!r} should be a plain file name ending in .onnx.")
    model = _source(model_dir)
    return _write_decoder(model_dir, model.manifest, model_dir / out_name)


def export_latent(model: Any, out: Path, say: Say) -> Parity:
    """Export a studio-latent model into the empty folder `out` as an onnx-latent model: its
    decoder (and encoder, for a VAE), a studio.json, and the parity check against torch."""
    folder, manifest = Path(model.path), dict(model.manifest)
    say(f"exporting {DECODER}…")
    _write_decoder(folder, manifest, out / DECODER)
    exported = {"format": "onnx-latent", **{k: manifest[k] for k in KEPT_KEYS if k in manifest}, "onnx": DECODER}
    if "encoder" in manifest:
        say(f"exporting {ENCODER}…")
        _write_encoder(folder, manifest, out / ENCODER)
        exported["encoder_onnx"] = ENCODER
    write_atomic(out / "studio.json", (json.dumps(exported, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    say("checking parity with torch…")
    return check_parity(model, out)


def check_parity(model: Any, out: Path) -> Parity:
    """Decode the same fixed latents (and encode the same pictures) on torch and on ONNX Runtime,
    both on the CPU, and record the largest differences."""
    from studio.engine.backends.latent.onnx_latent import OnnxLatentBackend
    from studio.engine.backends.latent.torch_latent import TorchLatentBackend
    from studio.models.registry import inspect

    torch_backend = TorchLatentBackend.load(model, "cpu", "float32")
    onnx_backend = OnnxLatentBackend.load(inspect(out, "path"), "cpu", "float32")
    latents = np.random.default_rng(0).standard_normal((PARITY_BATCH, torch_backend.latent_dim)).astype(np.float32)
    parity = Parity()
    reference = torch_backend.decode_float(latents)
    difference = np.abs(onnx_backend.decode_float(latents) - reference).max()
    parity.image(f"{DECODER} ({PARITY_BATCH} latents)", float(difference))
    if onnx_backend.can_encode:
        pictures = torch_backend.decode(latents)  # real pictures of the model's size
        difference = np.abs(onnx_backend.encode(pictures) - torch_backend.encode(pictures)).max()
        parity.image(f"{ENCODER} ({PARITY_BATCH} pictures, latent values)", float(difference))
    return parity
