"""Runs one job on a backend and reports it as events. Pure Python, no Qt: the CLI, the benchmarks
and the tests use it directly; the window hosts it on a QThread (studio/state/engine_thread.py).

Every job ends in exactly one of Finished, Failed or Cancelled; no exception escapes `run`, so the
thread that serves the queue never dies."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Hashable, Optional, TypeVar, Union

import numpy as np

from studio.core.errors import ErrorKind, JobCancelled, OutOfMemory, SpecError, StudioError, is_native_panic
from studio.core.events import (
    Cancelled,
    Event,
    ExportResult,
    Failed,
    Finished,
    ImageResult,
    Result,
    RunInfo,
    Started,
    Token,
)
from studio.core.jobs import (
    ContextJob,
    ExportJob,
    ImageJob,
    JobSpec,
    Lane,
    LatentBatchJob,
    LatentDecodeJob,
    LatentEncodeJob,
    MorphJob,
    TextJob,
)
from studio.core.kinds import Device, ModelKind, Runtime
from studio.engine.backends import backend_class, native
from studio.engine.backends.base import ImageBackend, LatentBackend, SavesMemory, TextBackend
from studio.engine.backends.job_context import JobContext
from studio.engine.cache import ModelCache
from studio.engine.errors import OUT_OF_MEMORY_ADVICE, classify, free_memory
from studio.engine.export.onnx_export import EXPORTABLE_FORMATS
from studio.engine.morph.budget import check_morph_memory
from studio.engine.morph.diffusion_morph import run_diffusion_morph
from studio.engine.morph.latent_morph import encode_picture, run_latent_morph
from studio.engine.queue import Job, JobQueue
from studio.models.registry import ModelInfo, ModelRegistry

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
Capability = TypeVar("Capability")

# The kinds of model each kind of job runs on.
MODEL_KIND: dict[type[JobSpec], tuple[ModelKind, ...]] = {
    ImageJob: (ModelKind.IMAGE,),
    TextJob: (ModelKind.TEXT,),
    ContextJob: (ModelKind.TEXT,),
    MorphJob: (ModelKind.LATENT, ModelKind.IMAGE),
    LatentDecodeJob: (ModelKind.LATENT,),
    LatentBatchJob: (ModelKind.LATENT,),
    LatentEncodeJob: (ModelKind.LATENT,),
}


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


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
            raise SpecError(
                "model",
                f"{model.id} is {_a(model.kind)} model; {_a(spec.kind)} job needs "
                f"{' or '.join(map(_a, needed))} model.",
            )
        runtime = model.runtimes[0] if spec.runtime == Runtime.AUTO else spec.runtime
        if runtime not in model.runtimes:
            hint = (
                f"; export it first with `studio export-onnx {model.id}`"
                if runtime == Runtime.ONNX and model.format in EXPORTABLE_FORMATS
                else ""
            )
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
                ctx = JobContext(
                    job.job_id, job.cancel, emit_noting_tokens, between_steps=between_steps, previews=self.previews
                )
                if isinstance(job.spec, ExportJob):  # no model to load: the exporter reads its files
                    return Finished(job.job_id, self._export(job.spec, ctx))
                backend, model, device, key = self.backend_for(job.spec)
                with self.cache.pinned(key):  # an interactive job run between steps must not evict this one
                    result = self._dispatch(job.spec, backend, ctx, model)
                info = result.info.replace(model=result.info.model or model.id, device=result.info.device or device)
                if isinstance(backend, SavesMemory) and backend.memory_saving:
                    info = info.replace(memory_saving=", ".join(backend.memory_saving))
                if saving:
                    info = info.replace(
                        degraded=f"Ran out of memory, so it ran again with {', '.join(saving)}; that can be slower."
                    )
                info = info.replace(seconds=round(time.perf_counter() - started, 4))
                return Finished(job.job_id, dataclasses.replace(result, info=info))
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
                return self._failed(
                    job,
                    OutOfMemory(
                        f"Out of memory, and memory saving could not be turned on "
                        f"({type(exc).__name__}). {OUT_OF_MEMORY_ADVICE}"
                    ),
                )
            del backend
            if not saving:  # nothing left to turn down: it stays out of memory
                return self._failed(job, OutOfMemory(f"Out of memory. {OUT_OF_MEMORY_ADVICE}"))

    def _export(self, spec: ExportJob, ctx: JobContext) -> ExportResult:
        """Export a model to ONNX (cancel lands between its stages) and look for models again, so
        the next job finds the export as the model's "onnx" runtime."""
        from studio.core.untrusted import expand_user
        from studio.engine.export.onnx_export import check_exportable, default_out, export_onnx

        started = time.perf_counter()
        model = self.registry.resolve(spec.model)
        check_exportable(model)
        if model.onnx_export and not spec.out and not spec.replace:  # asked twice: it is there already
            export = self.registry.resolve(model.onnx_export)
            return ExportResult(str(export.path), (), RunInfo(model=model.id, device=Device.CPU, seconds=0.0))
        out = expand_user(spec.out, lambda sentence: SpecError("out", sentence)) if spec.out else default_out(model)

        def say(line: str) -> None:
            ctx.checkpoint()  # Stop lands between stages; slider requests run there
            log.info("export of %s: %s", model.id, line)

        parity = export_onnx(model, out, say, replace=spec.replace)
        if not parity.ok:
            worst = next(line for line in parity.lines if not line.endswith(" ok"))
            raise StudioError(f"The ONNX export of {model.id} does not match torch ({worst}), so it was not kept.")
        self.registry.refresh()
        return ExportResult(
            str(out),
            tuple(parity.lines),
            RunInfo(model=model.id, device=Device.CPU, seconds=round(time.perf_counter() - started, 2)),
        )

    def _use_less_memory(self, backend: object, key: Optional[Hashable]) -> list[str]:
        """The ladder's one rung: unload the other models, give memory back, and turn on the
        backend's memory saving. Returns what was changed, in words ([] if nothing could be)."""
        before = len(self.cache.keys())
        self.cache.release_others(key)
        free_memory()
        unloaded = before - len(self.cache.keys())
        changed = [f"{unloaded} other model{'s' if unloaded > 1 else ''} unloaded"] if unloaded else []
        return changed + (list(backend.use_less_memory()) if isinstance(backend, SavesMemory) else [])

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
    def _dispatch(spec: JobSpec, backend: object, ctx: JobContext, model: ModelInfo) -> Result:
        """The job's work, chosen by the spec's type, on a backend that has the capability it needs
        (backends/base.py). Morphs come first: a morph is no image job, whatever fields it shares."""
        match spec:
            case MorphJob() if model.kind == ModelKind.IMAGE:  # seed and prompt travel on a diffusion model
                check_morph_memory(spec, model.kind, spec.width, spec.height)  # before the first frame
                return run_diffusion_morph(spec, backend, ctx)
            case MorphJob():  # a walk through a latent model's space
                latent = _capable(backend, LatentBackend, spec, model)
                check_morph_memory(spec, model.kind, latent.image_size, latent.image_size)
                return run_latent_morph(spec, latent, ctx)
            case ContextJob():
                text = _capable(backend, TextBackend, spec, model)
                ctx.check_cancelled()
                return text.context(spec)
            case ImageJob():
                return _capable(backend, ImageBackend, spec, model).generate_image(spec, ctx)
            case TextJob():
                return _capable(backend, TextBackend, spec, model).generate(spec, ctx)
            case LatentEncodeJob():
                return encode_picture(spec, _capable(backend, LatentBackend, spec, model), ctx)
            case LatentDecodeJob() | LatentBatchJob():
                return _decode_latents(spec, _capable(backend, LatentBackend, spec, model), ctx)
        raise SpecError("kind", f"{spec.kind} jobs are not supported yet.")


def _capable(backend: object, capability: type[Capability], spec: JobSpec, model: ModelInfo) -> Capability:
    """`backend` as the capability `spec` needs, or SpecError naming the model: the backend it
    loads as cannot run that kind of job."""
    if not isinstance(backend, capability):
        raise SpecError(
            "model",
            f"is {model.id}, which loads as a {type(backend).__name__}; that cannot run "
            f"{_a(spec.kind)} job (it is no {capability.__name__}); choose another model.",
        )
    return backend


def _decode_latents(
    spec: Union[LatentDecodeJob, LatentBatchJob], backend: LatentBackend, ctx: JobContext
) -> ImageResult:
    """A slider drag's picture (one latent) or a map's pictures (many), in one decode."""
    field = "latent" if isinstance(spec, LatentDecodeJob) else "latents"
    latents = np.asarray([spec.latent] if isinstance(spec, LatentDecodeJob) else spec.latents, dtype=np.float32)
    if latents.shape[1] != backend.latent_dim:
        raise SpecError(field, f"has {latents.shape[1]} numbers; this model takes {backend.latent_dim}.")
    ctx.check_cancelled()
    return ImageResult(tuple(backend.decode(latents)), backend.info)
