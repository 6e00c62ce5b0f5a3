"""Job specs: frozen dataclasses holding everything that determines a job's result.

Same spec + same seed + same device -> same result. Each field declares its bounds once, beside
it (core/job_fields.py); `spec.validate()` checks them, then the few rules between fields, before
a job is queued, and raises SpecError naming the field in one sentence.

A spec reaches the engine process as it is, pickled: it rides in a `Run` or `Nested` message
(studio/engine/host/protocol.py), which the window sends over a multiprocessing Connection on a
private socketpair. JSON is a spec's form on disk: `to_dict()` fills the `studio` chunk of every
image the studio saves (core/image_metadata.py), and `spec_from_dict()` reads that chunk back
from any image, so it trusts nothing it is given. Images older versions wrote read too, as long
as field names and their JSON form stay as they are."""

from __future__ import annotations

import dataclasses
import enum
import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from studio.core.errors import SpecError, shown
from studio.core.job_fields import (
    Choice,
    Flag,
    Listed,
    Named,
    Nested,
    Number,
    Phrase,
    Text,
    Vector,
    Vectors,
    WeightedPath,
    Whole,
    check_fields,
    checked,
    take_fields,
)
from studio.core.story import StoryContext

MAX_SEED = 2**32 - 1  # the seeds the studio draws, and text jobs' bound (llama.cpp's samplers take 32 bits)
# Image seeds as ComfyUI, Fooocus and SwarmUI write them (A1111 draws 32-bit ones): torch's generator
# takes every 64-bit seed, so an image made elsewhere is made again from its own seed.
MAX_IMAGE_SEED = 2**64 - 1
RUNTIMES = ("auto", "torch", "onnx", "llama.cpp")  # auto: the model's own runtime (torch when it has both)
DEVICES = ("auto", "cpu", "cuda")


def resolve_seed(seed: Optional[int], high: int = MAX_SEED) -> int:
    """The seed a job runs with: the one asked for, or a random one drawn now. Drawn before the job
    is queued, so the spec that runs (and is saved with its result) reproduces it exactly."""
    return random.randint(0, high) if seed is None else seed


class Lane(str, enum.Enum):
    """Batch jobs run in order; interactive requests replace any waiting one (newest wins)."""

    BATCH = "batch"
    INTERACTIVE = "interactive"


@dataclass(frozen=True)
class JobSpec:
    """Fields every job has. Subclasses add their own, each `checked` by its rule, and extend
    `validate` only with the checks between fields."""

    kind: ClassVar[str] = "job"
    lane: ClassVar[Lane] = Lane.BATCH

    model: str = checked(Named("must name a model (an id from `studio models` or a path)."))
    runtime: str = checked(Choice(RUNTIMES), "auto")
    device: str = checked(Choice(DEVICES), "auto")

    def __post_init__(self) -> None:
        take_fields(self)  # JSON lists and numpy arrays become tuples of plain values

    def validate(self) -> None:
        check_fields(self)

    @property
    def title(self) -> str:
        return f"{self.kind} · {self.model}"

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _json_form(getattr(self, f.name)) for f in dataclasses.fields(self)}
        data["kind"] = self.kind
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _json_form(value: Any) -> Any:
    """A field's value as JSON holds it: tuples as lists, a story as its dict."""
    if isinstance(value, (tuple, list)):
        return [_json_form(v) for v in value]
    if isinstance(value, StoryContext):
        return value.to_dict()
    return value


# Samplers by the names AUTOMATIC1111 shows, so infotext round-trips; "" means the model's own.
SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "Heun", "DPM++ 2M SDE")
MAX_COUNT = 100
MAX_LORAS = 16


@dataclass(frozen=True)
class DiffusionSettings(JobSpec):
    """What a diffusion image model draws with: the fields an image job and a morph share, under
    the same names, bounds and defaults (and so the same JSON). Not a job of its own."""

    prompt: str = checked(Text(), "")
    negative_prompt: str = checked(Text(), "")
    seed: int = checked(Whole(0, MAX_IMAGE_SEED), 0)
    steps: int = checked(Whole(1, 1000), 20)
    guidance_scale: float = checked(Number(0.0, 50.0), 7.0)
    width: int = checked(Whole(8, 4096, multiple_of=8), 512)
    height: int = checked(Whole(8, 4096, multiple_of=8), 512)
    scheduler: str = checked(Choice(SCHEDULERS, blank_ok=True), "")


@dataclass(frozen=True)
class ImageJob(DiffusionSettings):
    """Text to image; image to image when `init_image` is set; inpainting when `mask` is too.

    Images are passed as paths to PNG files (the studio writes the canvas to a content-addressed
    file first), so a spec stays small, serialises to JSON and the gallery's copy of it names
    exactly the pixels that went in. `count` images are made with seeds seed, seed+1, ...,
    each from its own generator, so one image of a batch is reproduced by its own seed alone."""

    kind: ClassVar[str] = "image"

    count: int = checked(Whole(1, MAX_COUNT), 1)
    init_image: str = checked(Text(), "")
    mask: str = checked(Text(), "")
    # img2img / inpainting: how much of the init image is re-noised
    strength: float = checked(Number(0.0, 1.0), 0.75)
    # (path to .safetensors, weight)
    loras: tuple[tuple[str, float], ...] = checked(
        Listed(MAX_LORAS, "[path, weight] pairs", each=WeightedPath(Number(-10.0, 10.0))), ()
    )

    def one_image(self, index: int) -> "ImageJob":
        """The spec that makes image `index` of this batch again, alone."""
        return dataclasses.replace(self, seed=self.seed + index, count=1)

    @property
    def mode(self) -> str:
        return "inpaint" if self.mask else "img2img" if self.init_image else "txt2img"

    def validate(self) -> None:
        super().validate()
        if self.seed + self.count - 1 > MAX_IMAGE_SEED:
            raise SpecError("seed", f"leaves no room for {self.count} images (seeds run up to {MAX_IMAGE_SEED}).")
        if self.init_image and int(self.steps * self.strength) < 1:
            raise SpecError(
                "strength",
                f"{self.strength:g} of {self.steps} steps leaves no step to run: raise the strength or the steps.",
            )
        if self.mask and not self.init_image:
            raise SpecError("mask", "needs an init_image to paint into.")

    @property
    def title(self) -> str:
        words = {"img2img": "img2img · ", "inpaint": "inpaint · "}.get(self.mode, "")
        return f"image · {words}{self.prompt[:40] or '(no prompt)'}"


MAX_STOP_SEQUENCES = 16
MAX_BANNED = 256


@dataclass(frozen=True)
class TextRequest(JobSpec):
    """What a text model is asked to continue: the fields a text job and its context view share.
    Not a job of its own.

    A request continues either a finished `prompt` or a `story` (a document before its cursor,
    with memory, author's note and world info), which the engine assembles with the model's own
    tokenizer. `instruct` wraps it in the model's chat template (the story is the request)."""

    prompt: str = checked(Text(valid_unicode=True), "")  # a lone surrogate: no tokenizer takes it
    story: Optional[StoryContext] = checked(
        Nested(StoryContext, "must be a story context (text, memory, notes, world info)."), None
    )
    instruct: bool = checked(Flag(), False)
    max_new_tokens: int = checked(Whole(1, 100_000), 64)

    def validate(self) -> None:
        super().validate()
        if self.story is not None and self.prompt:
            raise SpecError("prompt", "must be empty when a story is given: the story is the prompt.")


@dataclass(frozen=True)
class TextJob(TextRequest):
    """Continue a text with a causal language model, streaming tokens.

    Samplers as KoboldCpp and SillyTavern name them: temperature, top-k, top-p, min-p, repetition
    penalty over the last `repetition_range` tokens (0: the whole context), DRY (a penalty on
    continuing a sequence that already occurred; 0 turns it off), XTC ("exclude top choices": with
    probability `xtc_probability`, every token above `xtc_threshold` but the least likely of them
    is dropped; 0 turns it off), stop sequences (the text ends
    before the first one) and banned words or phrases (never generated)."""

    kind: ClassVar[str] = "text"

    seed: int = checked(Whole(0, MAX_SEED), 0)
    temperature: float = checked(Number(0.0, 10.0), 0.8)
    top_k: int = checked(Whole(0, 1_000_000), 0)
    top_p: float = checked(Number(0.0, 1.0), 1.0)
    min_p: float = checked(Number(0.0, 1.0), 0.0)
    repetition_penalty: float = checked(Number(0.01, 10.0), 1.0)
    repetition_range: int = checked(Whole(0, 1_000_000), 0)
    dry_multiplier: float = checked(Number(0.0, 100.0), 0.0)
    dry_base: float = checked(Number(1.0, 10.0), 1.75)
    dry_allowed_length: int = checked(Whole(1, 1000), 2)
    xtc_threshold: float = checked(Number(0.0, 0.5), 0.1)
    xtc_probability: float = checked(Number(0.0, 1.0), 0.0)
    stop: tuple[str, ...] = checked(Listed(MAX_STOP_SEQUENCES, "texts", each=Phrase(200)), ())
    banned: tuple[str, ...] = checked(Listed(MAX_BANNED, "texts", each=Phrase(200)), ())

    def validate(self) -> None:
        super().validate()
        if self.top_p == 0.0:
            raise SpecError("top_p", "must be above 0 (1 turns it off).")

    @property
    def title(self) -> str:
        # The end of the prompt is where the text continues; cut at a word so it reads cleanly.
        text = self.story.text[-400:] if self.story is not None else self.prompt[-400:]
        tail = " ".join(text.split())
        if len(tail) > 40:
            tail = "…" + tail[-40:].split(" ", 1)[-1]
        return f"text · {tail or '(empty)'}"


@dataclass(frozen=True)
class ContextJob(TextRequest):
    """What a text job would send its model, assembled and measured by the model's own tokenizer,
    without generating: the writer's context viewer. Interactive, so only the newest view runs."""

    kind: ClassVar[str] = "text-context"
    lane: ClassVar[Lane] = Lane.INTERACTIVE

    @classmethod
    def of(cls, job: TextJob) -> "ContextJob":
        return cls(
            model=job.model,
            runtime=job.runtime,
            device=job.device,
            prompt=job.prompt,
            story=job.story,
            instruct=job.instruct,
            max_new_tokens=job.max_new_tokens,
        )

    @property
    def title(self) -> str:
        return f"context · {self.model}"


@dataclass(frozen=True)
class LatentDecodeJob(JobSpec):
    """Decode one latent vector to an image: the explorer's slider preview. Any sequence of reals
    is taken (numpy floats from the sliders included) and kept as plain floats."""

    kind: ClassVar[str] = "latent-decode"
    lane: ClassVar[Lane] = Lane.INTERACTIVE

    latent: tuple[float, ...] = checked(Vector(), ())


MAX_BATCH_LATENTS = 256


@dataclass(frozen=True)
class LatentBatchJob(JobSpec):
    """Decode several latent vectors at once: the explorer's latent map (a grid of decodes around
    the current point). Interactive, like a slider's decode: a newer request replaces it."""

    kind: ClassVar[str] = "latent-batch"
    lane: ClassVar[Lane] = Lane.INTERACTIVE

    latents: tuple[tuple[float, ...], ...] = checked(Vectors(MAX_BATCH_LATENTS, least=1), ())


@dataclass(frozen=True)
class LatentEncodeJob(JobSpec):
    """An image file to a latent model's latent (its VAE encoder's mean, in the model's own
    axes): how a dropped picture becomes a keyframe of the explorer."""

    kind: ClassVar[str] = "latent-encode"

    # the path of the picture (PNG, JPEG, ...)
    image: str = checked(Named("must name the picture to encode.", strip=False), "")

    @property
    def title(self) -> str:
        return f"encode · {self.image.replace(chr(92), '/').rsplit('/', 1)[-1]}"


MORPH_SPACINGS = ("even", "uniform")
MORPH_METHODS = ("slerp", "lerp")
MAX_MORPH_FRAMES = 10_000
MAX_KEYFRAMES = 256
MAX_PROMPT_CHARS = 2000  # a keyframe prompt; CLIP reads 77 tokens of it anyway


@dataclass(frozen=True)
class MorphJob(DiffusionSettings):
    """Frames along a path between keyframes, `frames` in all. "even" spacing places the frames so
    that neighbouring images differ about equally (more frames where the picture changes fast);
    "uniform" spaces them equally in time and has every keyframe as a frame.

    On a latent model (emoji-vae, emoji-gan) the keyframes are `seeds` (each a standard normal
    latent drawn from that seed) or given `latents`, joined by slerp (noise latents keep their
    norm) or lerp (`method`); the diffusion settings must stay as they are.

    On a diffusion image model the keyframes are `seeds` (seed travel: each frame starts from the
    slerp of the keyframes' initial noises, with one `prompt`), or `prompts` (prompt travel: the
    prompts' text embeddings are lerped, from the fixed `seed`; with as many `seeds` as prompts
    the noise travels too). `method` is then the noise's path; the diffusion settings mean what
    they mean in an image job."""

    kind: ClassVar[str] = "morph"

    seeds: tuple[int, ...] = checked(
        Listed(MAX_KEYFRAMES, "seeds", each=Whole(0, MAX_IMAGE_SEED), wrong_type="must be a list."), ()
    )
    latents: tuple[tuple[float, ...], ...] = checked(Vectors(MAX_KEYFRAMES, wrong_type="must be a list."), ())
    frames: int = checked(Whole(2, MAX_MORPH_FRAMES), 60)
    spacing: str = checked(Choice(MORPH_SPACINGS), "even")
    method: str = checked(Choice(MORPH_METHODS), "slerp")
    prompts: tuple[str, ...] = checked(
        Listed(
            MAX_KEYFRAMES,
            "prompts",
            each=Phrase(MAX_PROMPT_CHARS, strip=True, valid_unicode=True),
            wrong_type="must be a list.",
        ),
        (),
    )  # diffusion models only

    @property
    def keyframes(self) -> int:
        """How many keyframes the morph passes through."""
        return len(self.prompts or self.seeds or self.latents)

    def validate(self) -> None:
        super().validate()
        if not (self.seeds or self.latents or self.prompts):
            raise SpecError("seeds", "or `latents` (or `prompts`, on a diffusion model) must give the keyframes.")
        if self.latents and (self.seeds or self.prompts):
            raise SpecError(
                "seeds" if self.seeds else "prompts",
                "cannot be given with `latents`: one of them gives the keyframes, not both.",
            )
        if self.prompts and self.seeds and len(self.seeds) != len(self.prompts):
            raise SpecError(
                "seeds",
                f"must give one seed per prompt ({len(self.prompts)}), not {len(self.seeds)}, "
                "or be left out to keep `seed` for every frame.",
            )
        if self.prompts and self.prompt:
            raise SpecError("prompt", "must be empty when `prompts` give the keyframes.")
        if self.keyframes < 2:
            field_name = "prompts" if self.prompts else "seeds" if self.seeds else "latents"
            raise SpecError(field_name, "must give at least two keyframes to morph between.")
        if self.spacing == "uniform" and self.frames < self.keyframes:
            raise SpecError(
                "frames",
                f"must be at least the number of keyframes ({self.keyframes}) "
                "with uniform spacing, which shows each of them.",
            )

    @property
    def diffusion_fields(self) -> tuple[str, ...]:
        """The diffusion-only fields this spec sets (a latent model refuses them)."""
        return tuple(name for name in ("prompts", "prompt", "negative_prompt", "scheduler") if getattr(self, name))

    @property
    def title(self) -> str:
        if self.prompts:
            keys = f"{len(self.prompts)} prompts"
        elif self.seeds:
            keys = f"seeds {', '.join(map(str, self.seeds))}"
        else:
            keys = f"{len(self.latents)} latents"
        return f"morph · {self.model} · {keys} · {self.frames} frames"


@dataclass(frozen=True)
class ExportJob(JobSpec):
    """A model exported to ONNX (`studio export-onnx`, or picking ONNX Runtime in the window for a
    model that has no export yet): written into `out` (the user's models folder when empty) and
    kept only when its parity check against torch passes."""

    kind: ClassVar[str] = "export"

    # the folder to write; "" = the user's models folder, as MODEL-onnx
    out: str = checked(Text("must be a folder path, not {value}."), "")
    replace: bool = checked(Flag(), False)  # replace `out` when it already holds files

    @property
    def title(self) -> str:
        return f"export · {self.model} → ONNX"


SPEC_TYPES: dict[str, type[JobSpec]] = {
    t.kind: t
    for t in (ImageJob, TextJob, LatentDecodeJob, ContextJob, MorphJob, LatentEncodeJob, LatentBatchJob, ExportJob)
}


def spec_from_dict(data: dict[str, Any]) -> JobSpec:
    """Rebuild a spec from `to_dict()` output; unknown or mistyped fields raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError("spec", "must be a JSON object.")
    kind = data.get("kind")
    spec_type = SPEC_TYPES.get(kind) if isinstance(kind, str) else None
    if spec_type is None:
        raise SpecError("kind", f"must be one of {', '.join(SPEC_TYPES)}, not {shown(kind)}.")
    names = {f.name for f in dataclasses.fields(spec_type)}
    unknown = sorted(set(data) - names - {"kind"}, key=str)
    if unknown:
        name = str(unknown[0])  # untrusted: quoted and cut unless it reads like a field name
        raise SpecError(
            name if name.isidentifier() and len(name) <= 60 else shown(name), f"is not a field of a {kind} job."
        )
    values = {k: v for k, v in data.items() if k != "kind"}
    if values.get("story") is not None:
        values["story"] = StoryContext.from_value(values["story"])
    try:
        spec = spec_type(**values)
    except TypeError as exc:  # a required field is missing
        raise SpecError("spec", f"is incomplete: {exc}.") from None
    spec.validate()
    return spec


def spec_from_json(text: str) -> JobSpec:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError("spec", f"is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    except (ValueError, RecursionError):  # a number past the 4300-digit limit; absurd nesting
        raise SpecError("spec", "holds values no job has (an enormous number or nesting).") from None
    return spec_from_dict(data)
