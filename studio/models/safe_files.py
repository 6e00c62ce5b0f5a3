"""Checks on model files before any library opens them, and one sentence for each way they break.

Standard library only, so every backend (torch or ONNX Runtime) and the registry can use them."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any, Iterator, Optional

from studio.core import untrusted
from studio.core.errors import ModelFileError, StudioError
from studio.core.errors import shown as quoted  # check_safetensors has an argument named `shown`
from studio.models.formats import MANIFEST, check_folder_files, read_json

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
SNIFF_BYTES = 1024  # enough to tell a pointer, a web page or a pickle from safetensors
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def model_file(folder: Path, name: Any, key: str) -> Path:
    """`folder / name` for a file named in studio.json, refused if it would leave the folder."""
    if not isinstance(name, str) or not name.strip():
        raise ModelFileError(f'{folder / MANIFEST} has no {key!r} file name; add one (e.g. "decoder.safetensors").')
    root = folder.resolve()
    path = (root / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(root):
        raise ModelFileError(f"{folder / MANIFEST} names {key} {name!r} outside the model folder, which is refused.")
    untrusted.check_regular(path, ModelFileError)
    if not path.is_file():
        raise ModelFileError(f"{name} is missing from {folder}; copy it into the model folder.")
    return path


def check_safetensors(path: Path, shown: Optional[str] = None) -> dict[str, Any]:
    """One sentence if a .safetensors file is cut short or is not safetensors at all; otherwise
    its header (tensor name -> {"dtype", "shape", "data_offsets"}, plus "__metadata__" if any).

    Reads only the header, and checks it as the safetensors library will: every tensor's type,
    shape and byte range, the ranges back to back and ending where the file does. So a broken file
    (a LoRA too) is found when the models are listed, by its own name, rather than by a library's
    error when it is used. A file that is something else under a .safetensors name (a Git LFS
    pointer, a web page, a pickle, a named pipe) is named for what it is."""
    name = shown or path.name
    incomplete = ModelFileError(f"{name} is incomplete: check its size and copy it again.")
    with untrusted.open_regular(path, ModelFileError, name) as f:
        try:
            size = os.fstat(f.fileno()).st_size
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
        except ValueError:  # int() refuses more than 4300 digits
            raise ModelFileError(
                f"{name} is not a valid safetensors file (its header holds an impossible number)."
            ) from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ModelFileError(
                f"{name} cannot be read ({reason}): check the file's permissions and copy it again."
            ) from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name} is not a valid safetensors file (its header is not a JSON object).")
    end = _check_tensors(name, header)
    if 8 + header_len + end > size:
        raise incomplete
    if 8 + header_len + end < size:
        raise ModelFileError(
            f"{name} is not a valid safetensors file (it holds {size - 8 - header_len - end:,} bytes "
            "after its last tensor): copy it again."
        )
    return header


# Bits per element of each safetensors data type; the library refuses any other name.
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
}


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tensors(name: str, header: dict[str, Any]) -> int:
    """Where the last tensor ends, after checking every entry of a parsed header as the library
    does; one sentence naming the file and the first tensor that is wrong."""

    def bad(reason: str) -> ModelFileError:
        return ModelFileError(f"{name} is not a valid safetensors file ({reason}).")

    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("its __metadata__ is not a table of texts")
    ranges = []
    for tensor, entry in header.items():
        if tensor == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise bad(f"tensor {quoted(tensor)} has no offsets")
        if not (all(_natural(o) for o in offsets) and offsets[0] <= offsets[1]):
            raise bad(f"tensor {quoted(tensor)} has impossible offsets")
        dtype, shape = entry.get("dtype"), entry.get("shape")
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise bad(f"tensor {quoted(tensor)} has no known data type")
        if not (isinstance(shape, list) and all(_natural(d) for d in shape)):
            raise bad(f"tensor {quoted(tensor)} has no shape")
        if math.prod(shape) * DTYPE_BITS[dtype] != 8 * (offsets[1] - offsets[0]):
            raise bad(f"tensor {quoted(tensor)} does not fill the bytes its header gives it")
        ranges.append((offsets[0], offsets[1], tensor))
    end = 0
    for start, stop, tensor in sorted(ranges):
        if start != end:  # the library wants the tensors back to back, from the first byte
            raise bad(f"tensor {quoted(tensor)} does not start where the one before it ends")
        end = stop
    return end


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
        return (
            f"The tokenizer in {folder} has no tokenizer.json or vocabulary files it can load: copy the folder again."
        )
    if "tokeniz" in low or "vocab" in low or "bpe" in low or "merges" in low:
        return f"The tokenizer in {folder} is damaged ({_clip(text)})."
    return f"{folder} could not be loaded as {what} ({type(exc).__name__}: {_clip(text)})."


def _read_index(folder: Path) -> dict[str, Any]:
    try:
        return read_json(folder / "model_index.json")
    except ModelFileError:
        return {}


def _clip(text: str, limit: int = 200) -> str:
    text = text.rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


DIFFUSERS_COMPONENT_LIBRARIES = ("diffusers", "transformers")  # where a component class may come from; never the folder


def check_model_index(folder: Path) -> None:
    """Refuse custom pipeline or component code before diffusers sees the folder: any .py file in
    the folder tree, a pipeline class given as [file, class], a component from another library."""
    check_folder_files(folder)
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
            raise ModelFileError(
                f"{folder} has no {name!r} folder, which model_index.json lists: copy the whole folder again."
            )


def _known_library(name: Any) -> bool:
    """diffusers, transformers, or one of diffusers' own pipeline modules (e.g. "stable_diffusion")."""
    import importlib.util

    if name in DIFFUSERS_COMPONENT_LIBRARIES:
        return True
    if not isinstance(name, str) or not name.isidentifier():
        return False
    return importlib.util.find_spec(f"diffusers.pipelines.{name}") is not None
