"""What a diffusers pipeline does with the studio's jobs, whoever runs its networks: torch
(diffusers_image) or ONNX Runtime sessions standing in for them (onnx_diffusion).

Image jobs: txt2img, img2img or inpainting as the spec says, this job's sampler fresh from the
model's scheduler config, one image per seed (seed + index) from its own generator, progress and a
throttled preview after every step, where Stop lands: the cancel exception is raised from
`callback_on_step_end`, so the pipeline stops before its next step and never spends a VAE decode
on an image nobody wants. Morphs: a generation from given noise and prompt embeddings, which
reproduce exactly what an image job derives from its seed and prompt, so a frame made from one
keyframe's noise and embeddings is, pixel for pixel, the image job of that seed and prompt.

A backend using this provides `pipe`, `base_scheduler`, `_pipes` (the derived pipelines, built
once) and the abstract members below. torch and diffusers are imported inside the methods."""

from __future__ import annotations

import abc
import inspect
from typing import Any, Callable, Optional

import numpy as np

from studio.core.errors import SpecError, first_line
from studio.core.events import ImageResult, RunInfo
from studio.core.jobs import ImageJob
from studio.engine.backends.diffusion.previews import X0Tap
from studio.engine.backends.diffusion.schedulers import make_scheduler, sampler_name
from studio.engine.backends.helpers import to_uint8_image
from studio.engine.backends.image_inputs import keep_unmasked, load_init_image, load_mask
from studio.engine.backends.job_context import JobContext

Preview = Callable[[Any, Any], Optional[np.ndarray]]  # (x0, latents) -> uint8 RGB or None


class DiffusionJobs(abc.ABC):
    """Image jobs and morphs on `self.pipe` (see the module docstring)."""

    pipe: Any
    base_scheduler: Any
    _pipes: dict[str, Any]

    # -- hooks --------------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def tensor_device(self) -> str:
        """Where the pipeline's own tensors (noise, latents, embeddings) live and its generators draw."""

    @abc.abstractmethod
    def noise_dtype(self) -> Any:
        """The dtype the pipeline draws its noise in."""

    @abc.abstractmethod
    def apply_loras(self, loras: tuple) -> dict[str, str]:
        """Put this job's LoRAs on the networks (none: take them all off); their hashes by name."""

    @abc.abstractmethod
    def previewer(self, pipe: Any) -> Preview:
        """What turns a step's x0 (or latents) into a preview picture for this pipeline."""

    @property
    @abc.abstractmethod
    def info(self) -> RunInfo:
        """What every result from this model says about where it ran."""

    # -- the pipelines ------------------------------------------------------------------------------

    @property
    def inpaint_model(self) -> bool:
        """A UNet trained for inpainting takes 9 channels: latent, mask and masked-image latent."""
        unet = getattr(self.pipe, "unet", None)  # transformer pipelines (SD3, Flux, PixArt) have none
        return getattr(getattr(unet, "config", None), "in_channels", 4) == 9

    def pipeline(self, mode: str) -> Any:
        """The pipeline for a mode ("txt2img", "img2img", "inpaint"), built once from the loaded
        components (`from_pipe`: no memory, the same LoRAs). Every mode of an inpainting model runs
        through inpainting, as in A1111."""
        if self.inpaint_model:
            mode = "inpaint"
        if mode == "txt2img" or (mode == "inpaint" and "Inpaint" in type(self.pipe).__name__):
            return self.pipe
        if mode not in self._pipes:
            # diffusers' public names: its lazy __init__ re-exports them in a way pyright reads as private.
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting  # pyright: ignore[reportPrivateImportUsage]

            auto = AutoPipelineForInpainting if mode == "inpaint" else AutoPipelineForImage2Image
            try:
                pipe = auto.from_pipe(self.pipe)
            except (ValueError, TypeError) as exc:
                raise SpecError(
                    "init_image",
                    f"cannot be used: {type(self.pipe).__name__} has no {mode} counterpart ({first_line(exc, 120)}).",
                ) from None
            pipe.set_progress_bar_config(disable=True)
            self._pipes[mode] = pipe
        return self._pipes[mode]

    # -- image jobs ---------------------------------------------------------------------------------

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
        pipe = self.pipeline(spec.mode)
        if self.inpaint_model and mask is None:
            # txt2img / img2img on an inpainting model: repaint everything.
            from PIL import Image

            init = init or Image.new("RGB", (spec.width, spec.height), (127, 127, 127))
            mask = Image.new("L", (spec.width, spec.height), 255)
            inputs.update(image=init, mask_image=mask, strength=spec.strength if spec.init_image else 1.0)

        # 2. This job's sampler and LoRAs on the shared components.
        pipe.scheduler = make_scheduler(spec.scheduler, self.base_scheduler)
        tap = X0Tap(pipe.scheduler)
        lora_hashes = self.apply_loras(spec.loras)
        preview = self.previewer(pipe)

        # 3. One image per seed, each from its own generator, so any image of a batch is made
        #    again by its seed alone, on the same device, whatever ran before.
        images = []
        for index in range(spec.count):
            generator = torch.Generator(self.tensor_device).manual_seed(spec.seed + index)

            # After every denoising step: progress and a preview of where the image is heading.
            # ctx.step raises JobCancelled when Stop was pressed; it propagates out of the pipeline
            # call, so the remaining steps and the VAE decode never run.
            def on_step_end(p: Any, i: int, t: Any, tensors: dict[str, Any], index: int = index) -> dict[str, Any]:
                per_image = getattr(p, "num_timesteps", None) or spec.steps  # strength and 2nd order change it
                latents = tensors["latents"]
                last = i + 1 == per_image  # the finished image follows at once: no preview for it
                ctx.step(
                    index * per_image + i + 1,
                    spec.count * per_image,
                    preview=None if last else lambda: preview(tap.x0, latents),
                )
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
        info = self.info.replace(scheduler=spec.scheduler or sampler_name(self.base_scheduler), lora_hashes=lora_hashes)
        return ImageResult(images=tuple(images), info=info)

    # -- morphs: a generation from given noise and prompt embeddings ----------------------------------

    def check_morphable(self) -> None:
        """SpecError unless this pipeline takes its noise and prompt embeddings as arguments."""
        takes = inspect.signature(self.pipe.__call__).parameters
        encode = getattr(self.pipe, "encode_prompt", None)
        encodes = set(inspect.signature(encode).parameters) if callable(encode) else set()
        # A UNet pipeline (SD 1.x/2.x, SDXL) whose encode_prompt takes the guidance flag and the
        # negative prompt: transformer pipelines (SD3, Flux, PixArt) encode differently.
        takes_inputs = (
            {"latents", "prompt_embeds"} <= set(takes)
            and hasattr(self.pipe, "unet")
            and {"do_classifier_free_guidance", "negative_prompt"} <= encodes
        )
        if self.inpaint_model or not takes_inputs:
            raise SpecError(
                "model",
                f"is a {type(self.pipe).__name__}, which the studio cannot morph yet; "
                "morphs run on Stable Diffusion text-to-image models.",
            )

    def prompt_embeddings(self, prompt: str, negative_prompt: str, guidance_scale: float) -> dict[str, np.ndarray]:
        """The pipeline's own encoding of a prompt, as the call arguments that stand for it
        (`prompt_embeds`, `negative_prompt_embeds`, and SDXL's pooled pair), on the CPU in the
        pipeline's dtype. The negative prompt is encoded only where guidance uses it, as the
        pipeline itself does."""
        import torch

        self.apply_loras(())  # an image job's LoRA may patch the text encoder: not in a morph
        with torch.inference_mode():
            out = self.pipe.encode_prompt(
                prompt=prompt,
                device=self.tensor_device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=guidance_scale > 1.0,
                negative_prompt=negative_prompt or None,
            )
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
        generator = torch.Generator(self.tensor_device).manual_seed(seed)
        device = torch.device(self.tensor_device)
        return randn_tensor(shape, generator=generator, device=device, dtype=self.noise_dtype()).cpu().numpy()

    def generate_from(
        self,
        noise: np.ndarray,
        embeddings: dict[str, np.ndarray],
        *,
        scheduler: str,
        steps: int,
        guidance_scale: float,
        width: int,
        height: int,
        seed: int,
        on_step: Any,
    ) -> np.ndarray:
        """One txt2img image from given initial noise and prompt embeddings, as uint8 RGB.

        `on_step(i, per_image)` runs after each denoising step (0-based i); it may raise
        JobCancelled, which stops the pipeline before its next step and its VAE decode."""
        import torch

        pipe = self.pipe
        pipe.scheduler = make_scheduler(scheduler, self.base_scheduler)  # fresh: no state from the last frame
        self.apply_loras(())  # an image job's LoRAs must not leak into a morph

        def on_step_end(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            on_step(i, getattr(p, "num_timesteps", None) or steps)
            return tensors

        device = self.tensor_device
        tensors = {name: torch.from_numpy(value).to(device) for name, value in embeddings.items()}
        with torch.inference_mode():
            out = pipe(
                latents=torch.from_numpy(noise).to(device),
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                width=width,
                height=height,
                generator=torch.Generator(device).manual_seed(seed),  # unused by deterministic samplers
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
                **tensors,
            )
        return to_uint8_image(np.asarray(out.images[0], dtype=np.float32))
