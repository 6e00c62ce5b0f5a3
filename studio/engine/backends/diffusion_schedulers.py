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
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                 "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                                     "use_karras_sigmas": False}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
}

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
    # Keep only the model's settings the target class understands (e.g. DDIM has no karras option).
    return cls.from_config({**dict(base.config), **overrides})


def sampler_name(scheduler: Any) -> str:
    """The A1111 name of a scheduler object, "" when it has none (written into the infotext)."""
    class_name = type(scheduler).__name__
    config = getattr(scheduler, "config", {})
    for name, (cls, overrides) in SAMPLERS.items():
        if cls != class_name:
            continue
        if all(config.get(key, value) == value for key, value in overrides.items()):
            return name
    return ""
