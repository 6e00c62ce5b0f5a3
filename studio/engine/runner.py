"""Runs one job on a backend and reports it as events. Pure Python, no Qt: the CLI, the benchmarks
and the tests use it directly; the window hosts it on a QThread (studio/state/engine_thread.py).

Every job ends in exactly one of Finished, Failed or Cancelled; no exception escapes `run`, so the
thread that serves the queue never dies."""

from __future__ import annotations

import gc
import logging
import sys
import time
from typing import Any, Callable, Hashable, Optional

import numpy as np

from studio.core.errors import (CANNOT_BE_INTERRUPTED, ErrorKind, JobCancelled, OutOfMemory, SpecError, StudioError,
                                first_line, is_native_panic)
from studio.core.events import Cancelled, Event, ExportResult, Failed, Finished, ImageResult, Started, Token
from studio.core.jobs import (ContextJob, ExportJob, ImageJob, JobSpec, Lane, LatentBatchJob, LatentDecodeJob,
                              LatentEncodeJob, MorphJob, TextJob)
from studio.engine.backends import backend_class, native
from studio.engine.backends.base import JobContext
from studio.engine.cache import ModelCache
from studio.engine.diffusion_morph import run_diffusion_morph
from studio.engine.morph import check_morph_memory, encode_picture, run_morph
from studio.engine.queue import Job, JobQueue
from studio.engine.export import EXPORTABLE_FORMATS
from studio.models.registry import ModelInfo, ModelRegistry

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]

# The kinds of model each kind of job runs on.
MODEL_KIND = {ImageJob: ("image",), TextJob: ("text",), LatentDecodeJob: ("latent",), ContextJob: ("text",),
              MorphJob: ("latent", "image"), LatentEncodeJob: ("latent",), LatentBatchJob: ("latent",)}


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


OUT_OF_MEMORY_ADVICE = ("Try a smaller size, fewer images or tokens, or close other programs using the GPU "
                        "(or run on the CPU).")


def free_memory() -> None:
    """Give memory back after a failure: collect the failed attempt's garbage and, if torch has
    been imported, return CUDA's cached blocks (called outside any except block, or the
    traceback would keep the tensors alive)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# CUDA errors after which the device context is broken for good: only a new process recovers
# (pytorch#17425, #44624). The engine process exits after reporting one.
DEVICE_POISON_WORDS = ("device-side assert", "illegal memory access", "unspecified launch failure",
                       "misaligned address")

# Out of memory as cuDNN, cuBLAS and ONNX Runtime report it: plain RuntimeErrors, recognised by their words.
OUT_OF_MEMORY_WORDS = ("out of memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed",
                       "failed to allocate memory")


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    text = text.lower()
    return any(w in text for w in words)


def poisons_device(message: str) -> bool:
    """Whether a failure leaves this process unfit for another job: a CUDA error broke its device
    context, or native work that cannot be interrupted still runs on one of its threads (a stuck
    tokenizer). Either way the engine process exits after reporting it and a new one takes over."""
    return _mentions(message, DEVICE_POISON_WORDS + (CANNOT_BE_INTERRUPTED,))


# torch's "Cannot copy out of meta tensor": a parameter that loading never filled.
MISSING_WEIGHTS = ("The model's weights were never loaded into some of its tensors (they are missing from its files, "
                   "or the files do not match its config); copy the model again.")


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map any exception to (kind, one sentence). The traceback goes to the log, not the person."""
    if isinstance(exc, StudioError):
        return exc.kind, exc.message
    text = first_line(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or _mentions(str(exc), OUT_OF_MEMORY_WORDS):
        return ErrorKind.OUT_OF_MEMORY, f"Out of memory ({text}). {OUT_OF_MEMORY_ADVICE}"
    if isinstance(exc, NotImplementedError) and "meta tensor" in str(exc):
        return ErrorKind.MODEL_FILE, MISSING_WEIGHTS
    if is_native_panic(exc):  # Rust libraries read the model's files: a panic there is about them
        return ErrorKind.MODEL_FILE, (f"A library reading the model's files failed inside ({text}); the files may be "
                                      "damaged: copy the model again.")
    return ErrorKind.RUNTIME, f"{type(exc).__name__}: {text}"


class Runner:
    """Loads models through the cache and runs jobs on them."""

    def __init__(self, registry: ModelRegistry, cache: Optional[ModelCache] = None, previews: bool = True):
        self.registry = registry
        self.cache = cache or ModelCache()
        self.previews = previews  # make step previews (the window shows them; the CLI does not)

    def backend_for(self, spec: JobSpec) -> tuple[Any, ModelInfo, str, Hashable]:
        """The loaded backend for a spec (from the cache when it is there), its model, device and
        cache key."""
        model = self.registry.resolve(spec.model)
        needed = MODEL_KIND[type(spec)]
        if model.kind not in needed:
            raise SpecError("model", f"{model.id} is {_a(model.kind)} model; {_a(spec.kind)} job needs "
                                     f"{' or '.join(map(_a, needed))} model.")
        runtime = model.runtimes[0] if spec.runtime == "auto" else spec.runtime
        if runtime not in model.runtimes:
            hint = f"; export it first with `studio export-onnx {model.id}`" if runtime == "onnx" \
                and model.format in EXPORTABLE_FORMATS else ""
            raise SpecError("runtime", f"is {runtime}, but {model.id} runs on {' or '.join(model.runtimes)}{hint}.")
        model = self.registry.for_runtime(model, runtime)  # a torch model's ONNX export runs its "onnx"
        cls = backend_class(model.format, runtime)
        device, dtype = cls.choose_device(spec.device)
        key = (model.id, str(model.path), runtime, device, dtype)
        backend = self.cache.get(key, lambda: cls.load(model, device, dtype), expected_bytes=model.size_bytes)
        return backend, model, device, key

    def run(self, job: Job, emit: Emit, between_steps: Optional[Callable[[], None]] = None) -> Event:
        """Run one job to its end and return its terminal event, emitted exactly once.

        Nothing escapes: a failure in the job, or in the host's `emit`, ends the job as Failed.
        Native calls inside it (ONNX runs, tokenizers) stop on the job's cancel flag."""
        try:
            with native.job_scope(job.cancel):
                end = self._execute(job, emit, between_steps)
        except Exception as exc:  # noqa: BLE001 - a bug in the ladder itself must still end the job
            end = self._failed(job, exc)
        except BaseException as exc:  # a Rust panic is not an Exception; KeyboardInterrupt still goes up
            if not is_native_panic(exc):
                raise
            end = self._failed(job, exc)
        if isinstance(end, Failed):
            # Here, with _execute's frame gone: its traceback no longer keeps the failed attempt's
            # tensors alive, so this collection can give their memory back.
            free_memory()
        try:
            emit(end)
        except Exception:  # noqa: BLE001 - the host failed to take the news; the engine carries on
            log.exception("job %d: reporting its end (%s) failed", job.job_id, type(end).__name__)
        return end

    def _execute(self, job: Job, emit: Emit, between_steps: Optional[Callable[[], None]]) -> Event:
        """Everything but the terminal event, which is returned, not emitted.

        Out of memory is retried once, after the backend turns on whatever memory saving it has
        (VAE tiling and slicing, attention slicing, CPU offload...); the result says what was
        turned on, so a slower or tiled image is never a silent surprise."""
        if job.cancel.is_set():
            return Cancelled(job.job_id)
        saving: list[str] = []
        try:
            emit(Started(job.job_id))
        except Exception as exc:  # noqa: BLE001 - the host failed to take the news; the job still ends
            return self._failed(job, exc)
        streamed = False  # tokens already shown cannot be taken back, so such a job is not run again

        def emit_noting_tokens(event: Event) -> None:
            nonlocal streamed
            streamed = streamed or isinstance(event, Token)
            emit(event)

        while True:
            failure: Optional[BaseException] = None
            backend = key = None
            try:
                started = time.perf_counter()
                ctx = JobContext(job.job_id, job.cancel, emit_noting_tokens, between_steps=between_steps,
                                 previews=self.previews)
                if isinstance(job.spec, ExportJob):  # no model to load: the exporter reads its files
                    return Finished(job.job_id, self._export(job.spec, ctx))
                backend, model, device, key = self.backend_for(job.spec)
                with self.cache.pinned(key):  # an interactive job run between steps must not evict this one
                    result = self._dispatch(job.spec, backend, ctx, model.kind)
                result.info.setdefault("model", model.id)
                result.info.setdefault("device", device)
                if getattr(backend, "memory_saving", None):
                    result.info["memory_saving"] = ", ".join(backend.memory_saving)
                if saving:
                    result.info["degraded"] = (f"Ran out of memory, so it ran again with {', '.join(saving)}; "
                                               "that can be slower.")
                result.info["seconds"] = round(time.perf_counter() - started, 4)
                return Finished(job.job_id, result)
            except JobCancelled:
                return Cancelled(job.job_id)
            except Exception as exc:  # noqa: BLE001 - the engine must survive any job
                failure = exc
            except BaseException as exc:  # PyO3's PanicException (a Rust library's panic) is no Exception
                if not is_native_panic(exc):
                    raise
                failure = exc
            # Outside the except block, so the traceback (and the tensors its frames hold) can be freed.
            kind, _ = classify(failure)
            if kind is not ErrorKind.OUT_OF_MEMORY or saving or streamed:
                return self._failed(job, failure, saving)
            log.warning("job %d ran out of memory; retrying with less memory", job.job_id, exc_info=failure)
            del failure
            try:
                saving = self._use_less_memory(backend, key)
            except Exception as exc:  # noqa: BLE001 - e.g. offload needs accelerate: the OOM stands, said plainly
                log.exception("job %d: turning on memory saving failed", job.job_id)
                return self._failed(job, OutOfMemory(f"Out of memory, and memory saving could not be turned on "
                                                     f"({type(exc).__name__}). {OUT_OF_MEMORY_ADVICE}"))
            del backend
            if not saving:  # nothing left to turn down: it stays out of memory
                return self._failed(job, OutOfMemory(f"Out of memory. {OUT_OF_MEMORY_ADVICE}"))

    def _export(self, spec: ExportJob, ctx: JobContext) -> ExportResult:
        """Export a model to ONNX (cancel lands between its stages) and look for models again, so
        the next job finds the export as the model's "onnx" runtime."""
        from studio.core.untrusted import expand_user
        from studio.engine.export import check_exportable, default_out, export_onnx

        started = time.perf_counter()
        model = self.registry.resolve(spec.model)
        check_exportable(model)
        if model.onnx_export and not spec.out and not spec.replace:  # asked twice: it is there already
            export = self.registry.resolve(model.onnx_export)
            return ExportResult(str(export.path), (), {"model": model.id, "device": "cpu", "seconds": 0.0})
        out = expand_user(spec.out, SpecError) if spec.out else default_out(model)

        def say(line: str) -> None:
            ctx.checkpoint()  # Stop lands between stages; slider requests run there
            log.info("export of %s: %s", model.id, line)

        parity = export_onnx(model, out, say, replace=spec.replace)
        if not parity.ok:
            worst = next(line for line in parity.lines if not line.endswith(" ok"))
            raise StudioError(f"The ONNX export of {model.id} does not match torch ({worst}), so it was not kept.")
        self.registry.refresh()
        return ExportResult(str(out), tuple(parity.lines), {"model": model.id, "device": "cpu",
                                                            "seconds": round(time.perf_counter() - started, 2)})

    def _use_less_memory(self, backend: Any, key: Optional[Hashable]) -> list[str]:
        """The ladder's one rung: unload the other models, give memory back, and turn on the
        backend's memory saving. Returns what was changed, in words ([] if nothing could be)."""
        before = len(self.cache.keys())
        self.cache.release_others(key)
        free_memory()
        unloaded = before - len(self.cache.keys())
        changed = [f"{unloaded} other model{'s' if unloaded > 1 else ''} unloaded"] if unloaded else []
        less = getattr(backend, "use_less_memory", None)
        return changed + (list(less()) if less is not None else [])

    @staticmethod
    def _failed(job: Job, failure: BaseException, saving: Optional[list[str]] = None) -> Failed:
        kind, message = classify(failure)
        if saving and kind is ErrorKind.OUT_OF_MEMORY:
            message = f"Out of memory even with {', '.join(saving)}. {OUT_OF_MEMORY_ADVICE}"
        if isinstance(failure, StudioError):
            log.warning("job %d failed: %s", job.job_id, message)
        else:
            log.error("job %d failed", job.job_id, exc_info=failure)
        return Failed(job.job_id, kind.value, message)

    def serve(self, queue: JobQueue, emit: Emit) -> None:
        """Run jobs from `queue` until it is closed; interactive requests also run between batch steps."""

        def run_interactive() -> None:
            while (pending := queue.take_interactive()) is not None:
                self.run(pending, emit)

        while (job := queue.take()) is not None:
            self.run(job, emit, between_steps=run_interactive if job.lane is Lane.BATCH else None)

    @staticmethod
    def _dispatch(spec: JobSpec, backend: Any, ctx: JobContext, model_kind: str = ""):
        if isinstance(spec, ImageJob):
            return backend.generate_image(spec, ctx)
        if isinstance(spec, TextJob):
            return backend.generate(spec, ctx)
        if isinstance(spec, MorphJob):  # seed/prompt travel on a diffusion model, a latent walk otherwise
            check_morph_memory(spec, backend, model_kind)  # before the first frame, not after the last
            return run_diffusion_morph(spec, backend, ctx) if model_kind == "image" else run_morph(spec, backend, ctx)
        if isinstance(spec, LatentEncodeJob):
            return encode_picture(spec, backend, ctx)
        if isinstance(spec, ContextJob):
            ctx.check_cancelled()
            return backend.context(spec)
        if isinstance(spec, (LatentDecodeJob, LatentBatchJob)):
            field = "latent" if isinstance(spec, LatentDecodeJob) else "latents"
            latents = np.asarray([spec.latent] if field == "latent" else spec.latents, dtype=np.float32)
            if latents.shape[1] != backend.latent_dim:
                raise SpecError(field, f"has {latents.shape[1]} numbers; this model takes {backend.latent_dim}.")
            ctx.check_cancelled()
            return ImageResult(tuple(backend.decode(latents)), dict(getattr(backend, "info", {})))
        raise SpecError("kind", f"{spec.kind} jobs are not supported yet.")

