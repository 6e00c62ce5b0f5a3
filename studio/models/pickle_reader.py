"""The throw-away process of `studio convert` (`python -P -m studio.models.pickle_reader SOURCE OUT
LIMITS`): the only place a pickle is ever opened. It loads the file with torch's weights-only
unpickler, checks every tensor's declared size against the limits its parent gave it (`Limits`),
writes the tensors to OUT as safetensors, and prints one JSON line: a report, or {"error": sentence}.

Its parent (studio.models.pickle_import) chooses the limits, runs it with a wall-clock limit and
owns OUT, so nothing this process does can leave a file behind or reach the studio's own memory."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from studio.core.memory import size_words
from studio.models.hashes import model_hash
from studio.models.load_budget import shape_words

LAYOUTS = ("state_dict", "model", "module")  # where trainers nest the weights (Lightning, DDP, ...)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive around the pickle
MIN_TORCH = (2, 6)  # torch <= 2.5.1 could be made to run code even with weights_only=True (CVE-2025-32434)


@dataclass(frozen=True)
class Limits:
    """What the child may take for one file; it travels to the child as JSON."""

    copy_bytes: int  # the most the copy's tensors may add up to
    copy_why: str  # which limit that is, in words, for the refusal
    memory_bytes: Optional[int]  # address space the child may add once torch is loaded (None: no measure of RAM)
    seconds: float  # wall-clock time for the child, start to finish


def _read_and_write(source: Path, out: Path, limits: Limits) -> dict[str, Any]:
    """Load `source` weights-only, write its tensors to `out` within `limits`; a report for the parent."""
    import torch
    from safetensors.torch import save_file  # noqa: F401 - loaded before the address space is limited

    version = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if version < MIN_TORCH:
        return {
            "error": f"Converting pickle files needs torch 2.6 or newer (this is {torch.__version__}), "
            "because older versions can be made to run code even in their weights-only mode."
        }
    name = source.name
    _limit_address_space(limits.memory_bytes)
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
    except Exception as exc:  # noqa: BLE001 - every failure to read is one sentence for the user
        return {"error": _too_large(name) if _out_of_memory(exc) else _explain(name, exc)}
    tensors, dropped = _named_tensors(loaded)
    if not tensors:
        return {"error": f"{name} holds no named tensors (no state dict), so there is nothing to convert."}
    refusal = _over_budget(name, tensors, limits)
    if refusal:
        return {"error": refusal}
    metadata = {
        "format": "pt",  # transformers refuses safetensors whose metadata lacks it
        "converted_from": name,
        "source_sha256": model_hash(source),
        "source_size": str(source.stat().st_size),
    }
    _save(_materialised(tensors), out, metadata)
    return {"tensors": len(tensors), "dropped": dropped, "bytes": out.stat().st_size}


def _limit_address_space(extra: Optional[int]) -> None:
    """Let this process map at most `extra` bytes beyond what it holds now (torch loaded): what
    unpickling allocates for a storage a file merely declares (the legacy format allocates each
    storage at its declared size before reading it) fails at that limit instead of exhausting the
    machine. Where the platform cannot say or limit it (not Linux), the copy budget still holds."""
    if extra is None:
        return
    try:
        import resource

        pages = int(Path("/proc/self/statm").read_text().split()[0])  # the address space in use, in pages
        limit = pages * os.sysconf("SC_PAGE_SIZE") + extra
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError, IndexError, AttributeError):
        return


def _out_of_memory(exc: BaseException) -> bool:
    """torch reports an allocation the address-space limit refused as a RuntimeError, in words."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "cannot allocate memory" in text


def _too_large(name: str) -> str:
    return f"{name} is too large to convert with the memory available."


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


def _named_tensors(loaded: Any) -> tuple[dict[str, Any], int]:
    """The named tensors of a flat state dict, or of one nested under a trainer's key, and how
    many entries were dropped for not being tensors. Nothing is copied yet."""
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
    for key, value in chosen.items():
        # safetensors holds dense tensors only: a sparse or quantized one is dropped like a number.
        if (
            not (isinstance(key, str) and isinstance(value, torch.Tensor))
            or value.layout != torch.strided
            or value.is_quantized
        ):
            dropped += 1
            continue
        tensors[key] = value.detach().as_subclass(torch.Tensor)
    return tensors, dropped


def _over_budget(name: str, tensors: dict[str, Any], limits: Limits) -> Optional[str]:
    """The refusal for the first tensor that takes the copy past its budget, or None. A tensor is
    counted at its declared size, numel × element size, which is what the copy writes: a stride-0
    or overlapping view of a few bytes counts in full."""
    total = 0
    for key, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        total += size
        if total <= limits.copy_bytes:
            continue
        declared = (
            f"tensor {_clip(repr(key), 80)} as {shape_words(tuple(tensor.shape))} "
            f"{str(tensor.dtype).removeprefix('torch.')} ({size_words(size)})"
        )
        budget = f"{limits.copy_why} ({size_words(limits.copy_bytes)})"
        if size > limits.copy_bytes:
            return f"{name} declares {declared}, more than {budget}, so nothing was written."
        return f"{name} declares {declared}, which takes its tensors past {budget}, so nothing was written."
    return None


def _materialised(tensors: dict[str, Any]) -> dict[str, Any]:
    """Each tensor as its own dense bytes: safetensors stores each tensor's own bytes and refuses
    views and shared storage (tied weights), which are copied out here."""
    import torch

    out: dict[str, Any] = {}
    seen: set[int] = set()
    for key, tensor in tensors.items():
        storage = tensor.untyped_storage()
        whole = tensor.is_contiguous() and tensor.storage_offset() == 0 and tensor.nbytes == storage.nbytes()
        if tensor.numel() and (storage.data_ptr() in seen or not whole):
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        if tensor.numel():
            seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def _save(tensors: dict[str, Any], out: Path, metadata: dict[str, str]) -> None:
    """Write the safetensors file into `out`, the parent's temporary file, and flush it to disk
    before the parent renames it."""
    from safetensors.torch import save_file

    save_file(tensors, str(out), metadata=metadata)
    with out.open("rb+") as f:
        os.fsync(f.fileno())


def main(argv: list[str]) -> int:
    """`SOURCE OUT [LIMITS-JSON]`: without limits (run by hand), those the parent would give."""
    source, out = Path(argv[0]), Path(argv[1])
    try:
        if len(argv) > 2:
            limits = Limits(**json.loads(argv[2]))
        else:
            from studio.models.pickle_import import converter_limits

            limits = converter_limits(source, out)
        report = _read_and_write(source, out, limits)
    except OSError as exc:
        report = {"error": f"The copy of {source.name} cannot be written in {out.parent} ({exc.strerror or exc})."}
    except Exception as exc:  # noqa: BLE001 - e.g. a dtype safetensors cannot hold: one sentence, not a traceback
        report = {
            "error": _too_large(source.name)
            if _out_of_memory(exc)
            else f"{source.name} could not be converted ({type(exc).__name__}: {_clip(str(exc), 120)})."
        }
    print(json.dumps(report))
    return 1 if "error" in report else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
