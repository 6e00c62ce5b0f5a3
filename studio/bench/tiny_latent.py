"""A tiny latent decoder built in code: our LatentDecoder with small random weights, saved as a
studio-latent folder (studio.json + decoder.safetensors, and decoder.onnx exported from it).

Tests and benchmarks use it to exercise the real torch and ONNX Runtime latent paths offline.
Only the standard library is imported at module level; torch loads inside the builder."""

from __future__ import annotations

import json
from pathlib import Path

TITLE = "Tiny latent decoder"
BASE_CHANNELS = 16
WEIGHTS = "decoder.safetensors"
ONNX = "decoder.onnx"


def build_tiny_latent(
    folder: Path, latent_dim: int = 16, image_size: int = 32, seed: int = 0, onnx: bool = True
) -> Path:
    """Write a random-weight decoder to `folder` (created if needed); returns `folder`.

    Same arguments -> the same weights, bit for bit (a private RNG; the global one is untouched)."""
    import torch
    from safetensors.torch import save

    from studio.core.atomic import write_atomic, write_text_atomic
    from studio.models import formats, nets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": "studio-latent",
        "kind": formats.MANIFEST_FORMATS["studio-latent"],
        "title": TITLE,
        "architecture": nets.DEFAULT_ARCHITECTURE,
        "latent_dim": latent_dim,
        "image_size": image_size,
        "decoder": {"base_channels": BASE_CHANNELS},
        "weights": WEIGHTS,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nets.build_decoder(nets.part_config(manifest, "decoder"))
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in net.state_dict().items()}
    write_atomic(folder / WEIGHTS, save(state, metadata={"format": "pt"}))
    write_text_atomic(folder / formats.MANIFEST, json.dumps(manifest, indent=2) + "\n")
    if onnx:
        from studio.engine.export.latent import export_decoder_onnx

        manifest["onnx"] = export_decoder_onnx(folder, ONNX).name
        write_text_atomic(folder / formats.MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return folder
