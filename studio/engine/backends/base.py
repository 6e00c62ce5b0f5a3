"""What a backend is: the Protocols the runner checks a loaded backend against before it hands it a
job (Runner._dispatch), so a backend that lacks a capability is one sentence naming the field, not
an AttributeError from deep inside a job.

A backend is one loaded model on one runtime and device; its class is a `BackendClass`, found by
(model format, runtime) in backends/__init__.py. What each kind of job needs of it:
  - an image job: an `ImageBackend` (txt2img, img2img or inpainting as the spec says; a backend
    that cannot do one raises SpecError naming the field). Diffusers on torch and on ONNX Runtime
    (diffusion/pipeline_jobs) and the fake backend are.
  - a text or context job: a `TextBackend`: transformers on torch and on ONNX Runtime, the fake one.
  - a latent decode, batch or morph: a `LatentBackend` (our latent models on torch or ONNX
    Runtime, the fake one); a picture to encode also needs a `PictureEncoder`.
  - a morph on an image model: a `MorphableImageBackend` (the diffusion backends), whose pieces
    diffusion_morph puts together frame by frame.
One capability is optional: a `SavesMemory` backend can turn memory saving on when a job runs
out of memory, and the runner's retry asks it to. Every step or token goes through the job's
JobContext (job_context.py), where cancel lands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from studio.core.events import ContextResult, ImageResult, RunInfo, TextResult
    from studio.core.jobs import ContextJob, ImageJob, TextJob
    from studio.engine.backends.job_context import JobContext
    from studio.models.registry import ModelInfo


class BackendClass(Protocol):
    """How the runner gets a backend: the device it would run on, then the loaded model."""

    def choose_device(self, requested: str) -> tuple[str, str]:
        """(device, dtype) for a job's requested device ("auto", "cpu", "cuda"); SpecError naming
        `device` when that one cannot be had."""
        ...

    def load(self, model: "ModelInfo", device: str, dtype: str) -> Any:
        """The model loaded on `device`: a backend with the capabilities below, and a
        `memory_bytes` estimate that the model cache budgets with."""
        ...


@runtime_checkable
class ImageBackend(Protocol):
    def generate_image(self, spec: "ImageJob", ctx: "JobContext") -> "ImageResult":
        """The spec's images, a progress step (and maybe a preview) after every denoising step."""
        ...


@runtime_checkable
class TextBackend(Protocol):
    def generate(self, spec: "TextJob", ctx: "JobContext") -> "TextResult":
        """The spec's text, its prompt reported first (`ctx.context_used`), then token by token."""
        ...

    def context(self, spec: "TextJob | ContextJob") -> "ContextResult":
        """What the model reads for `spec`, assembled within its window, and nothing generated."""
        ...


@runtime_checkable
class LatentBackend(Protocol):
    latent_dim: int  # numbers in one latent
    image_size: int  # the side of the square pictures it decodes to
    info: RunInfo  # what every result from this model says about where it ran

    def decode(self, latents: "np.ndarray") -> "np.ndarray":
        """float32 (N, latent_dim) -> uint8 (N, image_size, image_size, 3)."""
        ...


@runtime_checkable
class PictureEncoder(Protocol):
    def encode(self, images: "np.ndarray") -> "np.ndarray":
        """uint8 (N, image_size, image_size, 3) pictures -> float32 (N, latent_dim) latents."""
        ...


@runtime_checkable
class MorphableImageBackend(Protocol):
    """A diffusion pipeline taken apart for morphs: a generation from given initial noise and
    prompt embeddings, which reproduce exactly what an image job derives from its seed and prompt."""

    base_scheduler: Any  # the model's own scheduler, whose config every sampler starts from
    info: RunInfo

    def check_morphable(self) -> None:
        """SpecError naming `model` unless this pipeline takes its noise and embeddings as arguments."""
        ...

    def initial_noise(self, seed: int, width: int, height: int) -> "np.ndarray": ...

    def prompt_embeddings(
        self, prompt: str, negative_prompt: str, guidance_scale: float
    ) -> "dict[str, np.ndarray]": ...

    def generate_from(
        self,
        noise: "np.ndarray",
        embeddings: "dict[str, np.ndarray]",
        *,
        scheduler: str,
        steps: int,
        guidance_scale: float,
        width: int,
        height: int,
        seed: int,
        on_step: Callable[[int, int], None],
    ) -> "np.ndarray":
        """One image as uint8 RGB; `on_step(i, per_image)` after each denoising step."""
        ...


@runtime_checkable
class SavesMemory(Protocol):
    """A backend that can run in less memory after running out of it (VAE tiling, one latent at
    a time...): the runner's one retry turns it on, and the result says what is on."""

    memory_saving: Sequence[str]  # what is turned on now, in words (empty: nothing yet)

    def use_less_memory(self) -> list[str]:
        """Turn on what it has; what was turned on, in words ([] when nothing is left to turn on)."""
        ...
