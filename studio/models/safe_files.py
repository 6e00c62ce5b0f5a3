"""Checks on model files before any library opens them, and one sentence for each way they break.

Standard library only, so every backend (torch or ONNX Runtime) and the registry can use them."""

from __future__ import annotations

import contextlib
import json
import re
import struct
from pathlib import Path
from typing import Any, Iterator, Optional

from studio.core.errors import ModelFileError, StudioError
from studio.models.formats import MANIFEST, check_no_python_code, read_json

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
SNIFF_BYTES = 1024  # enough to tell a pointer, a web page or a pickle from safetensors
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def model_file(folder: Path, name: Any, key: str) -> Path:
    """`folder / name` for a file named in studio.json, refused if it would leave the folder."""
    if not isinstance(name, str) or not name.strip():
        raise ModelFileError(f"{folder / MANIFEST} has no {key!r} file name; add one (e.g. \"decoder.safetensors\").")
    root = folder.resolve()
    path = (root / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(root):
        raise ModelFileError(f"{folder / MANIFEST} names {key} {name!r} outside the model folder, which is refused.")
    if not path.is_file():
        raise ModelFileError(f"{name} is missing from {folder}; copy it into the model folder.")
    return path


def check_safetensors(path: Path, shown: Optional[str] = None) -> dict[str, Any]:
    """One sentence if a .safetensors file is cut short or is not safetensors at all; otherwise
    its header (tensor name -> {"dtype", "shape", "data_offsets"}, plus "__metadata__" if any).

    Reads only the header: the byte ranges it lists must fit in the file, which catches a
    half-finished copy by the file's own name rather than by a library's error code. A file that
    is something else under a .safetensors name (a Git LFS pointer, a web page, a pickle) is named
    for what it is."""
    name = shown or path.name
    incomplete = ModelFileError(f"{name} is incomplete: check its size and copy it again.")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
            if len(head) < 9 or head[8:9] != b"{":  # a safetensors header is a JSON object
                _refuse_impostor(name, head)
            if len(head) < 8:
                raise incomplete
            (header_len,) = struct.unpack("<Q", head[:8])
            if header_len > MAX_HEADER_BYTES:
                raise ModelFileError(f"{name} is not a valid safetensors file (its header size is impossible).")
            if 8 + header_len > size:
                raise incomplete
            f.seek(8)
            header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelFileError(f"{name} is not a valid safetensors file (its header is not JSON).") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ModelFileError(f"{name} cannot be read ({reason}): check the file's permissions and copy it again.") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name} is not a valid safetensors file (its header is not a JSON object).")
    end = 0
    for tensor, entry in header.items():
        if tensor == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ModelFileError(f"{name} is not a valid safetensors file (tensor {tensor!r} has no offsets).")
        end = max(end, offsets[1])
    if 8 + header_len + end > size:
        raise incomplete
    return header


def _refuse_impostor(name: str, head: bytes) -> None:
    """A sentence for the files people most often find under a .safetensors name by mistake; returns
    (for the generic checks to speak) when the start of the file matches none of them."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    low = text.lower()
    if text.startswith(LFS_POINTER):
        raise ModelFileError(
            f"{name} is a Git LFS pointer, not the model: run git lfs pull in the repository it came from "
            "(or download the file itself) and copy it again."
        )
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<!--", b"<?xml")) or b"<html" in low:
        raise ModelFileError(
            f"{name} is a web page saved under a model's name, not the model: download the file itself "
            "(the download link, not the page) and copy it again."
        )
    if head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        raise ModelFileError(
            f"{name} is a pickle file renamed to .safetensors, which could run code when loaded; "
            "the studio loads only real .safetensors files; convert it once with `studio convert PATH --out "
            "NEW.safetensors` (only its tensors are read, nothing in it runs), or find the .safetensors release."
        )


def check_folder_weights(folder: Path) -> None:
    """Check every .safetensors file under a model folder, naming it by its place in the folder."""
    for path in sorted(folder.rglob("*.safetensors")):
        check_safetensors(path, str(path.relative_to(folder.parent)))


@contextlib.contextmanager
def explained_load_errors(folder: Path, what: str) -> Iterator[None]:
    """Turn whatever a library raises while loading `folder` into one ModelFileError sentence.

    Running out of memory is not a broken folder: it passes through, for the runner to report."""
    try:
        yield
    except (StudioError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - every other failure is a broken folder
        if type(exc).__name__ == "OutOfMemoryError":
            raise
        raise ModelFileError(explain_load_error(folder, exc, what)) from exc


def explain_load_error(folder: Path, exc: BaseException, what: str = "a diffusers model") -> str:
    """One sentence for a library's loading exception (the traceback goes to the log)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    low = text.lower()
    if "incomplete metadata" in low or "metadataincompletebuffer" in low or "incompletebuffer" in low:
        return f"A weights file in {folder} is incomplete: check its size and copy it again."
    if "headertoolarge" in low or "invalidheader" in low or "header too" in low:
        return f"A weights file in {folder} is damaged or not a safetensors file: copy it again."
    absent = re.search(r"no file named (\S+) found in directory (\S+?)\.?$", text)
    if absent:
        where = Path(absent[2]).relative_to(folder) if Path(absent[2]).is_relative_to(folder) else Path(absent[2])
        return f"{folder} is missing {(where / absent[1]).as_posix()}: copy the whole folder again."
    if "no file named" in low or "does not appear to have" in low or "no such file" in low:
        return f"{folder} is missing a file the model needs ({_clip(text)})."
    missing = re.search(r"expected \[(.*?)\], but only \{(.*?)\} were passed", text)
    if missing:
        listed = set(re.findall(r"'(\w+)'", missing[2])) | set(_read_index(folder))  # null entries are fine
        names = sorted(set(re.findall(r"'(\w+)'", missing[1])) - listed)
        return f"model_index.json in {folder} does not list the pipeline's {', '.join(names)}: copy the folder again."
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)) or "json" in low:
        return f"A config file in {folder} is not valid JSON ({_clip(text)})."
    if "size mismatch" in low or "shape" in low:
        return f"The weights in {folder} do not match their config.json (wrong model family or mixed-up files)."
    if "instantiate the backend tokenizer" in low:
        return f"The tokenizer in {folder} has no tokenizer.json or vocabulary files it can load: copy the folder again."
    if "tokeniz" in low or "vocab" in low or "bpe" in low or "merges" in low:
        return f"The tokenizer in {folder} is damaged ({_clip(text)})."
    return f"{folder} could not be loaded as {what} ({type(exc).__name__}: {_clip(text)})."


def _read_index(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _clip(text: str, limit: int = 200) -> str:
    text = text.rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


DIFFUSERS_COMPONENT_LIBRARIES = ("diffusers", "transformers")  # where a component class may come from; never the folder


def check_model_index(folder: Path) -> None:
    """Refuse custom pipeline or component code before diffusers sees the folder: any .py file in
    the folder tree, a pipeline class given as [file, class], a component from another library."""
    check_no_python_code(folder)
    index = read_json(folder / "model_index.json")
    class_name = index.get("_class_name")
    if isinstance(class_name, list):
        raise ModelFileError(f"{folder} names a custom pipeline in model_index.json; the studio never runs model code.")
    if not isinstance(class_name, str) or not class_name.strip():
        raise ModelFileError(f"model_index.json in {folder} has no pipeline class name: copy the folder again.")
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry == [None, None]:
            continue
        if len(entry) != 2 or not _known_library(entry[0]):
            raise ModelFileError(
                f"{folder} needs custom code for its {name!r} component (model_index.json); the studio never runs model code."
            )
        if entry[0] is not None and not (folder / name).is_dir():
            raise ModelFileError(f"{folder} has no {name!r} folder, which model_index.json lists: copy the whole folder again.")


def _known_library(name: Any) -> bool:
    """diffusers, transformers, or one of diffusers' own pipeline modules (e.g. "stable_diffusion")."""
    import importlib.util

    if name in DIFFUSERS_COMPONENT_LIBRARIES:
        return True
    if not isinstance(name, str) or not name.isidentifier():
        return False
    return importlib.util.find_spec(f"diffusers.pipelines.{name}") is not None
