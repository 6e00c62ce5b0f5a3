"""What a job's failure means: the one sentence a person reads (classify), whether the engine
process survives it (poisons_device), and giving back the memory a failed attempt held
(free_memory). Pure Python: torch is only looked at when something has already imported it."""

from __future__ import annotations

import gc
import sys

from studio.core.errors import CANNOT_BE_INTERRUPTED, ErrorKind, StudioError, first_line, is_native_panic

OUT_OF_MEMORY_ADVICE = (
    "Try a smaller size, fewer images or tokens, or close other programs using the GPU (or run on the CPU)."
)


def collect_garbage() -> None:
    """Collect cyclic garbage now, unless collection has been handed to a GUI thread: when the
    runner shares the window's process (tests, `Studio(isolated=False)`), the garbage may hold the
    window's QObjects, which must be freed on their own thread (studio/state/gui_thread_gc.py turns
    automatic collection off there). The engine process and the CLI hold no QObjects: they collect."""
    if gc.isenabled():
        gc.collect()


def free_memory() -> None:
    """Give memory back after a failure: collect the failed attempt's garbage and, if torch has
    been imported, return CUDA's cached blocks (called outside any except block, or the
    traceback would keep the tensors alive)."""
    collect_garbage()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# CUDA errors after which the device context is broken for good: only a new process recovers
# (pytorch#17425, #44624). The engine process exits after reporting one.
DEVICE_POISON_WORDS = (
    "device-side assert",
    "illegal memory access",
    "unspecified launch failure",
    "misaligned address",
)

# Out of memory as cuDNN, cuBLAS and ONNX Runtime report it: plain RuntimeErrors, recognised by their words.
OUT_OF_MEMORY_WORDS = (
    "out of memory",
    "cudnn_status_alloc_failed",
    "cublas_status_alloc_failed",
    "failed to allocate memory",
)


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    text = text.lower()
    return any(w in text for w in words)


def poisons_device(message: str) -> bool:
    """Whether a failure leaves this process unfit for another job: a CUDA error broke its device
    context, or native work that cannot be interrupted still runs on one of its threads (a stuck
    tokenizer). Either way the engine process exits after reporting it and a new one takes over."""
    return _mentions(message, DEVICE_POISON_WORDS + (CANNOT_BE_INTERRUPTED,))


# torch's "Cannot copy out of meta tensor": a parameter that loading never filled.
MISSING_WEIGHTS = (
    "The model's weights were never loaded into some of its tensors (they are missing from its files, "
    "or the files do not match its config); copy the model again."
)


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map any exception to (kind, one sentence). The traceback goes to the log, not the person."""
    if isinstance(exc, StudioError):
        return exc.kind, exc.message
    text = first_line(exc)
    if (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or _mentions(str(exc), OUT_OF_MEMORY_WORDS)
    ):
        return ErrorKind.OUT_OF_MEMORY, f"Out of memory ({text}). {OUT_OF_MEMORY_ADVICE}"
    if isinstance(exc, NotImplementedError) and "meta tensor" in str(exc):
        return ErrorKind.MODEL_FILE, MISSING_WEIGHTS
    if is_native_panic(exc):  # Rust libraries read the model's files: a panic there is about them
        return ErrorKind.MODEL_FILE, (
            f"A library reading the model's files failed inside ({text}); the files may be "
            "damaged: copy the model again."
        )
    return ErrorKind.RUNTIME, f"{type(exc).__name__}: {text}"
