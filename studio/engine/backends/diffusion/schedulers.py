"""Samplers by the names AUTOMATIC1111 gives them, as diffusers scheduler classes and settings.

The mapping follows diffusers' own table of A1111 equivalents (docs: api/schedulers/overview), so
a prompt moved between the studio and A1111 runs with the sampler it names. A new scheduler is
built from the model's own scheduler config for every job: the config carries the model's
training schedule (betas, prediction type, timestep spacing), the sampler only changes how it is
walked, and a fresh object never carries state over from the last job."""

from __future__ import annotations

from typing import Any

# A1111 name -> (diffusers class name, config overrides)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ 2M SDE": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
}

# What a model's scheduler config says about how it was trained (kept for any sampler).
SCHEDULE_KEYS = frozenset(
    {
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "trained_betas",
        "prediction_type",
        "timestep_spacing",
        "steps_offset",
        "rescale_betas_zero_snr",
        "clip_sample",
        "set_alpha_to_one",
    }
)
# Schedulers a model may ship that the studio does not offer, by their A1111 names (for the infotext).
REPORTED_ONLY = {"PNDMScheduler": "PLMS", "LMSDiscreteScheduler": "LMS", "DDPMScheduler": "DDPM"}

# Samplers that add fresh noise every step: the same seed still gives the same image, but a small
# change (steps, a morph frame) gives an unrelated one.
ANCESTRAL = frozenset({"Euler a", "DPM++ 2M SDE"})


def make_scheduler(name: str, base: Any) -> Any:
    """A new scheduler for sampler `name` ("" = the model's own) from the model's scheduler `base`."""
    import diffusers

    if not name:
        return type(base).from_config(base.config)
    class_name, overrides = SAMPLERS[name]
    cls = getattr(diffusers, class_name)
    # Only the model's training schedule carries over; the sampler's own options (Karras sigmas,
    # solver type, ...) start from the named sampler's defaults, or the model's choices would leak
    # into "Euler" and the infotext would name a sampler that did not run.
    schedule = {k: v for k, v in dict(base.config).items() if k in SCHEDULE_KEYS}
    return cls.from_config({**schedule, **overrides})


def sampler_name(scheduler: Any) -> str:
    """The A1111 name of a scheduler object, "" when it has none (written into the infotext)."""
    class_name = type(scheduler).__name__
    config = getattr(scheduler, "config", {})
    for name, (cls, overrides) in SAMPLERS.items():
        if cls != class_name:
            continue
        if all(config.get(key, value) == value for key, value in overrides.items()):
            # A model's own Euler/UniPC/... may walk Karras sigmas: A1111 writes that as a schedule type.
            karras = config.get("use_karras_sigmas") and "Karras" not in name
            return f"{name} Karras" if karras else name
    return REPORTED_ONLY.get(class_name, "")
