"""The list of models the studio can see: embedded, the user's folder, folders from settings.

Discovery reads only small marker files, so it is fast enough to run before the window shows."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from studio.core import untrusted
from studio.core.errors import ModelFileError, ModelNotFound, first_line, shown
from studio.core.job_fields import fits
from studio.core.jobs import ImageJob
from studio.core.kinds import ModelFormat, ModelKind, Runtime
from studio.models import formats, paths

if TYPE_CHECKING:
    from studio.models.gguf_file import GgufHeader

log = logging.getLogger(__name__)


TEXT_FOLDERS = (ModelFormat.TRANSFORMERS, ModelFormat.ONNX_TEXT)  # a config.json and tokenizer files beside the weights
# Files in a models folder that are meant as models, so one the studio refuses is listed as unusable
# (other files, a README or a picture, are passed over in silence).
REPORTED_SUFFIXES = formats.PICKLE_SUFFIXES + (".safetensors", ".onnx", formats.GGUF_SUFFIX)


@dataclass(frozen=True)
class Suggested:
    """The settings a model is best started from: the image side it was trained at, and the
    steps and guidance scale its studio.json "defaults" suggest (None where it suggests none the
    studio can use). `studio generate` and the image workspace start a new job from these."""

    size: int
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None


def _suggested(model_id: str, manifest: dict[str, Any], size: int) -> Suggested:
    """Suggested from a manifest (untrusted): an entry of the wrong type, or out of an image job's
    bounds, is left out, with a warning in the log."""
    defaults = manifest.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    values: dict[str, Any] = {}
    for name in ("steps", "guidance_scale"):
        value = defaults.get(name)
        if value is None:
            continue
        if fits(ImageJob, name, value):
            values[name] = float(value) if name == "guidance_scale" else value
        else:
            log.warning(
                "%s: studio.json suggests %s %s, which no image job takes; ignored", model_id, name, shown(value)
            )
    return Suggested(size=size, **values)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    kind: ModelKind  # LoRA files are listed, never run as a model
    format: ModelFormat
    path: Path
    source: str  # "embedded" | "user" | "settings" | "path"
    runtimes: tuple[Runtime, ...] = (Runtime.TORCH,)  # the first is the model's own (a job's "auto")
    size_bytes: int = 0
    manifest: dict[str, Any] = field(default_factory=dict, compare=False)
    onnx_export: str = ""  # the id of this model's ONNX export (`studio export-onnx`), which runs it on "onnx"

    @property
    def title(self) -> str:
        return str(self.manifest.get("title") or self.id)

    @property
    def licence(self) -> str:
        return str(self.manifest.get("licence") or "")

    @property
    def latent_dim(self) -> Optional[int]:
        """A latent model's latent size when its manifest gives it (None for a bare .onnx file)."""
        return formats.manifest_latent_dim(self.manifest)

    @property
    def gguf(self) -> Optional["GgufHeader"]:
        """A GGUF model's checked header (None for other formats, or when the file changed and
        no longer passes the checks)."""
        if self.format != ModelFormat.GGUF:
            return None
        try:
            return formats.gguf_header(formats.gguf_path(self.path))
        except ModelFileError:
            return None

    @property
    def context_length(self) -> Optional[int]:
        """A text model's window in tokens, from its config or GGUF header (None when unknown)."""
        if self.format == ModelFormat.GGUF:
            header = self.gguf
            return header.context_length if header else None
        return formats.text_context_length(self.path) if self.format in TEXT_FOLDERS else None

    @property
    def has_chat_template(self) -> bool:
        """Whether a text model carries a chat template (instruct mode needs one); False as well
        when the file holding it cannot be read, is oversized or is malformed."""
        if self.format == ModelFormat.GGUF:
            return bool(self.gguf and self.gguf.chat_template)
        if self.format not in TEXT_FOLDERS:
            return False
        try:
            return formats.find_chat_template(self.path) is not None
        except ModelFileError:
            return False

    @property
    def details(self) -> str:
        """A GGUF model in a few words, for `studio models`: architecture, parameters,
        quantisation, context length and whether it has a chat template ("" for other models)."""
        header = self.gguf
        if header is None:
            return ""
        window = f"{header.context_length:,} ctx" if header.context_length else "ctx unknown"
        template = "chat template" if header.chat_template else "no chat template"
        return (
            f"{header.architecture} · {_parameters(header.parameter_count)} params · {header.quantisation} · "
            f"{window} · {template}"
        )

    @functools.cached_property
    def suggested(self) -> Suggested:
        """What the model is best started from, read once (its configs and studio.json)."""
        size = formats.default_image_size(self.path, self.format, self.manifest)
        return _suggested(self.id, self.manifest, size)

    @property
    def default_size(self) -> int:
        """The image side the model was trained at (for image and latent models)."""
        return self.suggested.size


def _parameters(count: int) -> str:
    """124,439,808 -> "124.4M"."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


@dataclass(frozen=True)
class ModelProblem:
    """A folder that looks like a model but cannot be used, and why (shown by `studio models`)."""

    path: Path
    source: str
    message: str


# Embedded models a workspace picks when the user has nothing else (emoji-vae before emoji-gan:
# it has an encoder, which the explorer's image keyframes will need).
PREFERRED_EMBEDDED = ("emoji-sd", "prose", "emoji-vae")


def _default_order(model: "ModelInfo") -> tuple[int, int]:
    if model.source != "embedded":
        return (0, 0)  # sorted() is stable: the user's own models keep their discovery order
    rank = PREFERRED_EMBEDDED.index(model.id) if model.id in PREFERRED_EMBEDDED else len(PREFERRED_EMBEDDED)
    return (1, rank)


def _own_runtimes(model: ModelInfo) -> tuple[Runtime, ...]:
    return tuple(r for r in model.runtimes if not (r == Runtime.ONNX and model.onnx_export))


def _pair_exports(models: dict[str, ModelInfo]) -> frozenset[str]:
    """Pair each ONNX export with the model it was exported from (its studio.json says which):
    the source gains the "onnx" runtime. Returns the ids of the paired exports. An export whose
    source is gone, or is of another kind, stays a model of its own."""
    paired = set()
    for export in list(models.values()):
        source = models.get(str(export.manifest.get("exported_from") or ""))
        if source is None or export.runtimes != (Runtime.ONNX,) or source.kind != export.kind or source is export:
            continue
        if Runtime.ONNX in source.runtimes:  # it has its own ONNX file already (a studio-latent "onnx" key)
            continue
        made_from = export.manifest.get("source_weights")
        try:
            changed = made_from is not None and made_from != formats.weights_fingerprint(source.path)
        except OSError:
            changed = True
        if changed:  # made from other weights: listed on its own, not run in the source's place
            log.warning("%s was exported from another version of %s; export it again", export.id, source.id)
            continue
        models[source.id] = replace(source, runtimes=source.runtimes + (Runtime.ONNX,), onnx_export=export.id)
        paired.add(export.id)
    return frozenset(paired)


def _absolute(path: Path) -> Path:
    """`path` made absolute, unless it starts with `~` (the scan expands that, or says why not)."""
    return path if str(path).startswith("~") else path.absolute()


def default_roots(extra: Iterable[str | Path] = ()) -> list[tuple[Path, str]]:
    roots = [(paths.embedded_models_dir(), "embedded"), (paths.user_models_dir(), "user")]
    roots += [(Path(p), "settings") for p in extra]  # `~` is expanded by the scan, which can say why not
    return roots


def inspect(path: Path, source: str, model_id: Optional[str] = None) -> ModelInfo:
    """A ModelInfo for one path; ModelFileError if it is not a model the studio can use. A pickle
    file that `studio convert` has converted stands for its safetensors copy: only that is used."""
    if path.is_file():
        path = formats.converted_copy(path) or path
    detected = formats.detect(path)
    if detected is None:
        raise ModelFileError(
            f"{path} is not a model the studio recognises (a diffusers or transformers folder, a Stable "
            "Diffusion .safetensors checkpoint or LoRA, a .gguf or .onnx file, or a folder with studio.json)."
        )
    return ModelInfo(
        id=model_id or (path.stem if path.is_file() else path.name),
        kind=detected.kind,
        format=detected.format,
        path=path,
        source=source,
        runtimes=detected.runtimes,
        size_bytes=formats.folder_size(path),
        manifest=detected.manifest,
    )


class ModelRegistry:
    """Models found under a list of root folders; the first root wins when two ids collide."""

    def __init__(self, roots: Optional[list[tuple[Path, str]]] = None):
        # Relative roots are made absolute here, against the folder the studio was started from:
        # the registry travels to the engine process, which runs in another folder (child_python).
        given = roots if roots is not None else default_roots()
        self.roots = [(_absolute(Path(root)), source) for root, source in given]
        # (models by id, ids of paired exports): one tuple, swapped whole, read once per call.
        self._state: tuple[dict[str, ModelInfo], frozenset[str]] = ({}, frozenset())
        self.problems: list[ModelProblem] = []
        self.refresh()

    def refresh(self) -> None:
        models: dict[str, ModelInfo] = {}
        problems: list[ModelProblem] = []
        for root, source in self.roots:
            try:
                root = untrusted.expand_user(root, ModelFileError)
            except ModelFileError as exc:  # `~nosuchuser/models`: said once, the other roots still scanned
                problems.append(ModelProblem(root, source, exc.message))
                continue
            try:
                entries = sorted(root.iterdir()) if root.is_dir() else []
            except OSError as exc:  # an unreadable folder must not stop the studio from starting
                problems.append(ModelProblem(root, source, f"{root} cannot be read ({exc.strerror or exc})."))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_file() and formats.converted_copy(entry) is not None:
                    continue  # converted: its safetensors copy beside it is listed instead
                try:
                    info = inspect(entry, source)
                except ModelFileError as exc:
                    if entry.is_dir() or entry.suffix.lower() in REPORTED_SUFFIXES:
                        problems.append(ModelProblem(entry, source, exc.message))
                    continue
                except OSError as exc:
                    problems.append(ModelProblem(entry, source, f"{entry} cannot be read ({exc.strerror or exc})."))
                    continue
                except Exception as exc:  # noqa: BLE001 - a file no check foresaw costs one entry, not the studio
                    log.warning("could not inspect %s", entry, exc_info=True)
                    problems.append(
                        ModelProblem(
                            entry,
                            source,
                            f"{entry} could not be inspected "
                            f"({type(exc).__name__}: {first_line(exc)}); the log has the details.",
                        )
                    )
                    continue
                if info.id in models:
                    log.info("model id %s at %s is shadowed by %s", info.id, entry, models[info.id].path)
                    continue
                models[info.id] = info
        exports = _pair_exports(models)
        # Swapped in whole: the engine thread may be resolving a model while the window rescans.
        self._state, self.problems = (models, exports), problems

    def models(self, kind: Optional[str] = None, exports: bool = False) -> list[ModelInfo]:
        """Models of `kind` (all when None), the one to pick by default first: the user's own
        models before the embedded ones, and among those the studio's chosen defaults. LoRA files
        are kind "lora": they are listed under that kind only, never as image models. An ONNX
        export whose source is here is that model's "onnx" runtime, listed only with `exports`."""
        models, paired = self._state
        found = [m for m in models.values() if (kind is None or m.kind == kind) and (exports or m.id not in paired)]
        return sorted(found, key=_default_order)

    def resolve(self, id_or_path: str) -> ModelInfo:
        """A model by id, or by a path to a model file or folder."""
        models = self._state[0]
        found = models.get(id_or_path)
        if found is not None:
            return found
        path = untrusted.expand_user(id_or_path, ModelNotFound)
        if path.exists():
            return inspect(path.resolve(), "path")
        for problem in self.problems:  # a model we found but refused: say why, not "no such model"
            if id_or_path in (problem.path.name, problem.path.stem):
                raise ModelFileError(problem.message)
        known = ", ".join(sorted(models)) or "none found"
        raise ModelNotFound(f"No model {id_or_path!r}: give an id from `studio models` ({known}) or a path.")

    def for_runtime(self, model: ModelInfo, runtime: str) -> ModelInfo:
        """The model that runs `model` on `runtime`: its ONNX export for "onnx" when it has one."""
        if runtime == Runtime.ONNX and model.onnx_export and Runtime.ONNX not in _own_runtimes(model):
            return self.resolve(model.onnx_export)
        return model

    def where_to_put_models(self) -> str:
        return (
            f"No models found. Put a diffusers or transformers folder, a Stable Diffusion .safetensors "
            f"checkpoint, a .gguf or .onnx file or a studio model folder in {paths.user_models_dir()} (or set STUDIO_MODELS_DIR)."
        )
