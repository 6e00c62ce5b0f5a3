"""`studio convert`: the per-file opt-in for a pickle checkpoint (DESIGN §4).

A pickle file can run any code while it loads, so the studio never loads one as a model. Asked to
convert one, it reads only its tensors, with torch's weights-only unpickler (an allowlist of
tensors, containers and numbers), and writes them once to `<stem>.safetensors` beside it; from
then on only that copy is used (formats.converted_copy). Inside a diffusers/transformers folder the
copies take the names the libraries look for (pytorch_model.bin -> model.safetensors).

The unpickling happens in a throw-away subprocess (`python -m studio.models.pickle_import SRC
DST`): the studio's own process never holds anything the file produced, and a crash in the reader
becomes one sentence. Its environment forces weights-only loading and drops the variable that would
switch it off, and the call passes weights_only=True explicitly as well. There is no fallback to
weights_only=False and no extra safe globals: a file that needs either is not plain weights, and
is refused."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from studio.core.atomic import write_text_atomic
from studio.core.child_python import PACKAGE_ROOT, child_env, python_command
from studio.core.errors import ModelFileError
from studio.models.formats import PICKLE_SUFFIXES, pickle_weights
from studio.models.hashes import model_hash
from studio.models.safe_files import SNIFF_BYTES, check_safetensors

log = logging.getLogger(__name__)

LAYOUTS = ("state_dict", "model", "module")  # where trainers nest the weights (Lightning, DDP, ...)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive around the pickle
MIN_TORCH = (2, 6)  # torch <= 2.5.1 could be made to run code even with weights_only=True (CVE-2025-32434)


@dataclass(frozen=True)
class Converted:
    source: Path
    target: Path
    tensors: int
    dropped: int  # entries that were not tensors (epoch counters, optimizer state, ...)
    size_bytes: int
    already: bool = False  # the copy was there from an earlier conversion of this same file


# ------------------------------------------------------------------------------------------------
# In the studio's process: what to convert, where to, and running the subprocess
# ------------------------------------------------------------------------------------------------


def convert(path: Path, out: Optional[Path] = None) -> list[Converted]:
    """Convert one pickle file (to `out`, else `<stem>.safetensors` beside it) or every pickle
    weight file in a model folder; ModelFileError with one sentence when it cannot be done."""
    path = Path(path).expanduser()
    if path.is_dir():
        if out is not None:
            raise ModelFileError("--out is for one file; a folder's converted copies go beside its pickle files.")
        return convert_folder(path)
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist.")
    target = Path(out).expanduser() if out is not None else path.with_suffix(".safetensors")
    return [convert_file(path, target)]


def convert_folder(folder: Path) -> list[Converted]:
    """Every pickle weight file in a diffusers/transformers folder, each beside itself under the
    name the libraries look for; a sharded checkpoint's index is rewritten to the new names."""
    pickles = pickle_weights(folder)
    if not pickles:
        raise ModelFileError(
            f"{folder} holds no pickle weight files (.bin .pt .pth .ckpt .pkl), so there is nothing to convert.")
    todo = []
    for pickle in pickles:
        target = pickle.with_name(folder_name(pickle.name))
        # The publisher's own safetensors file beside a pickle is what gets loaded: nothing to do.
        if not target.exists() or _metadata(target).get("converted_from") == pickle.name:
            todo.append((pickle, target))
    if not todo:
        raise ModelFileError(
            f"{folder} already has a .safetensors file beside each pickle file; there is nothing to convert.")
    done = [convert_file(pickle, target) for pickle, target in todo]
    for index in sorted(folder.rglob("*.bin.index.json")):
        _rewrite_index(index)
    return done


def folder_name(name: str) -> str:
    """The name diffusers/transformers look for in place of a pickle: pytorch_model*.bin ->
    model*.safetensors (transformers), anything else (diffusion_pytorch_model*.bin,
    adapter_model.bin) keeps its stem."""
    stem = name.rsplit(".", 1)[0]
    if stem == "pytorch_model" or stem.startswith("pytorch_model-"):
        stem = "model" + stem[len("pytorch_model"):]
    return stem + ".safetensors"


def _rewrite_index(index: Path) -> None:
    """X.bin.index.json -> its .safetensors twin, once every shard it lists has been converted."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        shards = set(data["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # not an index we understand: the library will say what is missing
    if not all(isinstance(s, str) and (index.parent / folder_name(s)).is_file() for s in shards):
        return
    data["weight_map"] = {k: folder_name(v) for k, v in data["weight_map"].items()}
    write_text_atomic(index.parent / (folder_name(index.name[: -len(".index.json")]) + ".index.json"),
                      json.dumps(data, indent=2))


def convert_file(source: Path, target: Path) -> Converted:
    """Convert one pickle file to `target` in a subprocess; a copy already made from this very
    file is reported, not made again."""
    _check_source(source)
    if target.suffix.lower() != ".safetensors":
        raise ModelFileError(f"The converted copy must be a .safetensors file, not {target.name}.")
    if target.resolve() == source.resolve():
        raise ModelFileError(
            f"{source.name} is a pickle file under a .safetensors name; give --out NEW.safetensors for its "
            "converted copy (or rename it to .ckpt first)."
        )
    if target.exists():
        return _existing_copy(source, target)
    # Belt and braces with the explicit weights_only=True: this variable would only matter if a
    # call forgot it, and a user's shell or Dockerfile may set it globally.
    env = child_env(drop=("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",))
    env["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    # Nothing in the current folder (maybe the model's, maybe holding a torch.py) is imported there.
    command = python_command("studio.models.pickle_import", str(source.absolute()), str(target.absolute()))
    try:
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", cwd=PACKAGE_ROOT)
    except OSError as exc:
        raise ModelFileError(f"The converter could not be started ({exc.strerror or exc}).") from None
    if done.stderr.strip():
        log.info("converter output for %s:\n%s", source, done.stderr.strip())
    report = _last_json_line(done.stdout)
    if report is None:
        raise ModelFileError(
            f"The converter stopped while reading {source.name} (exit code {done.returncode}) and wrote nothing; "
            "see the log for its output."
        )
    if "error" in report:
        raise ModelFileError(str(report["error"]))
    model_hash(source)  # the child cached it; a cache that could not be written is filled here
    return Converted(source, target, int(report["tensors"]), int(report["dropped"]), int(report["bytes"]))


def _check_source(source: Path) -> None:
    """Only pickles are sent to the converter: a pickle suffix, or a zip/pickle start under another
    name (a checkpoint renamed to .safetensors). A real safetensors file needs nothing."""
    try:
        with source.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as exc:
        raise ModelFileError(f"{source} cannot be read ({exc.strerror or exc}).") from None
    if len(head) > 8 and head[8:9] == b"{" and source.suffix.lower() == ".safetensors":
        raise ModelFileError(f"{source.name} is already a safetensors file; there is nothing to convert.")
    if source.suffix.lower() not in PICKLE_SUFFIXES and not _looks_pickled(head):
        raise ModelFileError(
            f"{source.name} is not a pickle checkpoint ({' '.join(PICKLE_SUFFIXES)}), so there is nothing to convert."
        )


def _looks_pickled(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _metadata(path: Path) -> dict[str, Any]:
    """A safetensors file's __metadata__ ({} when it has none or is not safetensors)."""
    try:
        metadata = check_safetensors(path).get("__metadata__")
    except (ModelFileError, OSError):
        return {}
    return metadata if isinstance(metadata, dict) else {}


def _existing_copy(source: Path, target: Path) -> Converted:
    metadata = _metadata(target)
    if metadata.get("converted_from") != source.name:
        raise ModelFileError(
            f"{target.name} already exists and is not a copy of {source.name}; move it away or give --out."
        )
    if metadata.get("source_sha256") != model_hash(source):
        raise ModelFileError(
            f"{target.name} was converted from an earlier {source.name}; delete it (or give --out) to convert this one."
        )
    count = sum(1 for k in check_safetensors(target) if k != "__metadata__")
    return Converted(source, target, count, 0, target.stat().st_size, already=True)


def _last_json_line(text: str) -> Optional[dict[str, Any]]:
    for line in reversed(text.splitlines()):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        return report if isinstance(report, dict) else None
    return None


# ------------------------------------------------------------------------------------------------
# In the throw-away subprocess: the only place a pickle is ever opened
# ------------------------------------------------------------------------------------------------


def _read_and_write(source: Path, target: Path) -> dict[str, Any]:
    """Load `source` weights-only, write its tensors to `target`; a report for the parent."""
    import torch

    version = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if version < MIN_TORCH:
        return {"error": f"Converting pickle files needs torch 2.6 or newer (this is {torch.__version__}), "
                         "because older versions can be made to run code even in their weights-only mode."}
    name = source.name
    with source.open("rb") as f:
        is_zip = f.read(4) == ZIP_MAGIC
    try:
        if source.name.lower().endswith(".safetensors"):
            # torch.load hands a path ending in .safetensors to safetensors: open the pickle ourselves.
            with source.open("rb") as f:
                loaded = torch.load(f, map_location="cpu", weights_only=True)
        else:
            # mmap: tensors are paged in from the file, not copied; torch allows it only for zip archives.
            loaded = torch.load(source, map_location="cpu", weights_only=True, mmap=is_zip)
    except MemoryError:
        return {"error": f"{name} is too large to convert with the memory available."}
    except Exception as exc:  # noqa: BLE001 - every failure to read is one sentence for the user
        return {"error": _explain(name, exc)}
    tensors, dropped = _state_dict(loaded)
    if not tensors:
        return {"error": f"{name} holds no named tensors (no state dict), so there is nothing to convert."}
    metadata = {"format": "pt",  # transformers refuses safetensors whose metadata lacks it
                "converted_from": name, "source_sha256": model_hash(source), "source_size": str(source.stat().st_size)}
    _save(tensors, target, metadata)
    return {"tensors": len(tensors), "dropped": dropped, "bytes": target.stat().st_size}


def _explain(name: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    refused = re.findall(r"GLOBAL (\S+?) (?:was not an allowed|whose module)", text)
    if refused:
        names = ", ".join(dict.fromkeys(refused))
        return f"{name} holds something other than weights (it asks for {_clip(names, 120)}), so it was not loaded."
    if "TorchScript" in text:
        return f"{name} is a TorchScript program, not a file of weights, so it was not loaded."
    if "Weights only load failed" in text or "UnpicklingError" in type(exc).__name__:
        reason = text.split("WeightsUnpickler error:", 1)[-1].split(" Check the documentation", 1)[0].strip()
        for needle, said in UNPICKLER_REASONS:
            if needle in reason:
                reason = said
        return f"{name} holds something other than weights ({_clip(reason, 120)}), so it was not loaded."
    if isinstance(exc, EOFError) or "failed finding central directory" in text or "PytorchStreamReader" in text:
        return f"{name} is damaged or incomplete: check its size and copy it again."
    if "magic number" in text or "load key" in text:
        return f"{name} is not a PyTorch checkpoint, so there is nothing to convert."
    return f"{name} could not be read as a PyTorch checkpoint ({type(exc).__name__}: {_clip(text, 120)})."


# torch's weights-only refusals other than a forbidden global, in words (the rest is quoted, clipped).
UNPICKLER_REASONS = (
    ("Unsupported operand", "it uses pickle instructions that plain weights never need"),
    ("call reduce for unrecognized function", "it calls a function that does not build tensors"),
    ("Can only build", "it builds objects other than tensors"),
    ("Can only create new object", "it creates objects other than tensors"),
)


def _clip(text: str, limit: int) -> str:
    text = text.rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state_dict(loaded: Any) -> tuple[dict[str, Any], int]:
    """The named tensors of a flat state dict, or of one nested under a trainer's key, and how
    many entries were dropped for not being tensors."""
    import torch

    if not isinstance(loaded, dict):
        return {}, 0
    chosen, dropped = loaded, 0
    for key in LAYOUTS:
        inner = loaded.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            chosen, dropped = inner, len(loaded) - 1
            break
    tensors: dict[str, Any] = {}
    seen: set[int] = set()
    for key, value in chosen.items():
        # safetensors holds dense tensors only: a sparse or quantized one is dropped like a number.
        if not (isinstance(key, str) and isinstance(value, torch.Tensor)) or value.layout != torch.strided \
                or value.is_quantized:
            dropped += 1
            continue
        tensor = value.detach().as_subclass(torch.Tensor)
        storage = tensor.untyped_storage()
        whole = tensor.is_contiguous() and tensor.storage_offset() == 0 and tensor.nbytes == storage.nbytes()
        # safetensors stores each tensor's own bytes and refuses views and shared storage (tied weights).
        if tensor.numel() and (storage.data_ptr() in seen or not whole):
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        if tensor.numel():
            seen.add(tensor.untyped_storage().data_ptr())
        tensors[key] = tensor
    return tensors, dropped


def _save(tensors: dict[str, Any], target: Path, metadata: dict[str, str]) -> None:
    """Write the safetensors file under a temporary name in the same folder, then rename it: a
    crash leaves no half-written copy that the registry would take for the converted model."""
    from safetensors.torch import save_file

    # A fresh, unguessable name created by us alone: a symlink planted in the model folder under a
    # predictable name could otherwise send the write elsewhere.
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    source, target = Path(argv[0]), Path(argv[1])
    try:
        report = _read_and_write(source, target)
    except OSError as exc:
        report = {"error": f"{target} cannot be written ({exc.strerror or exc})."}
    except Exception as exc:  # noqa: BLE001 - e.g. a dtype safetensors cannot hold: one sentence, not a traceback
        report = {"error": f"{source.name} could not be converted ({type(exc).__name__}: {_clip(str(exc), 120)})."}
    print(json.dumps(report))
    return 1 if "error" in report else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
