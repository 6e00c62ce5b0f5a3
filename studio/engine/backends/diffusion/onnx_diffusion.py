"""Stable Diffusion exported to ONNX (Optimum's folder layout, see engine/export/diffusion) on ONNX
Runtime: txt2img, img2img and inpainting, every sampler, previews, and seed and prompt morphs.

Each ONNX session stands in for the torch network it was exported from, inside diffusers' own
pipeline, as Optimum's ORTDiffusionPipeline does: prompt encoding, the timesteps a strength
leaves, the img2img and inpainting latents (for 9-channel UNets and, through diffusers'
blending, 4-channel ones), SDXL's size conditioning and zeroed empty negative prompt,
classifier-free guidance and the samplers are the very code the torch backend runs, on small
CPU tensors; only the networks run on ONNX Runtime. The job's noise comes from a CPU
torch.Generator seeded with seed + index, drawn by diffusers' randn_tensor, so the same seed gives
the same image, and on the CPU the torch image of that seed to within float rounding (the
exporter checks 1e-3). Each denoising step reports through the job context, where Stop lands:
the pipeline stops before its next step and the VAE decoder never runs for a cancelled image.

LoRAs are refused: they change the torch weights, which an export has baked in.

torch, diffusers, transformers and onnxruntime are imported inside the functions."""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from studio.core.errors import ModelFileError, SpecError, first_line
from studio.core.events import RunInfo
from studio.engine.backends import onnx_session
from studio.engine.backends.diffusion.pipeline_jobs import DiffusionJobs
from studio.engine.backends.diffusion.previews import FULL_DECODE_MAX_PARAMS, linear_preview
from studio.engine.backends.helpers import to_uint8_image
from studio.engine.export.diffusion import (
    CONFIG_FILE,
    LATENT_PARAMETERS,
    LATENT_SAMPLE,
    ONNX_FILE,
    PIPELINES,
    TEXT_ENCODER,
    TEXT_ENCODER_2,
    UNET,
    VAE_DECODER,
    VAE_ENCODER,
    pipeline_class_name,
)
from studio.models.formats import read_json

log = logging.getLogger(__name__)

REQUIRED = (TEXT_ENCODER, UNET, VAE_DECODER)  # VAE_ENCODER only for img2img and inpainting
NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}
# A decoder file this small holds a VAE whose full decode makes a preview in milliseconds.
SMALL_DECODER_BYTES = FULL_DECODE_MAX_PARAMS * 4


def _as_input(value: Any, meta: Any) -> np.ndarray:
    """A tensor as the numpy array a session input wants: its dtype, and a scalar or not."""
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    array = array.astype(NUMPY_TYPES.get(meta.type, array.dtype), copy=False)
    if len(meta.shape) == 0 and array.ndim > 0 and array.size == 1:
        array = array.reshape(())
    return np.asarray(array, order="C")  # (np.ascontiguousarray would make a scalar 1-D)


@functools.lru_cache(maxsize=1)
def _parts() -> Any:
    """The stand-ins for the torch networks, built once (torch loads lazily). Each is a torch
    Module without weights, so the pipeline finds a device and a dtype where it looks for them."""
    from types import SimpleNamespace

    import torch
    from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
    from diffusers.models.modeling_outputs import AutoencoderKLOutput
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    from transformers.models.clip.modeling_clip import CLIPTextModelOutput

    class Part(torch.nn.Module):
        """One ONNX session with the config of the network it was exported from."""

        def __init__(self, session: Any, config: Any, label: str):
            super().__init__()
            self.session = session
            self.config = config
            self.label = label
            self.inputs = {i.name: i for i in session.get_inputs()}
            self.output_names = [o.name for o in session.get_outputs()]

        @property
        def dtype(self) -> Any:
            return torch.float32

        @property
        def device(self) -> Any:
            return torch.device("cpu")  # where the pipeline keeps its tensors; the session has its own

        def run(self, **feeds: Any) -> dict[str, Any]:
            """The session's outputs by name, for the feeds it takes (others are left out)."""
            arrays = {
                name: _as_input(value, self.inputs[name])
                for name, value in feeds.items()
                if value is not None and name in self.inputs
            }
            outputs = onnx_session.run(self.session, None, arrays, self.label)
            return {name: torch.from_numpy(np.asarray(value)) for name, value in zip(self.output_names, outputs)}

    class TextEncoder(Part):
        def forward(
            self,
            input_ids: Any,
            attention_mask: Any = None,
            output_hidden_states: Any = None,
            return_dict: bool = True,
            **_: Any,
        ) -> Any:
            out = self.run(input_ids=input_ids)
            hidden = None
            if output_hidden_states:
                names = [f"hidden_states.{i}" for i in range(self.config.num_hidden_layers + 1)]
                if not all(name in out for name in names):
                    raise ModelFileError(
                        f"{self.label} gives no hidden_states.N outputs, which this pipeline "
                        "needs (SDXL); export the model again."
                    )
                hidden = tuple(out[name] for name in names)
            if "text_embeds" in out:  # with projection (SDXL's second encoder): pooled text first
                result = CLIPTextModelOutput(
                    text_embeds=out["text_embeds"], last_hidden_state=out["last_hidden_state"], hidden_states=hidden
                )
            else:
                result = BaseModelOutputWithPooling(
                    last_hidden_state=out["last_hidden_state"],
                    pooler_output=out.get("pooler_output"),
                    hidden_states=hidden,
                )
            return result if return_dict else result.to_tuple()

    class UNet(Part):
        def __init__(self, session: Any, config: Any, label: str):
            super().__init__(session, config, label)
            # SDXL's pipeline checks its size conditioning against the UNet's added-embedding width.
            width = config.get("projection_class_embeddings_input_dim")
            self.add_embedding = SimpleNamespace(linear_1=SimpleNamespace(in_features=width))

        def forward(
            self,
            sample: Any,
            timestep: Any,
            encoder_hidden_states: Any,
            timestep_cond: Any = None,
            cross_attention_kwargs: Any = None,
            added_cond_kwargs: Any = None,
            return_dict: bool = True,
            **_: Any,
        ) -> Any:
            timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)[:1]  # one for the batch
            if len(self.inputs["timestep"].shape) == 1:  # older Optimum exports: one timestep per sample
                timestep = timestep.expand(sample.shape[0])
            out = self.run(
                sample=sample,
                timestep=timestep,
                encoder_hidden_states=encoder_hidden_states,
                timestep_cond=timestep_cond,
                **(added_cond_kwargs or {}),
            )["out_sample"]
            return UNet2DConditionOutput(sample=out) if return_dict else (out,)

    class Vae(torch.nn.Module):
        """The VAE: the encoder session (None when the folder has none) and the decoder session."""

        def __init__(self, encoder: Optional[Part], decoder: Part, config: Any, folder: Path):
            super().__init__()
            self.encoder, self.decoder, self.config, self.folder = encoder, decoder, config, folder

        dtype = Part.dtype
        device = Part.device

        def encode(self, sample: Any, return_dict: bool = True) -> Any:
            if self.encoder is None:
                raise SpecError(
                    "init_image",
                    f"cannot be used: {self.folder.name} has no {VAE_ENCODER}/{ONNX_FILE}, "
                    "which img2img and inpainting need; export the model again.",
                )
            out = self.encoder.run(sample=sample)
            if LATENT_PARAMETERS in out:  # the distribution: the sample is drawn from the job's generator
                result = AutoencoderKLOutput(latent_dist=DiagonalGaussianDistribution(out[LATENT_PARAMETERS]))
                return result if return_dict else (result.latent_dist,)
            return SimpleNamespace(latents=out[LATENT_SAMPLE])  # older Optimum: a sample drawn inside the graph

        def decode(self, latent_sample: Any, return_dict: bool = True, generator: Any = None) -> Any:
            sample = self.decoder.run(latent_sample=latent_sample)["sample"]
            return DecoderOutput(sample=sample) if return_dict else (sample,)

    return SimpleNamespace(Part=Part, TextEncoder=TextEncoder, UNet=UNet, Vae=Vae)


# ---------------------------------------------------------------------------------------------
# Reading the folder


def _file(folder: Path, part: str, name: str) -> Path:
    path = folder / part / name
    if not path.is_file():
        raise ModelFileError(
            f"{part}/{name} is missing from {folder}; export the model again (or copy the whole folder)."
        )
    return path


def _with_defaults(cls: Any, config: dict[str, Any]) -> Any:
    """A diffusers model config with its class's defaults for what the file leaves out, read by
    attribute as the pipelines read it (no weights are built)."""
    from diffusers.configuration_utils import FrozenDict

    defaults = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.default is not inspect.Parameter.empty
    }
    return FrozenDict({**defaults, **config})


def _text_config(folder: Path, config: dict[str, Any]) -> Any:
    """A text encoder's config.json as transformers reads it (its defaults for what it leaves out)."""
    from transformers import CLIPTextConfig

    try:
        return CLIPTextConfig.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{folder / CONFIG_FILE} is not a CLIP text encoder config ({first_line(exc, 120)})."
        ) from None


def _tokenizer(folder: Path, name: str) -> Any:
    from transformers import CLIPTokenizer

    path = folder / name
    if not path.is_dir():
        raise ModelFileError(f"{name}/ is missing from {folder}; export the model again (or copy the whole folder).")
    try:
        return CLIPTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - tokenizers raise many types for a broken file
        raise ModelFileError(
            f"The tokenizer in {path} cannot be loaded ({first_line(exc, 120)}); copy the folder again."
        ) from None


def _scheduler(folder: Path) -> Any:
    """The scheduler its config names: one of diffusers' own classes, never code from the folder."""
    import diffusers

    # diffusers' public names: its lazy __init__ re-exports them in a way pyright reads as private.
    from diffusers import ConfigMixin, SchedulerMixin  # pyright: ignore[reportPrivateImportUsage]

    path = _file(folder, "scheduler", "scheduler_config.json")
    config = read_json(path)
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    # Every diffusers scheduler is both: a SchedulerMixin that ConfigMixin.from_config builds.
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin) and issubclass(cls, ConfigMixin)):
        raise ModelFileError(
            f"{path} names scheduler {config.get('_class_name')!r}, which is not one of diffusers' schedulers."
        )
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} cannot be read by {cls.__name__} ({first_line(exc, 120)}).") from None


class OnnxDiffusionBackend(DiffusionJobs):
    """A Stable Diffusion pipeline whose networks are ONNX Runtime sessions, on one device."""

    def __init__(
        self, pipe: Any, sessions: dict[str, Any], device: str, path: Path, memory_bytes: int, small_decoder: bool
    ):
        self.pipe = pipe
        self.sessions = sessions
        self.device = device
        self.path = path
        self.memory_bytes = memory_bytes
        self.small_decoder = small_decoder
        self.base_scheduler = pipe.scheduler
        self.provider = onnx_session.session_provider(sessions[UNET])
        self._pipes: dict[str, Any] = {}
        self._hash: Optional[str] = None  # A1111's model hash, found once (see info)
        self.source_hash: Any = None  # the source's, from the export's manifest (load)

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        return onnx_session.choose_device(requested)

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "OnnxDiffusionBackend":
        backend = cls.from_folder(Path(model.path), device)
        backend.source_hash = model.manifest.get("source_model_hash")  # the registry has read studio.json
        return backend

    @classmethod
    def from_folder(cls, folder: Path, device: str) -> "OnnxDiffusionBackend":
        """Open every network of an export folder; one ModelFileError sentence for what is broken."""
        import diffusers

        # diffusers' public names: its lazy __init__ re-exports them in a way pyright reads as private.
        from diffusers import AutoencoderKL, UNet2DConditionModel  # pyright: ignore[reportPrivateImportUsage]

        from studio.models.libraries import quiet_library_logs

        quiet_library_logs("diffusers", "transformers")
        folder = Path(folder)
        index = read_json(folder / "model_index.json")
        class_name = pipeline_class_name(index.get("_class_name"))
        if class_name not in PIPELINES:
            raise ModelFileError(
                f"{folder} holds a {index.get('_class_name') or 'pipeline of no class'} "
                "(model_index.json); the studio runs Stable Diffusion and SDXL pipelines on ONNX."
            )
        xl = "XL" in class_name
        names = list(REQUIRED) + ([TEXT_ENCODER_2] if xl else [])
        if (folder / VAE_ENCODER / ONNX_FILE).is_file():
            names.append(VAE_ENCODER)
        # The small files first, so a broken copy is named before ONNX Runtime reads gigabytes.
        configs = {}
        for name in names:
            _file(folder, name, ONNX_FILE)
            configs[name] = read_json(_file(folder, name, CONFIG_FILE))
        tokenizers = {name: _tokenizer(folder, name) for name in ("tokenizer", "tokenizer_2")[: 2 if xl else 1]}
        scheduler = _scheduler(folder)
        sessions, sizes = {}, {}
        for name in names:
            label = f"{name}/{ONNX_FILE} in {folder}"
            sessions[name], sizes[name] = onnx_session.open_session(folder / name / ONNX_FILE, device, label)

        parts = _parts()

        def part(kind: Any, name: str, config: Any) -> Any:
            return kind(sessions[name], config, f"{name}/{ONNX_FILE} in {folder.name}")

        vae_config = _with_defaults(AutoencoderKL, configs[VAE_DECODER])
        encoder = part(parts.Part, VAE_ENCODER, vae_config) if VAE_ENCODER in sessions else None
        components: dict[str, Any] = {
            "unet": part(parts.UNet, UNET, _with_defaults(UNet2DConditionModel, configs[UNET])),
            "vae": parts.Vae(encoder, part(parts.Part, VAE_DECODER, vae_config), vae_config, folder),
            "text_encoder": part(
                parts.TextEncoder, TEXT_ENCODER, _text_config(folder / TEXT_ENCODER, configs[TEXT_ENCODER])
            ),
            "scheduler": scheduler,
            "safety_checker": None,
            "feature_extractor": None,
            "image_encoder": None,
            "requires_safety_checker": False,
            **tokenizers,
        }
        if xl:
            components["text_encoder_2"] = part(
                parts.TextEncoder, TEXT_ENCODER_2, _text_config(folder / TEXT_ENCODER_2, configs[TEXT_ENCODER_2])
            )
        for flag in ("force_zeros_for_empty_prompt", "requires_aesthetics_score"):
            if isinstance(index.get(flag), bool):
                components[flag] = index[flag]
        pipeline_cls = getattr(diffusers, class_name)
        takes = inspect.signature(pipeline_cls.__init__).parameters
        try:
            pipe = pipeline_cls(**{k: v for k, v in components.items() if k in takes})
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(
                f"{folder} cannot be assembled as a {class_name} ({first_line(exc, 120)}); export the model again."
            ) from None
        pipe.set_progress_bar_config(disable=True)
        small = sizes[VAE_DECODER] <= SMALL_DECODER_BYTES
        return cls(pipe, sessions, device, folder, sum(sizes.values()), small)

    @property
    def xl(self) -> bool:
        return "XL" in type(self.pipe).__name__

    # -- what pipeline_jobs asks of a backend -------------------------------------------------------

    @property
    def tensor_device(self) -> str:
        return "cpu"  # the pipeline's own tensors are small and on the CPU; the sessions take numpy

    def noise_dtype(self) -> Any:
        import torch

        return torch.float32

    def apply_loras(self, loras: tuple) -> dict[str, str]:
        if loras:
            raise SpecError(
                "loras",
                "cannot be used on ONNX Runtime: a LoRA changes the torch weights, which an "
                "ONNX export has baked in; run this model on torch to use LoRAs.",
            )
        return {}

    def previewer(self, pipe: Any) -> Any:
        return self.preview

    def preview(self, x0: Any, latents: Any) -> Optional[np.ndarray]:
        """The step preview: x0 through the VAE decoder session when it is small (a few ms), else
        the linear latent -> RGB projection at latent resolution."""
        import torch

        source = x0 if x0 is not None else latents
        config = self.pipe.vae.config
        if self.small_decoder and source is not None and source.ndim == 4 and source.shape[1] == config.latent_channels:
            x = source[:1].float() / config.scaling_factor
            if config.get("shift_factor"):
                x = x + config.shift_factor
            with torch.inference_mode():
                image = self.pipe.vae.decode(x).sample[0]
            return to_uint8_image(((image.float() + 1) / 2).permute(1, 2, 0).numpy())
        return linear_preview(source, self.xl)

    @property
    def info(self) -> RunInfo:
        """What every result from this model says about where it ran."""
        if self._hash is None:
            from studio.models.hashes import exported_model_hash

            self._hash = exported_model_hash(self.path, self.source_hash) or ""
        return onnx_session.info_for(self.device, self.provider).replace(
            model_name=self.path.name, model_hash=self._hash
        )

    def close(self) -> None:
        """Drop the pipelines and sessions so the cache's eviction really frees their memory."""
        self.pipe = None
        self.base_scheduler = None
        self._pipes.clear()
        self.sessions.clear()
