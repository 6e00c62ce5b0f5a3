"""Latent decoders on ONNX Runtime: a studio-latent folder's export (studio.json "onnx" key) or a
bare single .onnx generator (format "onnx"). Input (N, latent_dim) float, output an image batch in
NCHW or NHWC with 3 (RGB) or 1 (grayscale, shown as RGB) channels and values in [0, 1] (or the
manifest's "output_range"); any other channel count is refused at load.

Sessions, providers and the external-data check are onnx_session's, shared by every ONNX backend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from studio.core.errors import ModelFileError
from studio.core.kinds import ModelFormat
from studio.engine.backends import onnx_session
from studio.engine.backends.helpers import check_latents, to_uint8_image
from studio.engine.backends.latent.one_at_a_time import OneAtATime
from studio.models.formats import MANIFEST, manifest_latent_dim
from studio.models.safe_files import model_file

log = logging.getLogger(__name__)


def find_onnx(model: Any) -> Path:
    """The .onnx file of a model: the file itself, the one .onnx in a folder, or studio.json's "onnx"."""
    path = Path(model.path)
    if path.is_file():
        return path
    if model.format == ModelFormat.STUDIO_LATENT or model.manifest.get("onnx"):
        return model_file(path, model.manifest.get("onnx"), "onnx")
    found = sorted(path.glob("*.onnx"))
    if len(found) != 1:
        raise ModelFileError(f"{path} should hold exactly one .onnx file, not {len(found)}.")
    return found[0]


def _static(dim: Any) -> Optional[int]:
    return dim if isinstance(dim, int) and dim > 0 else None


def _layout(shape: Any) -> Optional[str]:
    """ "NCHW" or "NHWC" for an image batch shape with 1 or 3 channels, None when the shape cannot
    say (dynamic or other channel counts). A static 1 or 3 in dim 1 means NCHW, else in dim 3 NHWC."""
    dims = [_static(d) for d in list(shape)[1:]]
    if len(dims) != 3:
        return None
    if dims[0] in (1, 3):
        return "NCHW"
    if dims[2] in (1, 3):
        return "NHWC"
    return None


def _channels_sentence(file_name: str, shape: Any) -> str:
    shown = "x".join(str(d) if _static(d) else "?" for d in shape)
    return (
        f"{file_name} gives images of shape {shown}, which has neither 1 (grayscale) nor 3 (RGB) "
        "channels in NCHW or NHWC order, so the studio cannot show it."
    )


class OnnxLatentBackend(OneAtATime):
    """A latent decoder in an ONNX Runtime session."""

    def __init__(self, session: Any, device: str, manifest: dict[str, Any], memory_bytes: int, file_name: str):
        self.session = session
        self.device = device
        self.provider: str = onnx_session.session_provider(session)
        self.memory_bytes = memory_bytes
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 2:
            raise ModelFileError(f"{file_name} should take one (batch, latent) input to be a latent decoder.")
        if len(outputs) < 1 or len(outputs[0].shape) != 4:
            raise ModelFileError(f"{file_name} should give an image batch (4 dimensions) as its first output.")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        latent_dim = _static(inputs[0].shape[1]) or manifest_latent_dim(manifest)
        if latent_dim is None:
            raise ModelFileError(f"{file_name} does not say its latent size; add latent_dim to studio.json.")
        self.latent_dim = latent_dim
        try:
            low, high = (float(v) for v in manifest.get("output_range", (0.0, 1.0)))
        except (TypeError, ValueError):
            low = high = 0.0
        if not low < high:
            raise ModelFileError(f"{MANIFEST} should give output_range as [low, high], e.g. [-1, 1].")
        self.output_range = (low, high)
        self.file_name = file_name
        self.encoder_path: Optional[Path] = None  # set by load() for a VAE's export
        self._encoder: Any = None
        # The layout (and so the channel count) is checked here, at load: from the declared output
        # shape when it says, else from one decode of a zero latent.
        shape = list(outputs[0].shape)
        self.layout = _layout(shape)
        if self.layout is None:
            shape = list(self._run(np.zeros((1, self.latent_dim), np.float32)).shape)
            self.layout = _layout(shape)
            if self.layout is None:
                raise ModelFileError(_channels_sentence(file_name, shape))
        self.image_size = self._image_size(shape, manifest)
        self.info = onnx_session.info_for(device, self.provider)

    def _image_size(self, shape: list[Any], manifest: dict[str, Any]) -> int:
        height = _static(shape[2] if self.layout == "NCHW" else shape[1])
        if height:
            return int(height)
        if isinstance(manifest.get("image_size"), int):
            return manifest["image_size"]
        return int(self.decode_float(np.zeros((1, self.latent_dim), np.float32)).shape[1])

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        return onnx_session.choose_device(requested)

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "OnnxLatentBackend":
        path = find_onnx(model)
        session, size = onnx_session.open_session(path, device)
        backend = cls(session, device, dict(model.manifest), size, path.name)
        encoder = model.manifest.get("encoder_onnx")
        if encoder:  # a VAE's export: its encoder opens on first use (image keyframes)
            backend.encoder_path = model_file(Path(model.path), encoder, "encoder_onnx")
        return backend

    def _run(self, latents: np.ndarray) -> np.ndarray:
        array = check_latents(latents, self.latent_dim).astype(self.input_dtype, copy=False)
        out = np.asarray(
            onnx_session.run(self.session, None, {self.input_name: array}, self.file_name)[0], dtype=np.float32
        )
        if out.ndim != 4:
            raise ModelFileError(f"{self.file_name} gave an output of shape {out.shape}, not an image batch.")
        return out

    def decode_float(self, latents: np.ndarray) -> np.ndarray:
        """float32 (N, D) -> float32 (N, H, W, 3) in [0, 1]; one channel (grayscale) becomes RGB."""
        out = self.in_batches(self._run, latents)
        channels = out.shape[1] if self.layout == "NCHW" else out.shape[3]
        if channels not in (1, 3):
            raise ModelFileError(_channels_sentence(self.file_name, out.shape))
        if self.layout == "NCHW":
            out = out.transpose(0, 2, 3, 1)
        if channels == 1:
            out = np.repeat(out, 3, axis=3)
        low, high = self.output_range
        if (low, high) != (0.0, 1.0):
            out = (out - low) / (high - low)
        return np.ascontiguousarray(out, dtype=np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """float32 (N, D) -> uint8 (N, H, W, 3)."""
        return to_uint8_image(self.decode_float(latents))

    @property
    def can_encode(self) -> bool:
        return self.encoder_path is not None

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) pictures of the model's size -> float32 (N, D) latents, through the
        exported encoder (the mean). ModelFileError when the model has none (a GAN cannot encode)."""
        if self.encoder_path is None:
            raise ModelFileError(
                f"{self.file_name} is a decoder only; this model has no encoder to turn pictures into latents."
            )
        if self._encoder is None:
            self._encoder, size = onnx_session.open_session(self.encoder_path, self.device)
            self.memory_bytes += size
        array = (np.ascontiguousarray(images, dtype=np.float32) / 255.0).transpose(0, 3, 1, 2)
        name = self._encoder.get_inputs()[0].name
        out = onnx_session.run(self._encoder, None, {name: np.ascontiguousarray(array)}, self.encoder_path.name)[0]
        latents = np.asarray(out, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ModelFileError(
                f"{self.encoder_path.name} gave latents of shape {latents.shape}, not (N, {self.latent_dim})."
            )
        return latents

    def close(self) -> None:
        self.session = None
        self._encoder = None
