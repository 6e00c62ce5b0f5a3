"""Job specs: frozen dataclasses holding everything that determines a job's result.

Same spec + same seed + same device -> same result. Specs are validated before they are queued
(`spec.validate()` raises SpecError naming the field) and round-trip through JSON, which is what
the gallery stores and what a supervised child process will receive."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from studio.core.errors import SpecError, check_unicode, shown
from studio.core.story import StoryContext

MAX_SEED = 2**32 - 1
RUNTIMES = ("auto", "torch", "onnx")  # auto: the model's own runtime (torch when it has both)
DEVICES = ("auto", "cpu", "cuda")


def resolve_seed(seed: Optional[int], high: int = MAX_SEED) -> int:
    """The seed a job runs with: the one asked for, or a random one drawn now. Drawn before the job
    is queued, so the spec that runs (and is saved with its result) reproduces it exactly."""
    return random.randint(0, high) if seed is None else seed


class Lane(str, enum.Enum):
    """Batch jobs run in order; interactive requests replace any waiting one (newest wins)."""

    BATCH = "batch"
    INTERACTIVE = "interactive"


def _shown(value: Any) -> str:
    return shown(value)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"must be a whole number, not {_shown(value)}.")
    if not lo <= value <= hi:
        raise SpecError(name, f"must be between {lo} and {hi}, not {_shown(value)}.")


def _check_float(name: str, value: Any, lo: float, hi: float) -> None:
    # An int is checked as it is: math.isfinite would overflow on one too large for a float.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                           and not math.isfinite(value)):
        raise SpecError(name, f"must be a number, not {_shown(value)}.")
    if not lo <= value <= hi:
        raise SpecError(name, f"must be between {lo} and {hi}, not {_shown(value)}.")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(name, f"must be one of {', '.join(choices)}, not {_shown(value)}.")


@dataclass(frozen=True)
class JobSpec:
    """Fields every job has. Subclasses add their own and extend `validate`."""

    kind: ClassVar[str] = "job"
    lane: ClassVar[Lane] = Lane.BATCH

    model: str
    runtime: str = "auto"
    device: str = "auto"

    def validate(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise SpecError("model", "must name a model (an id from `studio models` or a path).")
        _check_choice("runtime", self.runtime, RUNTIMES)
        _check_choice("device", self.device, DEVICES)

    @property
    def title(self) -> str:
        return f"{self.kind} · {self.model}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["kind"] = self.kind
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# Samplers by the names AUTOMATIC1111 shows, so infotext round-trips; "" means the model's own.
SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "Heun", "DPM++ 2M SDE")
MAX_COUNT = 100
MAX_LORAS = 16


@dataclass(frozen=True)
class ImageJob(JobSpec):
    """Text to image; image to image when `init_image` is set; inpainting when `mask` is too.

    Images are passed as paths to PNG files (the studio writes the canvas to a content-addressed
    file first), so a spec stays small, serialises to JSON and the gallery's copy of it names
    exactly the pixels that went in. `count` images are made with seeds seed, seed+1, ...,
    each from its own generator, so one image of a batch is reproduced by its own seed alone."""

    kind: ClassVar[str] = "image"

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    scheduler: str = ""
    count: int = 1
    init_image: str = ""
    mask: str = ""
    strength: float = 0.75  # img2img / inpainting: how much of the init image is re-noised
    loras: tuple[tuple[str, float], ...] = ()  # (path to .safetensors, weight)

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so the spec compares, hashes and serialises one way.
        if isinstance(self.loras, list):
            object.__setattr__(self, "loras", tuple(tuple(x) if isinstance(x, list) else x for x in self.loras))

    def one_image(self, index: int) -> "ImageJob":
        """The spec that makes image `index` of this batch again, alone."""
        return dataclasses.replace(self, seed=self.seed + index, count=1)

    @property
    def mode(self) -> str:
        return "inpaint" if self.mask else "img2img" if self.init_image else "txt2img"

    def validate(self) -> None:
        super().validate()
        for name in ("prompt", "negative_prompt", "init_image", "mask"):
            if not isinstance(getattr(self, name), str):
                raise SpecError(name, "must be text.")
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("steps", self.steps, 1, 1000)
        _check_float("guidance_scale", self.guidance_scale, 0.0, 50.0)
        for name in ("width", "height"):
            value = getattr(self, name)
            _check_int(name, value, 8, 4096)
            if value % 8:
                raise SpecError(name, f"must be divisible by 8, not {value}.")
        if self.scheduler:
            _check_choice("scheduler", self.scheduler, SCHEDULERS)
        _check_int("count", self.count, 1, MAX_COUNT)
        if self.seed + self.count - 1 > MAX_SEED:
            raise SpecError("seed", f"leaves no room for {self.count} images (seeds run up to {MAX_SEED}).")
        _check_float("strength", self.strength, 0.0, 1.0)
        if self.init_image and int(self.steps * self.strength) < 1:
            raise SpecError("strength", f"{self.strength:g} of {self.steps} steps leaves no step to run: "
                                        "raise the strength or the steps.")
        if self.mask and not self.init_image:
            raise SpecError("mask", "needs an init_image to paint into.")
        if not isinstance(self.loras, tuple) or len(self.loras) > MAX_LORAS:
            raise SpecError("loras", f"must be a list of at most {MAX_LORAS} [path, weight] pairs.")
        for item in self.loras:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and item[0]):
                raise SpecError("loras", f"must hold [path, weight] pairs, not {_shown(item)}.")
            _check_float("loras", item[1], -10.0, 10.0)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["loras"] = [list(x) for x in self.loras]
        return data

    @property
    def title(self) -> str:
        words = {"img2img": "img2img · ", "inpaint": "inpaint · "}.get(self.mode, "")
        return f"image · {words}{self.prompt[:40] or '(no prompt)'}"


MAX_STOP_SEQUENCES = 16
MAX_BANNED = 256


def _check_texts(name: str, value: Any, most: int) -> None:
    if not isinstance(value, tuple) or len(value) > most:
        raise SpecError(name, f"must be a list of at most {most} texts.")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > 200:
            raise SpecError(name, f"must hold non-empty texts of at most 200 characters, not {_shown(item)}.")


@dataclass(frozen=True)
class TextJob(JobSpec):
    """Continue a text with a causal language model, streaming tokens.

    Samplers as KoboldCpp and SillyTavern name them: temperature, top-k, top-p, min-p, repetition
    penalty over the last `repetition_range` tokens (0: the whole context), DRY (a penalty on
    continuing a sequence that already occurred; 0 turns it off), stop sequences (the text ends
    before the first one) and banned words or phrases (never generated).

    A job continues either a finished `prompt` or a `story` (a document before its cursor, with
    memory, author's note and world info), which the engine assembles with the model's own
    tokenizer. `instruct` wraps it in the model's chat template (the story is the request)."""

    kind: ClassVar[str] = "text"

    prompt: str = ""
    story: Optional[StoryContext] = None
    instruct: bool = False
    max_new_tokens: int = 64
    seed: int = 0
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    repetition_range: int = 0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    stop: tuple[str, ...] = ()
    banned: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("stop", "banned"):  # JSON gives lists; keep tuples (hashable, one way to compare)
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.prompt, str):
            raise SpecError("prompt", "must be text.")
        check_unicode("prompt", self.prompt)  # a lone surrogate: no tokenizer takes it
        if self.story is not None:
            if not isinstance(self.story, StoryContext):
                raise SpecError("story", "must be a story context (text, memory, notes, world info).")
            if self.prompt:
                raise SpecError("prompt", "must be empty when a story is given: the story is the prompt.")
            self.story.validate()
        if not isinstance(self.instruct, bool):
            raise SpecError("instruct", f"must be true or false, not {_shown(self.instruct)}.")
        _check_int("max_new_tokens", self.max_new_tokens, 1, 100_000)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_float("temperature", self.temperature, 0.0, 10.0)
        _check_int("top_k", self.top_k, 0, 1_000_000)
        _check_float("top_p", self.top_p, 0.0, 1.0)
        if self.top_p == 0.0:
            raise SpecError("top_p", "must be above 0 (1 turns it off).")
        _check_float("min_p", self.min_p, 0.0, 1.0)
        _check_float("repetition_penalty", self.repetition_penalty, 0.01, 10.0)
        _check_int("repetition_range", self.repetition_range, 0, 1_000_000)
        _check_float("dry_multiplier", self.dry_multiplier, 0.0, 100.0)
        _check_float("dry_base", self.dry_base, 1.0, 10.0)
        _check_int("dry_allowed_length", self.dry_allowed_length, 1, 1000)
        _check_texts("stop", self.stop, MAX_STOP_SEQUENCES)
        _check_texts("banned", self.banned, MAX_BANNED)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["stop"], data["banned"] = list(self.stop), list(self.banned)
        data["story"] = None if self.story is None else self.story.to_dict()
        return data

    @property
    def title(self) -> str:
        # The end of the prompt is where the text continues; cut at a word so it reads cleanly.
        text = self.story.text[-400:] if self.story is not None else self.prompt[-400:]
        tail = " ".join(text.split())
        if len(tail) > 40:
            tail = "…" + tail[-40:].split(" ", 1)[-1]
        return f"text · {tail or '(empty)'}"


@dataclass(frozen=True)
class LatentDecodeJob(JobSpec):
    """Decode one latent vector to an image: the explorer's slider preview."""

    kind: ClassVar[str] = "latent-decode"
    lane: ClassVar[Lane] = Lane.INTERACTIVE

    latent: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Accept any sequence of reals (numpy floats from the sliders included) and keep plain
        # floats, so the spec compares, hashes and serialises the same wherever it came from.
        values = self.latent
        if isinstance(values, (list, tuple)) or hasattr(values, "tolist"):
            values = list(values.tolist() if hasattr(values, "tolist") else values)
            if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
                object.__setattr__(self, "latent", tuple(_plain_float(v) for v in values))

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.latent, tuple) or not self.latent:
            raise SpecError("latent", "must be a non-empty tuple of numbers.")
        if not all(isinstance(v, float) and math.isfinite(v) for v in self.latent):
            raise SpecError("latent", "must hold only finite numbers.")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["latent"] = list(self.latent)
        return data


MAX_BATCH_LATENTS = 256


@dataclass(frozen=True)
class LatentBatchJob(JobSpec):
    """Decode several latent vectors at once: the explorer's latent map (a grid of decodes around
    the current point). Interactive, like a slider's decode: a newer request replaces it."""

    kind: ClassVar[str] = "latent-batch"
    lane: ClassVar[Lane] = Lane.INTERACTIVE

    latents: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", _plain_rows(self.latents))

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.latents, tuple) or not 1 <= len(self.latents) <= MAX_BATCH_LATENTS:
            raise SpecError("latents", f"must be a list of 1 to {MAX_BATCH_LATENTS} latent vectors.")
        _check_rows("latents", self.latents)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["latents"] = [list(r) for r in self.latents]
        return data


@dataclass(frozen=True)
class ContextJob(JobSpec):
    """What a text job would send its model, assembled and measured by the model's own tokenizer,
    without generating: the writer's context viewer. Interactive, so only the newest view runs."""

    kind: ClassVar[str] = "text-context"
    lane: ClassVar[Lane] = Lane.INTERACTIVE

    prompt: str = ""
    story: Optional[StoryContext] = None
    instruct: bool = False
    max_new_tokens: int = 64

    @classmethod
    def of(cls, job: TextJob) -> "ContextJob":
        return cls(model=job.model, runtime=job.runtime, device=job.device, prompt=job.prompt, story=job.story,
                   instruct=job.instruct, max_new_tokens=job.max_new_tokens)

    def validate(self) -> None:
        # The same rules as the text job it stands for.
        TextJob(model=self.model, runtime=self.runtime, device=self.device, prompt=self.prompt, story=self.story,
                instruct=self.instruct, max_new_tokens=self.max_new_tokens).validate()

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["story"] = None if self.story is None else self.story.to_dict()
        return data

    @property
    def title(self) -> str:
        return f"context · {self.model}"


@dataclass(frozen=True)
class LatentEncodeJob(JobSpec):
    """An image file to a latent model's latent (its VAE encoder's mean, in the model's own
    axes): how a dropped picture becomes a keyframe of the explorer."""

    kind: ClassVar[str] = "latent-encode"

    image: str = ""  # path to the picture (PNG, JPEG, ...)

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.image, str) or not self.image:
            raise SpecError("image", "must name the picture to encode.")

    @property
    def title(self) -> str:
        return f"encode · {self.image.replace(chr(92), '/').rsplit('/', 1)[-1]}"


def _plain_rows(rows: Any) -> Any:
    """Latent vectors (lists, tuples or numpy arrays) as a tuple of tuples of floats; what cannot
    be converted is returned as it is, for validate() to refuse with a sentence."""
    rows = rows.tolist() if hasattr(rows, "tolist") else rows
    if isinstance(rows, (list, tuple)):
        # A numpy scalar has tolist() too, and gives a float: one flat vector is not rows.
        rows = [r.tolist() if hasattr(r, "tolist") else r for r in rows]
        if all(isinstance(r, (list, tuple)) for r in rows):
            return tuple(tuple(_plain_float(v) for v in r) for r in rows)
    return rows


def _check_rows(name: str, rows: tuple) -> None:
    sizes = {len(r) if isinstance(r, tuple) else -1 for r in rows}
    if len(sizes) != 1 or sizes == {0} or sizes == {-1}:
        raise SpecError(name, "must be vectors of numbers, all the same length.")
    if not all(isinstance(v, float) and math.isfinite(v) for r in rows for v in r):
        raise SpecError(name, "must hold only finite numbers.")


def _plain_float(value: Any) -> Any:
    """A real number as a float (one too large for a float stays as it is, to be refused)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return value
    return value


MORPH_SPACINGS = ("even", "uniform")
MORPH_METHODS = ("slerp", "lerp")
MAX_MORPH_FRAMES = 10_000
MAX_KEYFRAMES = 256
MAX_PROMPT_CHARS = 2000  # a keyframe prompt; CLIP reads 77 tokens of it anyway


@dataclass(frozen=True)
class MorphJob(JobSpec):
    """Frames along a path between keyframes, `frames` in all. "even" spacing places the frames so
    that neighbouring images differ about equally (more frames where the picture changes fast);
    "uniform" spaces them equally in time and has every keyframe as a frame.

    On a latent model (emoji-vae, emoji-gan) the keyframes are `seeds` (each a standard normal
    latent drawn from that seed) or given `latents`, joined by slerp (noise latents keep their
    norm) or lerp (`method`).

    On a diffusion image model the keyframes are `seeds` (seed travel: each frame starts from the
    slerp of the keyframes' initial noises, with one `prompt`), or `prompts` (prompt travel: the
    prompts' text embeddings are lerped, from the fixed `seed`; with as many `seeds` as prompts
    the noise travels too). `method` is then the noise's path; the other fields are those of an
    image job and mean the same."""

    kind: ClassVar[str] = "morph"

    seeds: tuple[int, ...] = ()
    latents: tuple[tuple[float, ...], ...] = ()
    frames: int = 60
    spacing: str = "even"
    method: str = "slerp"
    # Diffusion models only (ImageJob's fields and defaults).
    prompts: tuple[str, ...] = ()
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    scheduler: str = ""

    def __post_init__(self) -> None:
        # JSON gives lists and callers may pass numpy arrays; keep tuples of plain numbers, so the
        # spec compares, hashes and serialises one way. What cannot be converted is left for
        # validate() to refuse with a sentence.
        seeds = self.seeds.tolist() if hasattr(self.seeds, "tolist") else self.seeds
        if isinstance(seeds, list):
            object.__setattr__(self, "seeds", tuple(seeds))
        object.__setattr__(self, "latents", _plain_rows(self.latents))
        if isinstance(self.prompts, list):
            object.__setattr__(self, "prompts", tuple(self.prompts))

    @property
    def keyframes(self) -> int:
        """How many keyframes the morph passes through."""
        return len(self.prompts or self.seeds or self.latents)

    def validate(self) -> None:
        super().validate()
        for name in ("seeds", "latents", "prompts"):
            if not isinstance(getattr(self, name), tuple):
                raise SpecError(name, "must be a list.")
        if not (self.seeds or self.latents or self.prompts):
            raise SpecError("seeds", "or `latents` (or `prompts`, on a diffusion model) must give the keyframes.")
        if self.latents and (self.seeds or self.prompts):
            raise SpecError("seeds" if self.seeds else "prompts",
                            "cannot be given with `latents`: one of them gives the keyframes, not both.")
        if len(self.seeds) > MAX_KEYFRAMES:
            raise SpecError("seeds", f"must be a list of at most {MAX_KEYFRAMES} seeds.")
        for seed in self.seeds:
            _check_int("seeds", seed, 0, MAX_SEED)
        if len(self.latents) > MAX_KEYFRAMES:
            raise SpecError("latents", f"must be a list of at most {MAX_KEYFRAMES} latent vectors.")
        if self.latents:
            _check_rows("latents", self.latents)
        if len(self.prompts) > MAX_KEYFRAMES:
            raise SpecError("prompts", f"must be a list of at most {MAX_KEYFRAMES} prompts.")
        for text in self.prompts:
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_PROMPT_CHARS:
                raise SpecError("prompts", f"must hold non-empty texts of at most {MAX_PROMPT_CHARS} characters, "
                                           f"not {_shown(text)}.")
            check_unicode("prompts", text)
        if self.prompts and self.seeds and len(self.seeds) != len(self.prompts):
            raise SpecError("seeds", f"must give one seed per prompt ({len(self.prompts)}), not {len(self.seeds)}, "
                                     "or be left out to keep `seed` for every frame.")
        if self.prompts and isinstance(self.prompt, str) and self.prompt:
            raise SpecError("prompt", "must be empty when `prompts` give the keyframes.")
        if self.keyframes < 2:
            field_name = "prompts" if self.prompts else "seeds" if self.seeds else "latents"
            raise SpecError(field_name, "must give at least two keyframes to morph between.")
        _check_int("frames", self.frames, 2, MAX_MORPH_FRAMES)
        if self.spacing == "uniform" and self.frames < self.keyframes:
            raise SpecError("frames", f"must be at least the number of keyframes ({self.keyframes}) "
                                      "with uniform spacing, which shows each of them.")
        _check_choice("spacing", self.spacing, MORPH_SPACINGS)
        _check_choice("method", self.method, MORPH_METHODS)
        # The diffusion fields follow an image job's rules (and name the same fields).
        ImageJob(model=self.model, runtime=self.runtime, device=self.device, prompt=self.prompt,
                 negative_prompt=self.negative_prompt, seed=self.seed, steps=self.steps,
                 guidance_scale=self.guidance_scale, width=self.width, height=self.height,
                 scheduler=self.scheduler).validate()

    @property
    def diffusion_fields(self) -> tuple[str, ...]:
        """The diffusion-only fields this spec sets (a latent model refuses them)."""
        return tuple(name for name in ("prompts", "prompt", "negative_prompt", "scheduler") if getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["seeds"], data["latents"] = list(self.seeds), [list(r) for r in self.latents]
        data["prompts"] = list(self.prompts)
        return data

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

    out: str = ""  # the folder to write; "" = the user's models folder, as MODEL-onnx
    replace: bool = False  # replace `out` when it already holds files

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.out, str):
            raise SpecError("out", f"must be a folder path, not {_shown(self.out)}.")
        if not isinstance(self.replace, bool):
            raise SpecError("replace", f"must be true or false, not {_shown(self.replace)}.")

    @property
    def title(self) -> str:
        return f"export · {self.model} → ONNX"


SPEC_TYPES: dict[str, type[JobSpec]] = {
    t.kind: t for t in (ImageJob, TextJob, LatentDecodeJob, ContextJob, MorphJob, LatentEncodeJob, LatentBatchJob,
                        ExportJob)}


def spec_from_dict(data: dict[str, Any]) -> JobSpec:
    """Rebuild a spec from `to_dict()` output; unknown or mistyped fields raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError("spec", "must be a JSON object.")
    kind = data.get("kind")
    spec_type = SPEC_TYPES.get(kind) if isinstance(kind, str) else None
    if spec_type is None:
        raise SpecError("kind", f"must be one of {', '.join(SPEC_TYPES)}, not {_shown(kind)}.")
    names = {f.name for f in dataclasses.fields(spec_type)}
    unknown = sorted(set(data) - names - {"kind"}, key=str)
    if unknown:
        name = str(unknown[0])  # untrusted: quoted and cut unless it reads like a field name
        raise SpecError(name if name.isidentifier() and len(name) <= 60 else _shown(name),
                        f"is not a field of a {kind} job.")
    values = {k: v for k, v in data.items() if k != "kind"}
    if "latent" in values and isinstance(values["latent"], list):
        values["latent"] = tuple(values["latent"])
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
