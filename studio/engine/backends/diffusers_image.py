"""Text to image with a diffusers pipeline folder (Stable Diffusion and friends) on torch.

Loading is offline and safe: `local_files_only`, safetensors only, no custom pipeline code (a folder
holding any .py file is refused, and diffusers is told `trust_remote_code=False`). Every
way a folder can be broken becomes one ModelFileError sentence naming the folder. Generation reports
each denoising step through the job context, which is also where Stop lands: the cancel exception is
raised from `callback_on_step_end`, so the pipeline stops before its next step and never spends a
VAE decode on an image nobody wants.

Torch and diffusers are imported inside the functions, so importing this module stays cheap."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from studio.core.errors import ModelFileError
from studio.core.events import ImageResult
from studio.core.jobs import ImageJob
from studio.engine.backends.base import (
    JobContext,
    param_bytes,
    to_uint8_image,
    torch_device,
    torch_dtype,
)
from studio.models.libraries import quiet_library_logs
from studio.models.paths import offline
from studio.models.safe_files import check_folder_weights, check_model_index, explained_load_errors

# SD 1.x latent -> RGB, one row per latent channel: a cheap preview without the VAE.
SD_LATENT_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)


def _dtype_arg() -> str:
    """diffusers 0.36+ takes `dtype` and warns on `torch_dtype`; older releases take only the latter."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def latent_preview(latents: Any) -> Optional[np.ndarray]:
    """The first image of a latent batch as uint8 RGB at latent resolution, without the VAE.

    Four channels (SD 1.x/2.x/XL) use the linear SD 1.x projection; other channel counts show the
    first three channels, each stretched to its own range. Packed (non-image) latents give None."""
    import torch

    if latents.ndim != 4:
        return None
    x = latents[0].detach().float().cpu()  # (C, H, W)
    if x.shape[0] == 4:
        rgb = torch.einsum("chw,cr->hwr", x, torch.tensor(SD_LATENT_RGB))
        return to_uint8_image(((rgb + 1) / 2).numpy())
    x = x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
    lo = x.amin(dim=(1, 2), keepdim=True)
    hi = x.amax(dim=(1, 2), keepdim=True)
    return to_uint8_image(((x - lo) / (hi - lo).clamp_min(1e-6)).permute(1, 2, 0).numpy())


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


class DiffusersImageBackend:
    """One diffusers pipeline resident on one device."""

    def __init__(self, pipe: Any, device: str, dtype: str):
        self.pipe = pipe
        self.device = device
        self.dtype = dtype
        self.memory_bytes = sum(param_bytes(m) for m in _modules(pipe))

    @classmethod
    def choose_device(cls, requested: str) -> tuple[str, str]:
        return torch_device(requested)

    @classmethod
    def load(cls, model: Any, device: str, dtype: str) -> "DiffusersImageBackend":
        offline()
        quiet_library_logs("diffusers", "transformers")  # pipelines hold transformers' CLIP models
        folder = Path(model.path)
        # 1. Cheap checks with our own sentences: no custom code, no truncated weights.
        check_model_index(folder)
        check_folder_weights(folder)
        # 2. Let diffusers build the pipeline from local safetensors only.
        from diffusers import DiffusionPipeline

        with explained_load_errors(folder, "a diffusers model"):
            pipe = DiffusionPipeline.from_pretrained(
                str(folder),
                local_files_only=True,
                use_safetensors=True,
                trust_remote_code=False,
                **{_dtype_arg(): torch_dtype(dtype)},
            )
        if "latents" not in getattr(pipe, "_callback_tensor_inputs", ()):
            raise ModelFileError(f"{folder} is a {type(pipe).__name__}, which cannot report steps; the studio cannot run it.")
        # 3. Move to the device; the studio shows its own progress, not tqdm's.
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, device, dtype)

    def txt2img(self, spec: ImageJob, ctx: JobContext) -> ImageResult:
        import torch

        # 1. The seed fixes the initial noise on the device itself, so a seed means the same image
        #    on the same device whatever else ran before.
        generator = torch.Generator(self.device).manual_seed(spec.seed)

        # 2. After every denoising step: report progress (and maybe a preview). ctx.step raises
        #    JobCancelled when Stop was pressed; it propagates out of the pipeline call, so the
        #    remaining steps and the VAE decode never run.
        def on_step_end(pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            latents = tensors["latents"]
            total = getattr(pipe, "num_timesteps", None) or spec.steps  # 2nd-order samplers run more
            ctx.step(i + 1, total, preview=lambda: latent_preview(latents))
            return tensors

        # 3. Denoise and decode; the images come back as floats in [0, 1], channels last.
        with torch.inference_mode():
            out = self.pipe(
                prompt=spec.prompt,
                negative_prompt=spec.negative_prompt or None,
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance_scale,
                width=spec.width,
                height=spec.height,
                generator=generator,
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        images = tuple(to_uint8_image(np.asarray(img, dtype=np.float32)) for img in out.images)
        return ImageResult(images=images, info={"device": self.device, "runtime": "torch", "dtype": self.dtype})

    def close(self) -> None:
        """Drop the pipeline so the cache's eviction really frees its memory."""
        self.pipe = None


def _modules(pipe: Any) -> list[Any]:
    import torch

    return [c for c in getattr(pipe, "components", {}).values() if isinstance(c, torch.nn.Module)]
