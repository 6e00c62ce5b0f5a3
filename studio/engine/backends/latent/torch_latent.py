"""Latent models of our own ("studio-latent" manifests) on torch: decode latent vectors to images.

The network is built from studio.json and its weights read from a .safetensors file inside the
model folder, both by studio.models.nets. Tiny networks like these compute in float32, which also
keeps them identical to their ONNX exports. torch is imported inside functions, not at module top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import ModelFileError
from studio.core.events import RunInfo
from studio.core.kinds import Runtime
from studio.engine.backends.helpers import check_latents, param_bytes, to_uint8_image, torch_device
from studio.engine.backends.latent.one_at_a_time import OneAtATime
from studio.models.formats import MANIFEST


class TorchLatentBackend(OneAtATime):
    """A studio-latent decoder on torch (float32)."""

    def __init__(self, net: Any, device: str, encoder_source: Any = None):
        self.net: Any = net  # a torch module (untyped here); None once closed
        self._encoder_source = encoder_source  # (folder, manifest): the encoder loads on first use
        self._encoder: Any = None
        self.device = device
        self.latent_dim = int(net.latent_dim)
        self.image_size = int(net.image_size)
        self.memory_bytes = param_bytes(net)
        self.info = RunInfo(runtime=Runtime.TORCH, device=device, dtype="float32")

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        device, _ = torch_device(requested)
        return device, "float32"  # tiny decoders gain nothing from half precision

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "TorchLatentBackend":
        path = Path(model.path)
        if not path.is_dir():
            raise ModelFileError(f"{path} should be a folder with {MANIFEST}, weights and (optionally) ONNX files.")
        from studio.models.nets import load_decoder

        net = load_decoder(path, model.manifest)
        return cls(net.to(device), device, (path, model.manifest))

    def decode_float(self, latents: np.ndarray) -> np.ndarray:
        """float32 (N, D) -> float32 (N, H, W, 3) in [0, 1]."""
        return self.in_batches(self._decode_float, check_latents(latents, self.latent_dim))

    def _decode_float(self, array: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            images = self.net(torch.from_numpy(array).to(self.device))
            return images.permute(0, 2, 3, 1).float().cpu().numpy()

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """float32 (N, D) -> uint8 (N, H, W, 3)."""
        return to_uint8_image(self.decode_float(latents))

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) pictures of the model's size -> float32 (N, D) latents: the
        encoder's mean, which a shipped VAE gives in the same principal axes its decoder takes.
        ModelFileError when the model has no encoder (a GAN cannot encode)."""
        import torch

        if self._encoder is None:
            from studio.models.nets import load_encoder

            folder, manifest = self._encoder_source
            self._encoder = load_encoder(folder, manifest).to(self.device)
        array = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) / 255.0).permute(0, 3, 1, 2)
        with torch.inference_mode():
            mu, _ = self._encoder(array.to(self.device))
        return mu.float().cpu().numpy()

    def close(self) -> None:
        self.net = None
        self._encoder = None
