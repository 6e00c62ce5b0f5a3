"""Images from a diffusers pipeline (Stable Diffusion and friends) on torch: txt2img, img2img, inpainting.

Loading is offline and safe: `local_files_only`, safetensors only, no custom pipeline code (a folder
holding any .py file is refused, and diffusers is told `trust_remote_code=False`). Every
way a folder can be broken becomes one ModelFileError sentence naming the folder. What the pipeline
does with a job (modes, samplers, seeds, previews, Stop between steps, morphs) is pipeline_jobs',
shared with the ONNX Runtime backend.

Torch and diffusers are imported inside the functions, so importing this module stays cheap."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from studio.core.errors import ModelFileError, StudioError
from studio.core.events import RunInfo
from studio.core.kinds import ModelFormat, Runtime
from studio.engine.backends.diffusion.lora import LoraSet
from studio.engine.backends.diffusion.pipeline_jobs import DiffusionJobs
from studio.engine.backends.diffusion.previews import Previewer
from studio.engine.backends.helpers import param_bytes, torch_device, torch_dtype
from studio.models.hashes import model_hash
from studio.models.libraries import quiet_library_logs
from studio.models.paths import offline
from studio.models.safe_files import check_folder_weights, check_model_index, explained_load_errors
from studio.models.weights_match import check_diffusers_folder, mismatch_sentence, unfilled


def _dtype_arg() -> str:
    """diffusers 0.36+ takes `dtype` and warns on `torch_dtype`; older releases take only the latter."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


class DiffusersImageBackend(DiffusionJobs):
    """One diffusers pipeline resident on one device, serving txt2img, img2img and inpainting.

    The img2img and inpainting pipelines are built from the same components (`from_pipe`), so
    they cost no memory and see the same LoRAs."""

    def __init__(self, pipe: Any, device: str, dtype: str, path: Optional[Path] = None):
        self.pipe = pipe
        self.device = device
        self.dtype = dtype
        self.path = path
        self.memory_bytes = sum(param_bytes(m) for m in _modules(pipe))
        self.base_scheduler = pipe.scheduler
        self.loras: Optional[LoraSet] = LoraSet(pipe)  # None once closed
        self.memory_saving: list[str] = []  # what the out-of-memory retry turned on
        self._pipes: dict[str, Any] = {}
        self._hash: Optional[str] = None

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        return torch_device(requested)

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "DiffusersImageBackend":
        offline()
        quiet_library_logs("diffusers", "transformers")  # pipelines hold transformers' CLIP models
        if model.format == ModelFormat.SD_SINGLE_FILE:
            from studio.engine.backends.diffusion.single_file_pipeline import load_single_file_pipeline

            path = Path(model.path)
            pipe = load_single_file_pipeline(
                path,
                model.manifest["family"],
                torch_dtype(dtype),
                prediction_type=model.manifest.get("prediction_type"),
            )
            return cls.on_device(pipe, device, dtype, path)
        folder = Path(model.path)
        # 1. Cheap checks with our own sentences: no custom code, no truncated weights.
        check_model_index(folder)
        check_folder_weights(folder)
        # 2. Let diffusers build the pipeline from local safetensors only.
        # diffusers' public names: its lazy __init__ re-exports them in a way pyright reads as private.
        from diffusers import DiffusionPipeline  # pyright: ignore[reportPrivateImportUsage]

        with explained_load_errors(folder, "a diffusers model"):
            # Each component's config against its weights' headers, on the meta device, before
            # anything is allocated (studio.models.weights_match).
            check_diffusers_folder(folder, torch_dtype(dtype))
            pipe = DiffusionPipeline.from_pretrained(
                str(folder),
                local_files_only=True,
                use_safetensors=True,
                trust_remote_code=False,
                **{_dtype_arg(): torch_dtype(dtype)},
            )
        check_all_loaded(pipe, folder)
        return cls.on_device(pipe, device, dtype, folder)

    @classmethod
    def on_device(cls, pipe: Any, device: str, dtype: str, path: Path) -> "DiffusersImageBackend":
        """The backend for a built pipeline, moved to its device (shared by folder and single-file loads)."""
        if "latents" not in getattr(pipe, "_callback_tensor_inputs", ()):
            raise ModelFileError(
                f"{path} is a {type(pipe).__name__}, which cannot report steps; the studio cannot run it."
            )
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)  # the studio shows its own progress, not tqdm's
        backend = cls(pipe, device, dtype, path)
        backend.model_hash()  # hashing a checkpoint takes seconds once: during the load, not after a job
        return backend

    # -- what pipeline_jobs asks of a backend -------------------------------------------------------

    @property
    def tensor_device(self) -> str:
        return self.device

    def noise_dtype(self) -> Any:
        """The dtype the pipeline draws its noise in: that of its prompt embeddings."""
        encoder = getattr(self.pipe, "text_encoder", None)
        return (encoder if encoder is not None else self.pipe.unet).dtype

    def apply_loras(self, loras: tuple) -> dict[str, str]:
        if self.loras is None:
            raise StudioError("This model was unloaded while a job still used it; run the job again.")
        return self.loras.apply(loras)

    def previewer(self, pipe: Any) -> Any:
        return Previewer(pipe)

    # -- running out of memory ------------------------------------------------------------------------

    def use_less_memory(self) -> list[str]:
        """The runner's out-of-memory retry: turn on diffusers' memory levers, cheapest first in
        speed, and say which ([] when they already are). They stay on while the model is loaded."""
        if self.memory_saving:
            return []
        vae = getattr(self.pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()  # large images decode tile by tile
            self.memory_saving.append("VAE tiling")
        if vae is not None and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()  # a batch decodes one image at a time
            self.memory_saving.append("VAE slicing")
        if hasattr(self.pipe, "enable_attention_slicing"):
            self.pipe.enable_attention_slicing()  # on the shared UNet: every derived pipeline gets it
            self.memory_saving.append("attention slicing")
        if self.device.startswith("cuda") and hasattr(self.pipe, "enable_model_cpu_offload"):
            # Each part moves to the GPU only while it runs. Derived img2img/inpaint pipelines are
            # rebuilt from the offloaded components when next needed.
            self.pipe.enable_model_cpu_offload(device=self.device)
            self._pipes.clear()
            self.memory_saving.append("model CPU offload")
        return list(self.memory_saving)

    @property
    def info(self) -> RunInfo:
        """What every result from this model says about where it ran."""
        name = self.path.stem if self.path and self.path.is_file() else (self.path.name if self.path else "")
        return RunInfo(
            device=self.device,
            runtime=Runtime.TORCH,
            dtype=self.dtype,
            model_name=name,
            model_hash=self.model_hash() or "",
        )

    def model_hash(self) -> Optional[str]:
        """A1111's model hash (SHA-256 of the weights), computed once per load."""
        if self._hash is None and self.path is not None:
            try:
                self._hash = model_hash(self.path) or ""
            except OSError:
                self._hash = ""
        return self._hash or None

    def close(self) -> None:
        """Drop the pipelines so the cache's eviction really frees their memory."""
        self.pipe = None
        self.loras = None  # it holds the pipeline too
        self._pipes.clear()


def check_all_loaded(pipe: Any, folder: Path) -> None:
    """diffusers leaves a tensor its files lack on the meta device (no data), which fails only when
    the pipeline moves ("Cannot copy out of meta tensor"): say now which component lacks how many."""
    import torch

    for name, component in getattr(pipe, "components", {}).items():
        if isinstance(component, torch.nn.Module):
            empty, total = unfilled(component)
            refusal = mismatch_sentence(folder / name, total, empty, ())  # None when nothing is empty
            if refusal:
                raise ModelFileError(refusal)


def _modules(pipe: Any) -> list[Any]:
    import torch

    return [c for c in getattr(pipe, "components", {}).values() if isinstance(c, torch.nn.Module)]
