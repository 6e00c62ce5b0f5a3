"""Step previews for diffusion pipelines, made from the predicted clean latent (x0).

The latent a pipeline holds mid-way is mostly noise; x0 is the image it is heading for, which is
what A1111, ComfyUI and InvokeAI show. Schedulers compute x0 inside `step` and do not keep it
(the Euler family, DDIM, Heun and LMS return it next to the new latent; the multistep DPM-Solver++
and UniPC keep it as their last model output), so `X0Tap` wraps the scheduler's `step` to catch it.

x0 becomes pixels one of two ways: a full VAE decode when the VAE is small enough to cost a few
milliseconds (the embedded emoji-sd), else the cheap linear latent->RGB projection (SD 1.x/2.x and
SDXL coefficients, from ComfyUI's latent formats) at latent resolution, which the canvas enlarges."""

from __future__ import annotations

import functools
from typing import Any, Optional

import numpy as np

from studio.engine.backends.helpers import to_uint8_image

SD15_LATENT_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SDXL_LATENT_RGB = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_LATENT_BIAS = (0.1084, -0.0175, -0.0011)
# A VAE decoder this small decodes a preview in milliseconds on a CPU; SD's (49 M) does not.
FULL_DECODE_MAX_PARAMS = 5_000_000


class X0Tap:
    """Wraps `scheduler.step` so the x0 of the latest step is at hand for the preview."""

    def __init__(self, scheduler: Any):
        self.x0: Any = None
        original = scheduler.step

        # wraps: pipelines read step's signature to decide whether to pass the job's `generator`;
        # a bare (*args, **kwargs) would hide it and ancestral samplers would draw global noise.
        @functools.wraps(original)
        def step(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            x0 = out[1] if isinstance(out, tuple) and len(out) > 1 else getattr(out, "pred_original_sample", None)
            if x0 is None:  # multistep solvers: their last model output, converted to x0
                outputs = getattr(scheduler, "model_outputs", None)
                x0 = outputs[-1] if outputs else None
            if x0 is None:  # PNDM and other DDPM-family steppers: from the noise prediction
                x0 = _x0_from_prediction(scheduler, *_step_args(args, kwargs))
            self.x0 = x0
            return out

        scheduler.step = step


def _step_args(args: tuple, kwargs: dict) -> tuple[Any, Any, Any]:
    names = ("model_output", "timestep", "sample")
    values = list(args[:3]) + [None] * (3 - len(args[:3]))
    return tuple(kwargs.get(name, value) for name, value in zip(names, values))  # type: ignore[return-value]


def _x0_from_prediction(scheduler: Any, model_output: Any, timestep: Any, sample: Any) -> Any:
    """x0 from the model's prediction at `timestep` for schedulers that keep alphas_cumprod:
    x_t = sqrt(a) x0 + sqrt(1 - a) eps, and v = sqrt(a) eps - sqrt(1 - a) x0."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None or model_output is None or sample is None or timestep is None:
        return None
    try:
        a = alphas[int(timestep)].to(sample.device, sample.dtype)
    except (IndexError, TypeError, ValueError, RuntimeError):
        return None
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return (sample - (1 - a).sqrt() * model_output) / a.sqrt()
    if kind == "v_prediction":
        return a.sqrt() * sample - (1 - a).sqrt() * model_output
    if kind == "sample":
        return model_output
    return None


def linear_preview(latents: Any, xl: bool = False) -> Optional[np.ndarray]:
    """The first latent of a batch as uint8 RGB at latent resolution, without the VAE.

    Four channels use the SD (or SDXL) projection; other channel counts show the first three
    channels, each stretched to its own range. Packed (non-image) latents give None."""
    import torch

    if latents is None or latents.ndim != 4:
        return None
    x = latents[0].detach().float().cpu()  # (C, H, W)
    if x.shape[0] == 4:
        rgb = torch.einsum("chw,cr->hwr", x, torch.tensor(SDXL_LATENT_RGB if xl else SD15_LATENT_RGB))
        if xl:
            rgb = rgb + torch.tensor(SDXL_LATENT_BIAS)
        return to_uint8_image(((rgb + 1) / 2).numpy())
    x = x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
    lo = x.amin(dim=(1, 2), keepdim=True)
    hi = x.amax(dim=(1, 2), keepdim=True)
    return to_uint8_image(((x - lo) / (hi - lo).clamp_min(1e-6)).permute(1, 2, 0).numpy())


def small_vae(pipe: Any) -> Any:
    """The pipeline's VAE when decoding a preview with it is cheap, else None."""
    vae = getattr(pipe, "vae", None)
    decoder = getattr(vae, "decoder", None)
    if decoder is None:
        return None
    return vae if sum(p.numel() for p in decoder.parameters()) <= FULL_DECODE_MAX_PARAMS else None


def decoded_preview(vae: Any, latents: Any) -> Optional[np.ndarray]:
    """The first latent of a batch decoded by the (small) VAE, uint8 RGB at full resolution."""
    import torch

    if latents is None or latents.ndim != 4:
        return None
    config = vae.config
    x = latents[:1].to(vae.dtype) / config.scaling_factor
    if getattr(config, "shift_factor", None):
        x = x + config.shift_factor
    with torch.inference_mode():
        image = vae.decode(x).sample[0]
    return to_uint8_image(((image.float().cpu() + 1) / 2).permute(1, 2, 0).numpy())


class Previewer:
    """The preview for one pipeline: x0 through its small VAE, else the linear projection."""

    def __init__(self, pipe: Any):
        self.vae = small_vae(pipe)
        self.xl = "XL" in type(pipe).__name__

    def __call__(self, x0: Any, latents: Any) -> Optional[np.ndarray]:
        source = x0 if x0 is not None else latents
        if (
            self.vae is not None
            and source is not None
            and source.ndim == 4
            and source.shape[1] == self.vae.config.latent_channels
        ):
            return decoded_preview(self.vae, source)
        return linear_preview(source, self.xl)
