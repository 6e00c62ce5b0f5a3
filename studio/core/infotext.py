"""Generation settings as text: AUTOMATIC1111's infotext (written and parsed), and importers for the
metadata other tools embed in PNGs, JPEGs and WebPs (Forge, Fooocus and RuinedFooocus, ComfyUI,
SwarmUI, NovelAI, Civitai, diffusers apps, InvokeAI), all into ImportedSettings.

Everything read here is untrusted: a field with the wrong type or an out-of-range value is left at
its default instead of raising. The only error is MetadataError: not a readable PNG, JPEG or WebP,
or nothing to import."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import studio
from studio.core.errors import MetadataError, SpecError
from studio.core.events import RunInfo
from studio.core.jobs import MAX_IMAGE_SEED, MAX_LORAS, SCHEDULERS, ImageJob, spec_from_dict
from studio.core.png import read_image_file, read_image_text
from studio.core.untrusted import printable

MAX_PROMPT = 20_000  # characters kept of an imported prompt or negative prompt
_WEIGHT_SUFFIXES = {".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx"}


def _number(x: float) -> str:
    """7.0 -> "7", 0.35 -> "0.35": short, and exact (repr) so values round-trip."""
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def _model_name(model: str) -> str:
    """A model as A1111 names it: the file stem of a weights file, else the last path part (or id)."""
    path = Path(model.replace("\\", "/"))
    if path.suffix.lower() in _WEIGHT_SUFFIXES:
        return path.stem
    return path.name or model


# --- writing ------------------------------------------------------------------------------------


def _quote(value: Any) -> str:
    # A1111's rule: a value holding a separator is written as a JSON string.
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def _split_sampler(name: str) -> tuple[str, Optional[str]]:
    # A1111 >= 1.9 writes "DPM++ 2M Karras" as Sampler "DPM++ 2M" plus Schedule type "Karras".
    if name.endswith(" Karras"):
        return name[: -len(" Karras")], "Karras"
    return name, None


def _info_text(info: Mapping, key: str) -> Optional[str]:
    value = info.get(key)
    return value if isinstance(value, str) and value else None


def a1111_parameters(spec: ImageJob, info: Union[RunInfo, Mapping, None] = None) -> str:
    """The generation parameters in AUTOMATIC1111's infotext layout (prompt, negative, key line).

    `info` is what the backend reports: model_hash (full sha256 hex), model_name, scheduler (an
    A1111 name, used when the spec leaves it to the model) and lora_hashes ({name: 12 hex}). A
    mapping (an "info" read back from an image, untrusted) is checked value by value."""
    if isinstance(info, RunInfo):
        info = info.to_dict()
    info = info if isinstance(info, Mapping) else {}
    prompt = spec.prompt + "".join(f" <lora:{_model_name(path)}:{_number(w)}>" for path, w in spec.loras)
    sampler, schedule = _split_sampler(spec.scheduler or _info_text(info, "scheduler") or "")
    model_hash = _info_text(info, "model_hash")
    lora_hashes = info.get("lora_hashes")
    if isinstance(lora_hashes, Mapping):
        pairs = [f"{n}: {h}" for n, h in lora_hashes.items() if isinstance(n, str) and isinstance(h, str)]
        lora_hashes = ", ".join(pairs) or None
    else:
        lora_hashes = None
    version = getattr(studio, "__version__", None)
    params = {  # A1111's key order; None drops a key
        "Steps": spec.steps,
        "Sampler": sampler or None,
        "Schedule type": schedule,
        "CFG scale": _number(spec.guidance_scale),
        "Seed": spec.seed,
        "Size": f"{spec.width}x{spec.height}",
        "Model hash": model_hash[:10] if model_hash else None,
        "Model": _info_text(info, "model_name") or _model_name(spec.model) or None,
        "Denoising strength": _number(spec.strength) if spec.mode != "txt2img" else None,
        "Lora hashes": lora_hashes,
        "Version": f"studio-{version}" if version else "studio",
    }
    line = ", ".join(k if k == v else f"{k}: {_quote(v)}" for k, v in params.items() if v is not None)
    negative = f"\nNegative prompt: {spec.negative_prompt}" if spec.negative_prompt else ""
    return f"{prompt}{negative}\n{line}".strip()


# --- parsing A1111 --------------------------------------------------------------------------------

# A1111's key/value pattern, unchanged, so we split lines exactly as it does.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY_RUN = re.compile(r"\s*(?:\w[\w \-/]+)?")
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def _find_params(line: str) -> list[tuple[str, str]]:
    """What re.findall(_PARAM, line) returns, in linear time.

    findall retries at every position, which is quadratic on a long run of word characters with
    no colon. A failed match at `pos` fails at every start inside the same run of blanks and key
    characters (they all end at the same non-colon character), so the scan jumps past the run."""
    found = []
    pos = 0
    while pos < len(line):
        match = _PARAM.match(line, pos)
        if match:
            found.append((match.group(1), match.group(2)))
            pos = match.end()
        else:
            run = _KEY_RUN.match(line, pos)  # matches at every position (it may match nothing)
            pos = max(pos + 1, run.end() if run else 0)
    return found


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value.strip()


def parse_a1111(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, {key: value}) by A1111's rules: the last line holds the parameters
    only if it has at least 3 key/value pairs; "WxH" values become Key-1 and Key-2."""
    *lines, last = text.strip().split("\n")
    found = _find_params(last)
    if len(found) < 3:
        lines.append(last)
        found = []
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:") :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    params: dict[str, str] = {}
    for key, value in found:
        value = _unquote(value)
        size = _SIZE.match(value)
        if size:
            params[f"{key}-1"], params[f"{key}-2"] = size.group(1), size.group(2)
        else:
            params[key] = value
    return "\n".join(prompt).strip(), "\n".join(negative).strip(), params


# --- untrusted values -------------------------------------------------------------------------------

_INT_TEXT = re.compile(r"\s*[+-]?[0-9]{1,20}\s*")


def _int(value: Any, lo: int, hi: int) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            return None
        value = int(value)
    elif isinstance(value, str):
        if len(value) > 40 or not _INT_TEXT.fullmatch(value):
            return None
        value = int(value)
    elif not isinstance(value, int):
        return None
    return value if lo <= value <= hi else None


def _float(value: Any, lo: float, hi: float) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > 40:
            return None
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int too large for any float is out of every range
        return None
    return value if math.isfinite(value) and lo <= value <= hi else None


def _text(value: Any, limit: int = MAX_PROMPT) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested brackets
        return None


# --- imported settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedSettings:
    """Generation settings read from an image. Fields the image did not give (or gave wrong) are
    None or "". `scheduler` is one of jobs.SCHEDULERS or "" when Studio has no match; `sampler`
    keeps the source's own name for display. `spec` is set only for Studio's own images."""

    source: str
    prompt: str = ""
    negative_prompt: str = ""
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    seed: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    scheduler: str = ""
    strength: Optional[float] = None
    model: str = ""
    model_hash: str = ""
    loras: tuple[tuple[str, float], ...] = ()
    spec: Optional[ImageJob] = None
    text: str = ""
    sampler: str = ""


def _settings(source: str, **fields: Any) -> ImportedSettings:
    """ImportedSettings from raw values, each checked against its range (bad ones are dropped)."""
    scheduler = fields.get("scheduler")
    return ImportedSettings(
        source=source,
        prompt=_text(fields.get("prompt")),
        negative_prompt=_text(fields.get("negative_prompt")),
        steps=_int(fields.get("steps"), 1, 1000),
        guidance_scale=_float(fields.get("guidance_scale"), 0.0, 50.0),
        seed=_int(fields.get("seed"), 0, MAX_IMAGE_SEED),
        width=_int(fields.get("width"), 8, 4096),
        height=_int(fields.get("height"), 8, 4096),
        scheduler=scheduler if isinstance(scheduler, str) and scheduler in SCHEDULERS else "",
        strength=_float(fields.get("strength"), 0.0, 1.0),
        model=_text(fields.get("model"), 500),
        model_hash=_text(fields.get("model_hash"), 100),
        loras=tuple(fields.get("loras") or ())[:MAX_LORAS],
        spec=fields.get("spec"),
        sampler=_text(fields.get("sampler"), 100),
    )


def _sampler_text(sampler: Any, schedule: Any) -> str:
    """A foreign sampler as its tool names it, "euler_ancestral / karras", for the caption."""
    return " / ".join(x for x in (sampler, schedule) if isinstance(x, str))[:100]


def _lora(name: Any, weight: Any) -> Optional[tuple[str, float]]:
    if not isinstance(name, str) or not name.strip():
        return None
    w = _float(weight, -10.0, 10.0)
    return _model_name(name.strip()[:200]), 1.0 if w is None else w


_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>", re.IGNORECASE)


def _take_loras(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Remove <lora:name:weight> tags from a prompt, with the blanks before each, into (name, weight)."""
    loras: list[tuple[str, float]] = []
    pieces: list[str] = []
    pos = 0
    for tag in _LORA_TAG.finditer(prompt):
        pieces.append(prompt[pos : tag.start()].rstrip(" \t"))
        pos = tag.end()
        lora = _lora(tag.group(1), tag.group(2) if tag.group(2) is not None else 1.0)
        if lora:
            loras.append(lora)
    pieces.append(prompt[pos:])
    return "".join(pieces).strip(), loras


# ComfyUI sampler_name -> ours (a scheduler of "karras" adds " Karras" where we have that variant).
_COMFY_SAMPLERS = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
    "heun": "Heun",
    "lms": "LMS",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
}
_INVOKE_SCHEDULERS = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
    "heun": "Heun",
    "lms": "LMS",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
}


def _comfy_scheduler(sampler: Any, schedule: Any) -> str:
    name = _COMFY_SAMPLERS.get(sampler) if isinstance(sampler, str) else None
    if name is None:
        return ""
    if schedule in (None, "", "normal", "simple") or (name == "DDIM" and schedule == "ddim_uniform"):
        return name
    if schedule == "karras" and f"{name} Karras" in SCHEDULERS:
        return f"{name} Karras"
    return ""  # another noise schedule: not what our scheduler of that name would do


def _a1111_scheduler(sampler: str, schedule: str) -> str:
    if sampler in _COMFY_SAMPLERS:  # Fooocus and some forks write ComfyUI's names
        return _comfy_scheduler(sampler, schedule.lower() or None)
    if schedule in ("", "Automatic"):
        name = sampler
    elif schedule == "Karras" and not sampler.endswith(" Karras"):
        name = f"{sampler} Karras"
    else:
        return ""
    return name if name in SCHEDULERS else ""


def _named_scheduler(sampler: Any, schedule: Any) -> str:
    """_a1111_scheduler for JSON values, which may name a sampler A1111's way ("DPM++ 2M Karras")
    or ComfyUI's ("euler_ancestral" with "karras"), or be of any type."""
    if not isinstance(sampler, str):
        return ""
    return _a1111_scheduler(sampler, schedule if isinstance(schedule, str) else "")


def _from_parameters(text: str, chunks: Mapping[str, str]) -> ImportedSettings:
    prompt, negative, p = parse_a1111(text)
    prompt, loras = _take_loras(prompt)
    version = p.get("Version", "")
    if "fooocus_scheme" in chunks or version.startswith("Fooocus"):
        source = "Fooocus"
    elif version.startswith("f"):  # Forge versions read like "f2.0.1v1.10.1-previous-..."
        source = "Forge"
    else:
        source = "AUTOMATIC1111"
    sampler, schedule = p.get("Sampler", ""), p.get("Schedule type", "")
    # With hires fix, "Denoising strength" is the second pass's, not an img2img strength.
    hires = any(key.startswith("Hires") for key in p)
    return _settings(
        source,
        prompt=prompt,
        negative_prompt=negative,
        steps=p.get("Steps"),
        guidance_scale=p.get("CFG scale"),
        seed=p.get("Seed"),
        width=p.get("Size-1"),
        height=p.get("Size-2"),
        scheduler=_a1111_scheduler(sampler, schedule),
        sampler=" ".join(x for x in (sampler, schedule) if x and x != "Automatic"),
        strength=None if hires else p.get("Denoising strength"),
        model=p.get("Model"),
        model_hash=p.get("Model hash"),
        loras=loras,
    )


def _first(data: dict, *keys: str) -> Any:
    """The value of the first of `keys` the JSON object has (tools name the same field differently)."""
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def _from_fooocus_json(data: dict) -> ImportedSettings:
    """A JSON object of settings: Fooocus's own scheme (fooocus_scheme = "fooocus"), RuinedFooocus's
    (its "software" says so) and the diffusers apps' (Hugging Face spaces: num_inference_steps).
    Best effort on their keys, which name the same fields differently."""
    size = re.findall(r"[0-9]{1,5}", _text(data.get("resolution"), 40))
    width = size[0] if len(size) == 2 else data.get("width")
    height = size[1] if len(size) == 2 else data.get("height")
    items = data.get("loras")
    items = items if isinstance(items, list) else []
    loras = [_lora(*item[:2]) for item in items if isinstance(item, list) and len(item) >= 2]
    sampler, schedule = _first(data, "sampler", "sampler_name"), data.get("scheduler")
    software = data.get("software")
    source = (
        "RuinedFooocus"
        if software == "RuinedFooocus"
        else "diffusers app"
        if "num_inference_steps" in data
        else "Fooocus"
    )
    return _settings(
        source,
        prompt=_text(_first(data, "prompt", "Prompt")).strip(),
        negative_prompt=_text(_first(data, "negative_prompt", "Negative")).strip(),
        steps=_first(data, "steps", "num_inference_steps"),
        guidance_scale=_first(data, "guidance_scale", "cfg"),
        seed=data.get("seed"),
        width=width,
        height=height,
        scheduler=_named_scheduler(sampler, schedule),
        sampler=_sampler_text(sampler, schedule),
        model=_model_name(_text(_first(data, "base_model", "base_model_name", "Model"), 500)),
        model_hash=_first(data, "base_model_hash", "Model hash"),
        loras=[x for x in loras if x],
    )


def _from_swarmui(data: dict) -> Optional[ImportedSettings]:
    """SwarmUI's "parameters" JSON: {"sui_image_params": {...}, "sui_models": [...]}. It also
    writes a ComfyUI graph in "prompt"; these are its own settings, so they come first."""
    p = data.get("sui_image_params")
    if not isinstance(p, dict):
        return None
    models = data.get("sui_models")
    hashes = (
        [m.get("hash") for m in models if isinstance(m, dict) and m.get("param") == "model"]
        if isinstance(models, list)
        else []
    )
    sampler, schedule = p.get("sampler"), p.get("scheduler")
    return _settings(
        "SwarmUI",
        prompt=_text(p.get("prompt")).strip(),
        negative_prompt=_text(p.get("negativeprompt")).strip(),
        steps=p.get("steps"),
        guidance_scale=p.get("cfgscale"),
        seed=p.get("seed"),
        width=p.get("width"),
        height=p.get("height"),
        scheduler=_comfy_scheduler(sampler, schedule),
        sampler=_sampler_text(sampler, schedule),
        model=p.get("model"),
        model_hash=hashes[0] if hashes else "",
        strength=p.get("initimagecreativity"),
    )


def _from_civitai(data: dict) -> Optional[ImportedSettings]:
    """Civitai's generator: its ComfyUI graph as JSON (node ids as keys), with its own settings as
    a JSON text under "extraMetadata". What the graph says wins (size, denoise, the model's AIR);
    extraMetadata fills what it does not (an upscale-only graph has no sampler at all)."""
    extra = _json(data.get("extraMetadata")) if isinstance(data.get("extraMetadata"), str) else None
    if not isinstance(extra, dict):
        return None
    graph = {key: node for key, node in data.items() if isinstance(node, dict) and "class_type" in node}
    from_graph = _from_comfy(graph) if graph else None
    sampler = extra.get("sampler")
    own = _settings(
        "Civitai",
        prompt=_text(extra.get("prompt")).strip(),
        negative_prompt=_text(extra.get("negativePrompt")).strip(),
        steps=extra.get("steps"),
        guidance_scale=extra.get("cfgScale"),
        seed=extra.get("seed"),
        width=extra.get("width"),
        height=extra.get("height"),
        scheduler=_named_scheduler(sampler, None),
        sampler=_text(sampler, 100),
    )
    if from_graph is None:
        return own
    merged = {
        f.name: getattr(from_graph, f.name) or getattr(own, f.name)
        for f in dataclasses.fields(ImportedSettings)
        if f.name not in ("source", "text")
    }
    return dataclasses.replace(from_graph, source="Civitai", **merged)


def _from_novelai(chunks: Mapping[str, str]) -> Optional[ImportedSettings]:
    """NovelAI's PNG chunks (Software "NovelAI", its settings as JSON in "Comment", the model in
    "Source"); its WebP files carry the same chunks as one JSON object in EXIF."""
    if chunks.get("Software") != "NovelAI":
        return None
    data = _json(chunks.get("Comment"))
    if not isinstance(data, dict):
        return None
    negative = data.get("uc")
    v4 = data.get("v4_negative_prompt")
    if not isinstance(negative, str) and isinstance(v4, dict) and isinstance(v4.get("caption"), dict):
        negative = v4["caption"].get("base_caption")
    sampler, schedule = data.get("sampler"), data.get("noise_schedule")
    comfy_name = sampler[2:] if isinstance(sampler, str) and sampler.startswith("k_") else sampler
    source = _text(chunks.get("Source"), 200)
    return _settings(
        "NovelAI",
        prompt=data.get("prompt"),
        negative_prompt=negative,
        steps=data.get("steps"),
        guidance_scale=data.get("scale"),
        seed=data.get("seed"),
        width=data.get("width"),
        height=data.get("height"),
        scheduler=_comfy_scheduler(comfy_name, schedule),
        sampler=_sampler_text(sampler, schedule),
        model=re.sub(r"\s+[0-9A-F]{8}$", "", source),  # "NovelAI Diffusion V4.5 4BDE2A90": the name, not its build id
    )


def _from_invokeai(data: dict) -> ImportedSettings:
    model = data.get("model")
    model_name = model_hash = None
    if isinstance(model, dict):
        model_name = model.get("name") or model.get("model_name")
        model_hash = model.get("hash")
    elif isinstance(model, str):
        model_name = model
    loras = []
    items = data.get("loras")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            ref = item.get("model") or item.get("lora")  # InvokeAI 4 / 3
            name = (ref.get("name") or ref.get("model_name")) if isinstance(ref, dict) else None
            loras.append(_lora(name, item.get("weight")))
    scheduler = data.get("scheduler")
    return _settings(
        "InvokeAI",
        prompt=data.get("positive_prompt"),
        negative_prompt=data.get("negative_prompt"),
        steps=data.get("steps"),
        guidance_scale=data.get("cfg_scale"),
        seed=data.get("seed"),
        width=data.get("width"),
        height=data.get("height"),
        scheduler=_INVOKE_SCHEDULERS.get(scheduler, "") if isinstance(scheduler, str) else "",
        sampler=scheduler,
        strength=data.get("strength"),
        model=model_name,
        model_hash=model_hash,
        loras=[x for x in loras if x],
    )


def _from_studio(text: str) -> Optional[ImportedSettings]:
    data = _json(text)
    if not isinstance(data, dict):
        return None
    info = data.pop("info", None)
    info = info if isinstance(info, dict) else {}
    try:
        spec = spec_from_dict(data)
    except (SpecError, TypeError, ValueError):
        return None  # not a usable spec: the `parameters` chunk is read instead
    if not isinstance(spec, ImageJob):
        return None
    return _settings(
        "Studio",
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        seed=spec.seed,
        width=spec.width,
        height=spec.height,
        # The spec says "" for the model's own sampler; the info records which one that was.
        scheduler=spec.scheduler,
        sampler=spec.scheduler
        or (
            f"{info['scheduler']} (the model's own)"
            if isinstance(info.get("scheduler"), str) and info.get("scheduler")
            else ""
        ),
        strength=spec.strength if spec.mode != "txt2img" else None,
        model=spec.model,
        model_hash=info.get("model_hash"),
        loras=[(_model_name(p), float(w)) for p, w in spec.loras],
        spec=spec,
    )


# --- ComfyUI API graph ------------------------------------------------------------------------------

_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
# Where text nodes keep their text: ComfyUI's own encoders, and custom nodes' ("Text" in Derfuu's
# text box, "prompt" in rgthree's Power Prompt).
_TEXT_KEYS = ("text", "text_g", "t5xxl", "clip_l", "text_l", "prompt", "string", "value", "Text")
_MAX_VISITS = 256  # nodes looked at per search: a graph is untrusted and may loop


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
    )


class _Graph:
    def __init__(self, data: dict):
        self.nodes = {str(k): v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("inputs"), dict)}

    def node(self, link: Any) -> Optional[dict]:
        return self.nodes.get(str(link[0])) if _is_link(link) else None

    def resolve(self, value: Any, names: tuple[str, ...]) -> Any:
        """A literal input, following links to a node holding it under one of `names` (a primitive)."""
        for _ in range(16):
            if not _is_link(value):
                return value
            node = self.node(value)
            if node is None:
                return None
            value = next((node["inputs"][n] for n in names if n in node["inputs"]), None)
        return None

    def field(self, node: dict, name: str, via: tuple[str, ...] = ()) -> Any:
        """Input `name` of a sampler node, or of the helper node behind one of its `via` links
        (SamplerCustomAdvanced keeps its seed in RandomNoise, its steps in BasicScheduler, ...)."""
        names = (name, "value", "seed", "noise_seed", "int", "float")
        if name in node["inputs"]:
            return self.resolve(node["inputs"][name], names)
        for hop in via:
            helper = self.node(node["inputs"].get(hop))
            if helper is not None and name in helper["inputs"]:
                return self.resolve(helper["inputs"][name], names)
        return None

    def text(self, link: Any, role: str) -> str:
        """The prompt text behind a conditioning link: through combine / ControlNet / reroute nodes
        to the text encoders, depth first, each node once."""
        texts: list[str] = []
        stack, seen = [link], set()
        while stack and len(seen) < _MAX_VISITS:
            link = stack.pop()
            node = self.node(link)
            if node is None or str(link[0]) in seen:
                continue
            seen.add(str(link[0]))
            kind = node.get("class_type")
            kind = kind if isinstance(kind, str) else ""
            inputs = node["inputs"]
            if kind == "ConditioningZeroOut":  # an empty negative, whatever fed it
                continue
            # Encoders, and custom nodes that encode their own prompt (rgthree's Power Prompt); a
            # "Prompt" node without text of its own is passed through like any other.
            if "TextEncode" in kind or "Prompt" in kind:
                found = next(
                    (
                        v
                        for v in (self.resolve(inputs.get(key), _TEXT_KEYS) for key in _TEXT_KEYS)
                        if isinstance(v, str)
                    ),
                    None,
                )
                if found is not None and found not in texts:
                    texts.append(found)
                if found is not None or "TextEncode" in kind:
                    continue
            if _is_link(inputs.get(role)):
                nxt = [inputs[role]]
            else:
                nxt = [v for k, v in inputs.items() if "conditioning" in k and _is_link(v)]
                nxt = nxt or [v for v in inputs.values() if _is_link(v)]
            stack.extend(reversed(nxt))  # reversed: the first input is read first
        return "\n".join(texts)

    def search(self, link: Any, follow: Optional[tuple[str, ...]], found) -> Any:
        """Breadth first from `link` along inputs named in `follow` (all links when None): the first
        `found(node)` that is not None."""
        queue, seen = [link], set()
        while queue and len(seen) < _MAX_VISITS:
            link = queue.pop(0)
            node = self.node(link)
            if node is None or str(link[0]) in seen:
                continue
            seen.add(str(link[0]))
            result = found(node)
            if result is not None:
                return result
            queue += [v for k, v in node["inputs"].items() if (follow is None or k in follow) and _is_link(v)]
        return None


def _node_order(node_id: str) -> tuple[int, str]:
    # isascii: "²" and other Unicode digits pass isdigit() but are no number int() reads.
    return (int(node_id), "") if node_id.isascii() and node_id.isdigit() and len(node_id) < 10 else (1 << 40, node_id)


def _from_comfy(data: dict) -> Optional[ImportedSettings]:
    graph = _Graph(data)
    samplers = [
        graph.nodes[i]
        for i in sorted(graph.nodes, key=_node_order)
        if graph.nodes[i].get("class_type") in _SAMPLER_NODES
    ]
    if not samplers:
        return None

    def denoise(node: dict) -> Any:
        return graph.field(node, "denoise", ("sigmas",))

    # With a hires pass there are two samplers: the first full-denoise one carries the base settings.
    full = [s for s in samplers if _float(denoise(s), 0.0, 1.0) in (None, 1.0)]
    node = (full or samplers)[0]
    guider = graph.node(node["inputs"].get("guider"))
    conditioning = guider["inputs"] if guider else node["inputs"]
    positive = conditioning.get("positive", conditioning.get("conditioning"))
    negative = conditioning.get("negative")
    strength = _float(denoise(node), 0.0, 1.0)

    def size(n: dict) -> Optional[tuple[int, int]]:
        w, h = (_int(graph.resolve(n["inputs"].get(k), (k, "value", "int")), 8, 4096) for k in ("width", "height"))
        return (w, h) if w and h else None

    loras: list[tuple[str, float]] = []

    def checkpoint(n: dict) -> Optional[str]:
        for key in ("ckpt_name", "unet_name"):
            if isinstance(n["inputs"].get(key), str):
                return n["inputs"][key]
        if isinstance(n["inputs"].get("lora_name"), str):  # LoraLoader on the way to the checkpoint
            lora = _lora(n["inputs"]["lora_name"], n["inputs"].get("strength_model", 1.0))
            if lora:
                loras.append(lora)
        return None

    model_link = node["inputs"].get("model", guider["inputs"].get("model") if guider else None)
    ckpt = graph.search(model_link, ("model",), checkpoint)
    if ckpt is None:
        ckpt = next(
            (
                n["inputs"].get("ckpt_name")
                for n in graph.nodes.values()
                if n.get("class_type") == "CheckpointLoaderSimple"
            ),
            None,
        )
    wh = graph.search(node["inputs"].get("latent_image"), None, size) or (None, None)
    sampler_name = graph.field(node, "sampler_name", ("sampler",))
    schedule = graph.field(node, "scheduler", ("sigmas",))
    return _settings(
        "ComfyUI",
        prompt=graph.text(positive, "positive") if positive else "",
        negative_prompt=graph.text(negative, "negative") if negative else "",
        seed=graph.field(node, "seed") if "seed" in node["inputs"] else graph.field(node, "noise_seed", ("noise",)),
        steps=graph.field(node, "steps", ("sigmas",)),
        guidance_scale=graph.field(node, "cfg", ("guider",)),
        width=wh[0],
        height=wh[1],
        scheduler=_comfy_scheduler(sampler_name, schedule),
        sampler=_sampler_text(sampler_name, schedule),
        strength=strength if strength is not None and strength < 1.0 else None,
        model=_model_name(ckpt) if isinstance(ckpt, str) else "",
        loras=loras,
    )


# --- entry points -----------------------------------------------------------------------------------


def _from_chunks(chunks: Mapping[str, str]) -> Optional[ImportedSettings]:
    """The richest source present: our own chunk, then infotext, then InvokeAI's, then ComfyUI's."""
    if "studio" in chunks:
        settings = _from_studio(chunks["studio"])
        if settings:
            return settings
    parameters = chunks.get("parameters", "")
    data = _json(parameters) if parameters.lstrip().startswith("{") else None
    if isinstance(data, dict) and isinstance(data.get("Comment"), str) and data.get("Software") == "NovelAI":
        chunks, parameters = {k: v for k, v in data.items() if isinstance(v, str)}, ""  # NovelAI's WebP
    novelai = _from_novelai(chunks)
    if novelai is not None:
        return novelai
    if parameters.strip():
        if isinstance(data, dict):
            return _from_swarmui(data) or _from_civitai(data) or _from_fooocus_json(data)
        return _from_parameters(parameters, chunks)
    invoke = _json(chunks.get("invokeai_metadata"))
    if isinstance(invoke, dict):
        return _from_invokeai(invoke)
    graph = _json(chunks.get("prompt"))
    if isinstance(graph, dict):
        return _from_comfy(graph)
    return None


def read_settings(image: Union[str, Path, bytes, bytearray]) -> ImportedSettings:
    """The generation settings embedded in a PNG, JPEG or WebP (a path or its bytes).

    MetadataError (one sentence naming the file) when it is not a readable image or holds no
    settings; any single bad field is just left out."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        name, chunks = "The image", read_image_text(bytes(image))
    else:
        name, chunks = Path(image).name, read_image_file(Path(image))
    settings = _from_chunks(chunks)
    if settings is None:
        raise MetadataError(f"{name} holds no generation parameters that Studio can read.")
    return dataclasses.replace(settings, text=describe(settings))


def describe(settings: ImportedSettings) -> str:
    """The settings as plain text, one "Key: value" per line (what `studio info IMAGE` prints)."""
    s = settings
    foreign = s.sampler and s.source != "Studio"
    sampler = s.scheduler or (f"{s.sampler} (not available in Studio)" if foreign else s.sampler or None)
    fields = [
        ("Source", s.source),
        ("Prompt", s.prompt),
        ("Negative prompt", s.negative_prompt or None),
        ("Steps", s.steps),
        ("Sampler", sampler),
        ("CFG scale", _number(s.guidance_scale) if s.guidance_scale is not None else None),
        ("Seed", s.seed),
        ("Size", f"{s.width}x{s.height}" if s.width and s.height else None),
        ("Denoising strength", _number(s.strength) if s.strength is not None else None),
        ("Model", s.model or None),
        ("Model hash", s.model_hash or None),
        ("LoRAs", ", ".join(f"{name} ({_number(w)})" for name, w in s.loras) or None),
    ]
    lines = [f"{key}: {value}".rstrip() for key, value in fields if value is not None]
    return printable("\n".join(lines))  # untrusted text must not rewrite what `studio info` shows
