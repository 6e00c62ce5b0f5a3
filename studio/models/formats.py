"""Recognise a model on disk from its files alone, without importing any ML library.

A format is decided by marker files: `studio.json` (our manifest), `model_index.json` (a diffusers
pipeline folder), `config.json` with a tokenizer (a transformers folder), `*.onnx` (an ONNX
generator), `*.gguf` (a llama.cpp language model, its header checked whole by gguf_file.py), and
for a `.safetensors` file its header's tensor names (a single-file Stable Diffusion checkpoint or
a LoRA; see single_file.py). Pickle files are recognised only to refuse them with a
sentence saying how to opt in for that one file (`studio convert`, pickle_import.py), and so are
diffusers/transformers folders whose weights are only pickles, and transformers folders that carry
Python code or ask for their authors' code (auto_map). A pickle already converted is left to its
safetensors copy (converted_copy)."""

from __future__ import annotations

import functools
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from studio.core import untrusted
from studio.core.errors import ModelFileError
from studio.core.kinds import ModelFormat, ModelKind, Runtime

if TYPE_CHECKING:
    from studio.models.gguf_file import GgufHeader

MANIFEST = "studio.json"
GGUF_SUFFIX = ".gguf"  # llama.cpp's single-file language models
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
# Pickles a training run leaves beside the weights: never weights themselves, so never converted,
# and not a reason to refuse a folder whose weights are safetensors.
NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")
MAX_JSON_BYTES = 4 * 1024 * 1024  # configs are small; a huge one is not a config
# The manifest formats this studio knows, with the kind they make: ours for latent models, and
# "fake" for UI tests and demos (any kind, its studio.json says which).
MANIFEST_FORMATS: dict[str, Optional[ModelKind]] = {
    ModelFormat.STUDIO_LATENT: ModelKind.LATENT,
    ModelFormat.ONNX_LATENT: ModelKind.LATENT,
    ModelFormat.FAKE: None,
}
RUNNABLE_KINDS = (ModelKind.IMAGE, ModelKind.TEXT, ModelKind.LATENT)
# The ONNX files that make a folder an ONNX Runtime pipeline (Optimum's layouts).
ONNX_UNET = Path("unet") / "model.onnx"
ONNX_DECODER = "model.onnx"
TEXT_CONFIG_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
# The files that decide a folder's format: each must be a regular file (checked before any is read).
MARKER_FILES = (MANIFEST, "model_index.json", "config.json", ONNX_DECODER) + TEXT_CONFIG_FILES


@dataclass(frozen=True)
class Detected:
    kind: ModelKind
    format: ModelFormat
    runtimes: tuple[Runtime, ...]
    manifest: dict[str, Any] = field(default_factory=dict)


def read_json(path: Path) -> dict[str, Any]:
    """Read a small JSON object from a model folder, with one clear sentence when it is broken
    (not a regular file, oversized, not JSON, nested too deeply, a number too long to read)."""
    data = untrusted.read_json(path, MAX_JSON_BYTES, ModelFileError, "a model config")
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} should hold a JSON object.")
    return data


def check_folder_files(folder: Path) -> None:
    """ModelFileError if a model folder holds something the studio will not load from:

    - a .py file anywhere in it: the studio never runs it, and a folder that ships code is one
      whose authors expect it to be run;
    - a folder linked in from outside it (e.g. `unet -> /elsewhere`): refused rather than walked,
      because a link can point anywhere (a huge tree, a loop, `/`), and nothing outside the folder
      can then hide code from the rule above. Links to files (a Hugging Face cache snapshot links
      every file to its blob) and links to folders inside it are fine: what they show is checked;
    - a named pipe, socket or device under a file's name: opening it would block or read forever."""
    root = folder.resolve()
    for path in sorted(folder.rglob("*")):
        shown = path.relative_to(folder).as_posix()
        if path.is_symlink() and path.is_dir() and not path.resolve().is_relative_to(root):
            raise ModelFileError(
                f"{folder} links its {shown} folder to a place outside the model folder, which the studio "
                "refuses; copy that folder in instead of linking it."
            )
        try:
            mode = path.stat().st_mode
        except OSError:  # a dangling link: loading names the missing file
            continue
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise ModelFileError(untrusted.not_regular(path, mode))
        if path.suffix.lower() == ".py":
            raise ModelFileError(
                f"{folder} contains Python code ({shown}); the studio never runs code from model folders."
            )


def _check_transformers_folder(path: Path) -> None:
    """Refuse a transformers folder that needs its authors' code: auto_map in config.json or
    tokenizer_config.json, or a .py file anywhere in it."""
    for name in ("config.json", "tokenizer_config.json"):
        if name == "config.json" or (path / name).is_file():
            if read_json(path / name).get("auto_map"):
                raise ModelFileError(
                    f"{path.name} needs custom Python code from its authors (auto_map in {name}); "
                    "the studio never runs model code, so it cannot load this folder."
                )
    check_folder_files(path)


def detect(path: Path) -> Optional[Detected]:
    """The format of a model file or folder, None if it is not a model, ModelFileError if it is
    one we refuse or cannot read."""
    if not path.is_dir():  # a named pipe under a model's name would block whoever opens it
        untrusted.check_regular(path, ModelFileError)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            return Detected(ModelKind.LATENT, ModelFormat.ONNX, (Runtime.ONNX,))
        if suffix == ".safetensors":
            return _detect_safetensors(path)
        if suffix == GGUF_SUFFIX:
            return _detect_gguf(path, path, {})
        if suffix in PICKLE_SUFFIXES:
            raise ModelFileError(
                f"{path.name} is a pickle file, which can run code when loaded, so the studio does not "
                f"load it; to use it anyway, convert it once with `studio convert {shlex.quote(str(path))}` "
                "(only its tensors are read, nothing in it runs)."
            )
        return None
    if not path.is_dir():
        return None
    for name in MARKER_FILES:
        untrusted.check_regular(path / name, ModelFileError)
    # A studio.json with a "format" describes one of our own formats; without one it only adds
    # metadata (title, licence, suggested settings) to a diffusers or transformers folder.
    metadata = read_json(path / MANIFEST) if (path / MANIFEST).is_file() else None
    if metadata is not None and "format" in metadata:
        return _detect_manifest(path, metadata)
    if (path / "model_index.json").is_file():
        read_json(path / "model_index.json")  # a broken one is found now, not by whoever reads it next
    if (path / "model_index.json").is_file() and (path / ONNX_UNET).is_file():
        check_folder_files(path)  # Optimum's Stable Diffusion layout: unet/model.onnx and friends
        return Detected(ModelKind.IMAGE, ModelFormat.ONNX_DIFFUSION, (Runtime.ONNX,), metadata or {})
    if (path / "model_index.json").is_file():
        check_folder_files(path)  # refused at discovery, like a transformers folder with code
        check_no_pickle_weights(path)
        return Detected(ModelKind.IMAGE, ModelFormat.DIFFUSERS, (Runtime.TORCH,), metadata or {})
    if (path / "config.json").is_file() and any((path / f).is_file() for f in TEXT_CONFIG_FILES):
        _check_transformers_folder(path)
        if (path / ONNX_DECODER).is_file():  # a causal LM exported with its KV cache (Optimum's naming)
            return Detected(ModelKind.TEXT, ModelFormat.ONNX_TEXT, (Runtime.ONNX,), metadata or {})
        check_no_pickle_weights(path)
        return Detected(ModelKind.TEXT, ModelFormat.TRANSFORMERS, (Runtime.TORCH,), metadata or {})
    if (path / "config.json").is_file() and (path / ONNX_DECODER).is_file():
        raise ModelFileError(
            f"{path} looks like an ONNX text model (config.json and {ONNX_DECODER}) but has no tokenizer files "
            f"({', '.join(TEXT_CONFIG_FILES)}); copy the whole folder again, tokenizer included."
        )
    gguf_files = sorted(path.glob("*" + GGUF_SUFFIX))
    if gguf_files:
        return _detect_gguf(path, gguf_path(path), metadata or {})
    if metadata is not None:
        raise ModelFileError(
            f"{path / MANIFEST} has no format, and the folder is neither a diffusers nor a transformers model."
        )
    onnx_files = sorted(path.glob("*.onnx"))
    if len(onnx_files) == 1:
        untrusted.check_regular(onnx_files[0], ModelFileError)
        return Detected(ModelKind.LATENT, ModelFormat.ONNX, (Runtime.ONNX,))
    return None


def gguf_path(path: Path) -> Path:
    """The GGUF file of a model: the file itself, or the one .gguf file in its folder."""
    if not path.is_dir():
        return path
    found = sorted(path.glob("*" + GGUF_SUFFIX))
    if len(found) != 1:
        raise ModelFileError(
            f"{path} holds {len(found)} .gguf files; put each model in a folder of its own "
            "(a model split into parts must be merged first, with llama.cpp's llama-gguf-split --merge)."
        )
    return found[0]


def gguf_header(file: Path) -> "GgufHeader":
    """A GGUF file's header, read and checked (gguf_file.read_header), remembered while the file
    stays the same: discovery, the model list and the loader each ask for it."""
    untrusted.check_regular(file, ModelFileError)
    try:
        status = file.stat()
    except OSError as exc:
        raise ModelFileError(f"{file} cannot be read ({exc.strerror}).") from None
    return _read_gguf(file, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=32)
def _read_gguf(file: Path, mtime_ns: int, size: int) -> "GgufHeader":
    from studio.models import gguf_file

    return gguf_file.read_header(file)


def _detect_gguf(path: Path, file: Path, metadata: dict[str, Any]) -> Detected:
    """A GGUF model, its header read and checked whole now (gguf_file), so a malformed file is
    listed as unusable and never reaches llama.cpp."""
    if path.is_dir():
        check_folder_files(path)
    gguf_header(file)
    return Detected(ModelKind.TEXT, ModelFormat.GGUF, (Runtime.LLAMA_CPP,), metadata)


def pickle_weights(folder: Path) -> list[Path]:
    """The pickle weight files in a diffusers/transformers folder tree: training leftovers are
    not weights, and a .bin beside an .onnx file is the ONNX model's external data, not a pickle."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in PICKLE_SUFFIXES or path.name in NOT_WEIGHTS or not path.is_file():
            continue
        if path.name.startswith(("rng_state", ".")) or any(path.parent.glob("*.onnx")):
            continue
        found.append(path)
    return found


def check_no_pickle_weights(folder: Path) -> None:
    """ModelFileError if a part of a model folder holds its weights only as pickles: the libraries
    are told to load safetensors only, so such a folder would fail later with a library's error
    about a missing file, not with how to fix it. A .safetensors file beside the pickle (the
    publisher's own or our converted copy) is what gets loaded instead."""
    for pickle in pickle_weights(folder):
        if not any(pickle.parent.glob("*.safetensors")):
            raise ModelFileError(
                f"{folder.name} holds its weights only as a pickle file ({pickle.relative_to(folder).as_posix()}), "
                "which can run code when loaded, so the studio does not load it; to use it anyway, convert it "
                f"once with `studio convert {shlex.quote(str(folder))}` (only its tensors are read, nothing in it runs)."
            )


def converted_copy(pickle: Path) -> Optional[Path]:
    """The `<stem>.safetensors` beside a pickle file when `studio convert` made it from this very
    file (its metadata names the file, its size and its SHA-256), else None. After conversion only
    that copy is used: the registry lists it and skips the pickle."""
    from studio.models.hashes import model_hash
    from studio.models.safe_files import check_safetensors  # it imports us

    copy = pickle.with_suffix(".safetensors")
    if pickle.suffix.lower() not in PICKLE_SUFFIXES or not copy.is_file():
        return None
    try:
        metadata = check_safetensors(copy).get("__metadata__")
        size = pickle.stat().st_size
    except (ModelFileError, OSError):
        return None
    if not isinstance(metadata, dict) or metadata.get("converted_from") != pickle.name:
        return None
    # A different file put under the old name is refused again rather than silently replaced by
    # its predecessor's copy. The size rules most out; the hash is cached by path, size and mtime
    # (the converter fills the cache), so a scan does not re-read a large pickle.
    if metadata.get("source_size") != str(size):
        return None
    try:
        return copy if model_hash(pickle) == metadata.get("source_sha256") else None
    except OSError:
        return None


def _detect_safetensors(path: Path) -> Detected:
    """A single-file SD checkpoint or a LoRA, from the file's header alone; ModelFileError otherwise."""
    from studio.models.single_file import inspect_checkpoint  # it imports safe_files, which imports us

    checkpoint = inspect_checkpoint(path)
    if checkpoint.family == "lora":
        return Detected(ModelKind.LORA, ModelFormat.LORA, (Runtime.TORCH,))
    return Detected(ModelKind.IMAGE, ModelFormat.SD_SINGLE_FILE, (Runtime.TORCH,), checkpoint.manifest())


def _detect_manifest(path: Path, manifest: dict[str, Any]) -> Detected:
    fmt = manifest.get("format")
    if fmt not in MANIFEST_FORMATS:
        raise ModelFileError(f"{path / MANIFEST} has format {fmt!r}; the studio knows {', '.join(MANIFEST_FORMATS)}.")
    fmt = ModelFormat(fmt)
    kind = MANIFEST_FORMATS[fmt] or manifest.get("kind")
    if kind not in RUNNABLE_KINDS:
        raise ModelFileError(f"{path / MANIFEST} has kind {kind!r}; expected image, text or latent.")
    runtimes = [Runtime.ONNX] if fmt == ModelFormat.ONNX_LATENT else [Runtime.TORCH]
    if fmt == ModelFormat.STUDIO_LATENT and manifest.get("onnx"):
        runtimes.append(Runtime.ONNX)
    return Detected(ModelKind(kind), fmt, tuple(runtimes), manifest)


WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx_data")


def weights_fingerprint(path: Path) -> str:
    """A short fingerprint of a model's weight files from their names and sizes (stat only, so a
    scan stays fast): an ONNX export records its source's, and pairs with it only while it matches.
    A retrained model of the same shape keeps its sizes; sizes are what a scan can afford."""
    import hashlib

    if path.is_file():
        files = [(path.name, path)]
    else:
        files = sorted(
            (p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()
        )
    digest = hashlib.sha256()
    for name, file in files:
        digest.update(f"{name}:{file.stat().st_size}\n".encode("utf-8"))
    return digest.hexdigest()[:16]


def folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def default_image_size(path: Path, fmt: str, manifest: dict[str, Any]) -> int:
    """The side a model was trained at, read from its configs (512 when they do not say)."""
    try:
        if fmt in (ModelFormat.DIFFUSERS, ModelFormat.ONNX_DIFFUSION):
            unet = read_json(path / "unet" / "config.json")
            vae = read_json(path / ("vae" if fmt == ModelFormat.DIFFUSERS else "vae_decoder") / "config.json")
            sample = unet.get("sample_size")
            if isinstance(sample, (list, tuple)):
                sample = sample[0]
            blocks = vae.get("block_out_channels") or [0]
            if isinstance(sample, int) and sample > 0:
                return int(sample) * 2 ** (len(blocks) - 1)
        elif isinstance(manifest.get("image_size"), int):
            return int(manifest["image_size"])
    except ModelFileError:
        pass
    return 512


def text_context_length(path: Path) -> Optional[int]:
    """A transformers folder's context window from its config.json (None when it does not say)."""
    try:
        config = read_json(path / "config.json")
    except ModelFileError:
        return None
    window = config.get("max_position_embeddings") or config.get("n_positions")
    return window if isinstance(window, int) and not isinstance(window, bool) and window > 0 else None


MAX_CHAT_TEMPLATE_CHARS = 100_000  # the longest shipped templates are ~20 000; more is not a template


def find_chat_template(folder: Path) -> Optional[str]:
    """A transformers folder's chat template (Jinja source, never rendered here): the
    chat_template.jinja file, else chat_template.json's "chat_template", else tokenizer_config.json's,
    which is text or a list of {"name", "template"} (the one named "default", else the first).
    None when the folder has none; ModelFileError when the file that holds it is unreadable,
    oversized or of the wrong shape."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            size = jinja.stat().st_size
            if size > 4 * MAX_CHAT_TEMPLATE_CHARS:  # UTF-8 spends at most 4 bytes on a character
                raise ModelFileError(f"{jinja} is {size:,} bytes, too large to be a chat template.")
            source, template = jinja, jinja.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{jinja} is not UTF-8 text, so it cannot be a chat template.") from None
        except OSError as exc:
            raise ModelFileError(f"{jinja} cannot be read ({exc.strerror}).") from None
    else:
        for name in ("chat_template.json", "tokenizer_config.json"):
            source = folder / name
            value = read_json(source).get("chat_template") if source.is_file() else None
            if value is not None:
                break
        else:
            return None
        if isinstance(value, list):
            entries = [e for e in value if isinstance(e, dict) and isinstance(e.get("template"), str)]
            if len(entries) != len(value):
                raise ModelFileError(
                    f'{source} has a chat_template list whose entries are not {{"name": ..., "template": ...}} objects.'
                )
            named = [e for e in entries if e.get("name") == "default"]
            value = (named or entries or [{"template": ""}])[0]["template"]
        if not isinstance(value, str):
            raise ModelFileError(f"{source} has a chat_template that is neither text nor a list of named templates.")
        template = value
    if len(template) > MAX_CHAT_TEMPLATE_CHARS:
        raise ModelFileError(
            f"The chat template in {source} is {len(template):,} characters long, more "
            f"than the {MAX_CHAT_TEMPLATE_CHARS:,} the studio reads."
        )
    return template if template.strip() else None


def manifest_latent_dim(manifest: dict[str, Any]) -> Optional[int]:
    """How many numbers a latent model's latent holds, from studio.json: `latent_dim` at the top
    level or in its "decoder" part; None when the manifest does not say (a bare .onnx file)."""
    value = manifest.get("latent_dim")
    decoder = manifest.get("decoder")
    if value is None and isinstance(decoder, dict):
        value = decoder.get("latent_dim")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
