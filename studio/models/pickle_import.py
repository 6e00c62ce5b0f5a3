"""`studio convert`: the per-file opt-in for a pickle checkpoint (docs/DESIGN.md §4).

A pickle file can run any code while it loads, so the studio never loads one as a model. Asked to
convert one, it reads only its tensors, with torch's weights-only unpickler (an allowlist of
tensors, containers and numbers), and writes them once to `<stem>.safetensors` beside it; from
then on only that copy is used (formats.converted_copy). Inside a diffusers/transformers folder the
copies take the names the libraries look for (pytorch_model.bin -> model.safetensors).

The unpickling happens in a throw-away subprocess (studio.models.pickle_reader): the studio's own process never holds anything the file produced, and a crash in the reader
becomes one sentence. Its environment forces weights-only loading and drops the variable that would
switch it off, and the call passes weights_only=True explicitly as well. There is no fallback to
weights_only=False and no extra safe globals: a file that needs either is not plain weights, and
is refused.

A pickle declares its tensors' shapes apart from the bytes it holds: a 1.6 KB file can hold a
stride-0 view that reads as a 16384×16384 tensor, and a copy writes every element of it. So the
parent gives the child limits (`Limits`): the copy's size (a multiple of the pickle's own, the free
disk, a hard cap), checked against every tensor's declared size before any is materialised or
written; an address-space limit, against what unpickling itself allocates; and a wall-clock limit.
The copy is written under a temporary name the parent owns and removes, so a refusal, a crash or a
timeout leaves no file behind."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from studio.core.atomic import write_text_atomic
from studio.core.child_python import PACKAGE_ROOT, child_env, python_command
from studio.core.errors import ModelFileError
from studio.core.memory import available_bytes, free_disk, size_words
from studio.core.untrusted import expand_user
from studio.models.formats import PICKLE_SUFFIXES, pickle_weights, read_json
from studio.models.hashes import model_hash
from studio.models.pickle_reader import ZIP_MAGIC, Limits
from studio.models.safe_files import SNIFF_BYTES, check_safetensors

log = logging.getLogger(__name__)


# What one conversion may take (the parent computes Limits from these; tests lower them).
MAX_COPY_BYTES = 64 * 1024**3  # the largest copy written, whatever the file and the disk allow
COPY_GROWTH = 4  # a copy may be this many times its pickle: a tensor shared by several keys is written for each ...
COPY_SLACK = 64 * 1024**2  # ... plus this much, so a small file with a few shared tensors converts
DISK_RESERVE = 1024**3  # free space the copy leaves on its disk
CONVERT_SECONDS = 120.0  # the child's time for a small file (starting Python and torch included) ...
CONVERT_BYTES_PER_SECOND = 10 * 1024**2  # ... plus a slow disk's pace through reading, hashing and writing a big one
ADDRESS_HEADROOM = 1024**3  # address space beyond the mapped file and the free RAM: thread stacks, allocator arenas


@dataclass(frozen=True)
class Converted:
    source: Path
    target: Path
    tensors: int
    dropped: int  # entries that were not tensors (epoch counters, optimizer state, ...)
    size_bytes: int
    already: bool = False  # the copy was there from an earlier conversion of this same file


def converter_limits(source: Path, target: Path) -> Limits:
    """The limits for converting `source` into `target`, from the file's size and this machine."""
    size = source.stat().st_size
    budgets = [
        (MAX_COPY_BYTES, "the converter's limit"),
        (COPY_GROWTH * size + COPY_SLACK, f"what a copy of a {size_words(size)} file may take"),
    ]
    free = free_disk(target.parent)
    if free is not None:
        budgets.append((max(0, free - DISK_RESERVE), "the free space on the disk"))
    copy_bytes, why = min(budgets)
    memory = available_bytes()
    # The source is mapped into memory (torch.load's mmap), so it counts against the address space too.
    address = None if memory is None else size + memory + ADDRESS_HEADROOM
    return Limits(copy_bytes, why, address, CONVERT_SECONDS + size / CONVERT_BYTES_PER_SECOND)


# ------------------------------------------------------------------------------------------------
# In the studio's process: what to convert, where to, and running the subprocess
# ------------------------------------------------------------------------------------------------


def convert(path: Path, out: Optional[Path] = None) -> list[Converted]:
    """Convert one pickle file (to `out`, else `<stem>.safetensors` beside it) or every pickle
    weight file in a model folder; ModelFileError with one sentence when it cannot be done."""
    path = expand_user(path, ModelFileError)
    if path.is_dir():
        if out is not None:
            raise ModelFileError("--out is for one file; a folder's converted copies go beside its pickle files.")
        return convert_folder(path)
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist.")
    target = expand_user(out, ModelFileError) if out is not None else path.with_suffix(".safetensors")
    return [convert_file(path, target)]


def convert_folder(folder: Path) -> list[Converted]:
    """Every pickle weight file in a diffusers/transformers folder, each beside itself under the
    name the libraries look for; a sharded checkpoint's index is rewritten to the new names."""
    pickles = pickle_weights(folder)
    if not pickles:
        raise ModelFileError(
            f"{folder} holds no pickle weight files (.bin .pt .pth .ckpt .pkl), so there is nothing to convert."
        )
    todo = []
    for pickle in pickles:
        target = pickle.with_name(folder_name(pickle.name))
        # The publisher's own safetensors file beside a pickle is what gets loaded: nothing to do.
        if not target.exists() or _metadata(target).get("converted_from") == pickle.name:
            todo.append((pickle, target))
    if not todo:
        raise ModelFileError(
            f"{folder} already has a .safetensors file beside each pickle file; there is nothing to convert."
        )
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
        stem = "model" + stem[len("pytorch_model") :]
    return stem + ".safetensors"


def _rewrite_index(index: Path) -> None:
    """X.bin.index.json -> its .safetensors twin, once every shard it lists has been converted."""
    try:
        data = read_json(index)
        shards = set(data["weight_map"].values())
    except (ModelFileError, KeyError, TypeError, AttributeError):
        return  # not an index we understand: the library will say what is missing
    if not all(isinstance(s, str) and (index.parent / folder_name(s)).is_file() for s in shards):
        return
    data["weight_map"] = {k: folder_name(v) for k, v in data["weight_map"].items()}
    write_text_atomic(
        index.parent / (folder_name(index.name[: -len(".index.json")]) + ".index.json"), json.dumps(data, indent=2)
    )


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
    limits = converter_limits(source, target)
    # The copy is written under a fresh, unguessable name made here (a symlink planted in the model
    # folder under a predictable name could send the write elsewhere), and renamed only once the
    # child reports success: a refusal, a crash or a timeout leaves nothing the registry would load.
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ModelFileError(f"{target} cannot be written ({exc.strerror or exc}).") from None
    os.close(fd)
    tmp = Path(name)
    try:
        report = _run_converter(source, tmp, limits)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    model_hash(source)  # the child cached it; a cache that could not be written is filled here
    return Converted(source, target, int(report["tensors"]), int(report["dropped"]), int(report["bytes"]))


def _run_converter(source: Path, out: Path, limits: Limits) -> dict[str, Any]:
    """Run the child on `source`, writing to `out`: its report, or ModelFileError with its sentence."""
    # Belt and braces with the explicit weights_only=True: this variable would only matter if a
    # call forgot it, and a user's shell or Dockerfile may set it globally.
    env = child_env(drop=("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",))
    env["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    # Copying tensors needs no thread pool, and each pool thread's stack and allocator arena would
    # spend the address space the child is limited to.
    env["OMP_NUM_THREADS"] = "1"
    # Nothing in the current folder (maybe the model's, maybe holding a torch.py) is imported there.
    command = python_command(
        "studio.models.pickle_reader", str(source.absolute()), str(out.absolute()), json.dumps(asdict(limits))
    )
    try:
        done = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            cwd=PACKAGE_ROOT,
            timeout=limits.seconds,
        )
    except subprocess.TimeoutExpired:  # run() has killed the child
        raise ModelFileError(
            f"Converting {source.name} took longer than {_duration(limits.seconds)}, so it was "
            "stopped and nothing was written."
        ) from None
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
    return report


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return "1 second" if seconds < 1.5 else f"{seconds:.0f} seconds"


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
