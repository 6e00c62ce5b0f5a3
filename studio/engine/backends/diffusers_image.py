"""Images from a diffusers pipeline (Stable Diffusion and friends) on torch: txt2img, img2img, inpainting.

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

from studio.core.errors import ModelFileError, SpecError, first_line
from studio.core.events import ImageResult
from studio.core.jobs import ImageJob
from studio.engine.backends.base import (
    JobContext,
    param_bytes,
    to_uint8_image,
    torch_device,
    torch_dtype,
)
from studio.engine.backends.diffusion_previews import Previewer, X0Tap
from studio.engine.backends.diffusion_schedulers import make_scheduler, sampler_name
from studio.engine.backends.image_inputs import keep_unmasked, load_init_image, load_mask
from studio.engine.backends.lora import LoraSet
from studio.models.hashes import model_hash
from studio.models.libraries import quiet_library_logs
from studio.models.paths import offline
from studio.models.safe_files import check_folder_weights, check_model_index, explained_load_errors


def _dtype_arg() -> str:
    """diffusers 0.36+ takes `dtype` and warns on `torch_dtype`; older releases take only the latter."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


class DiffusersImageBackend:
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
        self.loras = LoraSet(pipe)
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
        if model.format == "sd-single-file":
            from studio.engine.backends.sd_single_file import load_single_file_pipeline

            path = Path(model.path)
            pipe = load_single_file_pipeline(path, model.manifest["family"], torch_dtype(dtype),
                                             prediction_type=model.manifest.get("prediction_type"))
            return cls.on_device(pipe, device, dtype, path)
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
        return cls.on_device(pipe, device, dtype, folder)

    @classmethod
    def on_device(cls, pipe: Any, device: str, dtype: str, path: Path) -> "DiffusersImageBackend":
        """The backend for a built pipeline, moved to its device (shared by folder and single-file loads)."""
        if "latents" not in getattr(pipe, "_callback_tensor_inputs", ()):
            raise ModelFileError(f"{path} is a {type(pipe).__name__}, which cannot report steps; the studio cannot run it.")
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)  # the studio shows its own progress, not tqdm's
        backend = cls(pipe, device, dtype, path)
        backend.model_hash()  # hashing a checkpoint takes seconds once: during the load, not after a job
        return backend

    # -- the pipelines ------------------------------------------------------------------------------

    @property
    def inpaint_model(self) -> bool:
        """A UNet trained for inpainting takes 9 channels: latent, mask and masked-image latent."""
        unet = getattr(self.pipe, "unet", None)  # transformer pipelines (SD3, Flux, PixArt) have none
        return getattr(getattr(unet, "config", None), "in_channels", 4) == 9

    def _pipeline(self, mode: str) -> Any:
        """The pipeline for a mode, built once from the loaded components."""
        if self.inpaint_model:
            mode = "inpaint"  # A1111 too runs every mode of an inpainting model through inpainting
        if mode == "txt2img":
            return self.pipe
        if mode not in self._pipes:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = AutoPipelineForInpainting if mode == "inpaint" else AutoPipelineForImage2Image
            try:
                pipe = auto.from_pipe(self.pipe)
            except (ValueError, TypeError) as exc:
                raise SpecError("init_image", f"cannot be used: {type(self.pipe).__name__} has no {mode} "
                                              f"counterpart ({first_line(exc, 120)}).") from None
            pipe.set_progress_bar_config(disable=True)
            self._pipes[mode] = pipe
        return self._pipes[mode]

    # -- generating ---------------------------------------------------------------------------------

    def generate_image(self, spec: ImageJob, ctx: JobContext) -> ImageResult:
        import torch

        # 1. What the job starts from (img2img / inpainting), checked before any step runs.
        inputs: dict[str, Any] = {}
        init = mask = None
        if spec.init_image:
            init = load_init_image(spec.init_image, spec.width, spec.height)
            inputs.update(image=init, strength=spec.strength)
        if spec.mask:
            mask = load_mask(spec.mask, spec.width, spec.height)
            inputs["mask_image"] = mask
        pipe = self._pipeline(spec.mode)
        if self.inpaint_model and mask is None:
            # txt2img / img2img on an inpainting model: repaint everything.
            from PIL import Image

            init = init or Image.new("RGB", (spec.width, spec.height), (127, 127, 127))
            mask = Image.new("L", (spec.width, spec.height), 255)
            inputs.update(image=init, mask_image=mask, strength=spec.strength if spec.init_image else 1.0)

        # 2. This job's sampler and LoRAs on the shared components.
        pipe.scheduler = make_scheduler(spec.scheduler, self.base_scheduler)
        tap = X0Tap(pipe.scheduler)
        lora_hashes = self.loras.apply(spec.loras)
        previewer = Previewer(pipe)

        # 3. One image per seed, each from its own generator on the device, so any image of a
        #    batch is made again by its seed alone, on the same device, whatever ran before.
        images = []
        for index in range(spec.count):
            generator = torch.Generator(self.device).manual_seed(spec.seed + index)

            # After every denoising step: progress and a preview of where the image is heading.
            # ctx.step raises JobCancelled when Stop was pressed; it propagates out of the pipeline
            # call, so the remaining steps and the VAE decode never run.
            def on_step_end(p: Any, i: int, t: Any, tensors: dict[str, Any], index: int = index) -> dict[str, Any]:
                per_image = getattr(p, "num_timesteps", None) or spec.steps  # strength and 2nd order change it
                latents = tensors["latents"]
                last = i + 1 == per_image  # the finished image follows at once: no preview for it
                ctx.step(index * per_image + i + 1, spec.count * per_image,
                         preview=None if last else lambda: previewer(tap.x0, latents))
                return tensors

            with torch.inference_mode():
                out = pipe(
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
                    **inputs,
                )
            image = to_uint8_image(np.asarray(out.images[0], dtype=np.float32))
            if spec.mask:
                image = keep_unmasked(image, init, mask)
            images.append(image)
        info = {"device": self.device, "runtime": "torch", "dtype": self.dtype,
                "scheduler": spec.scheduler or sampler_name(self.base_scheduler),
                "model_name": self.path.stem if self.path and self.path.is_file() else (self.path.name if self.path else "")}
        model_hash = self.model_hash()
        if model_hash:
            info["model_hash"] = model_hash
        if lora_hashes:
            info["lora_hashes"] = lora_hashes
        return ImageResult(images=tuple(images), info=info)

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

    # -- morphs: a generation from given noise and prompt embeddings ----------------------------------
    # A morph interpolates what generate_image derives from its seed and prompt (the initial noise,
    # the text embeddings), so these reproduce exactly that derivation: a frame made from one
    # keyframe's noise and embeddings is, pixel for pixel, the image job of that seed and prompt.

    def check_morphable(self) -> None:
        """SpecError unless this pipeline takes its noise and prompt embeddings as arguments."""
        import inspect

        takes = inspect.signature(self.pipe.__call__).parameters
        encode = getattr(self.pipe, "encode_prompt", None)
        encodes = set(inspect.signature(encode).parameters) if callable(encode) else set()
        # A UNet pipeline (SD 1.x/2.x, SDXL) whose encode_prompt takes the guidance flag and the
        # negative prompt: transformer pipelines (SD3, Flux, PixArt) encode differently.
        takes_inputs = ({"latents", "prompt_embeds"} <= set(takes) and hasattr(self.pipe, "unet")
                        and {"do_classifier_free_guidance", "negative_prompt"} <= encodes)
        if self.inpaint_model or not takes_inputs:
            raise SpecError("model", f"is a {type(self.pipe).__name__}, which the studio cannot morph yet; "
                                     "morphs run on Stable Diffusion text-to-image models.")

    def prompt_embeddings(self, prompt: str, negative_prompt: str, guidance_scale: float) -> dict[str, np.ndarray]:
        """The pipeline's own encoding of a prompt, as the call arguments that stand for it
        (`prompt_embeds`, `negative_prompt_embeds`, and SDXL's pooled pair), on the CPU in the
        pipeline's dtype. The negative prompt is encoded only where guidance uses it, as the
        pipeline itself does."""
        import torch

        self.loras.apply(())  # an image job's LoRA may patch the text encoder: not in a morph
        with torch.inference_mode():
            out = self.pipe.encode_prompt(prompt=prompt, device=self.device, num_images_per_prompt=1,
                                          do_classifier_free_guidance=guidance_scale > 1.0,
                                          negative_prompt=negative_prompt or None)
        pair = ("prompt_embeds", "negative_prompt_embeds")
        names = {2: pair, 4: pair + ("pooled_prompt_embeds", "negative_pooled_prompt_embeds")}
        if len(out) not in names:
            raise SpecError("model", f"is a {type(self.pipe).__name__}, whose prompt encoding the studio cannot morph.")
        return {name: value.cpu().numpy() for name, value in zip(names[len(out)], out) if value is not None}

    def initial_noise(self, seed: int, width: int, height: int) -> np.ndarray:
        """The noise an image job with this seed starts from (before the sampler's scaling), drawn
        as the pipeline draws it: same shape, dtype and generator device."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        scale = self.pipe.vae_scale_factor
        shape = (1, self.pipe.unet.config.in_channels, height // scale, width // scale)
        generator = torch.Generator(self.device).manual_seed(seed)
        device = torch.device(self.device)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=self._embedding_dtype())
        return noise.cpu().numpy()

    def generate_from(self, noise: np.ndarray, embeddings: dict[str, np.ndarray], *, scheduler: str, steps: int,
                      guidance_scale: float, width: int, height: int, seed: int,
                      on_step: Any) -> np.ndarray:
        """One txt2img image from given initial noise and prompt embeddings, as uint8 RGB.

        `on_step(i, per_image)` runs after each denoising step (0-based i); it may raise
        JobCancelled, which stops the pipeline before its next step and its VAE decode."""
        import torch

        pipe = self.pipe
        pipe.scheduler = make_scheduler(scheduler, self.base_scheduler)  # fresh: no state from the last frame
        self.loras.apply(())  # an image job's LoRAs must not leak into a morph

        def on_step_end(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            on_step(i, getattr(p, "num_timesteps", None) or steps)
            return tensors

        tensors = {name: torch.from_numpy(value).to(self.device) for name, value in embeddings.items()}
        with torch.inference_mode():
            out = pipe(
                latents=torch.from_numpy(noise).to(self.device),
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                width=width,
                height=height,
                generator=torch.Generator(self.device).manual_seed(seed),  # unused by deterministic samplers
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
                **tensors,
            )
        return to_uint8_image(np.asarray(out.images[0], dtype=np.float32))

    def _embedding_dtype(self) -> Any:
        """The dtype the pipeline draws its noise in: that of its prompt embeddings."""
        encoder = getattr(self.pipe, "text_encoder", None)
        return (encoder if encoder is not None else self.pipe.unet).dtype

    @property
    def info(self) -> dict[str, Any]:
        """What every result from this model says about where it ran."""
        name = self.path.stem if self.path and self.path.is_file() else (self.path.name if self.path else "")
        info = {"device": self.device, "runtime": "torch", "dtype": self.dtype, "model_name": name}
        if self.model_hash():
            info["model_hash"] = self.model_hash()
        return info

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


def _modules(pipe: Any) -> list[Any]:
    import torch

    return [c for c in getattr(pipe, "components", {}).values() if isinstance(c, torch.nn.Module)]
