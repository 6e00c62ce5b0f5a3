"""Backends: one loaded model on one runtime and device, which runs the jobs its kind allows.

One module per runtime x family, grouped by family with the helpers only that family uses:
diffusion/ (diffusers pipelines on torch and on ONNX Runtime, their samplers, previews, LoRAs and
single-file checkpoints), text/ (causal language models on torch, ONNX Runtime and llama.cpp, prompt
assembly, samplers, chat templates) and latent/ (our latent decoders on torch and on ONNX Runtime).
Beside them: base.py (the Protocols the runner checks a backend against), job_context.py (a
backend's handle on its job), helpers.py, native.py (bounded native calls), onnx_session.py (every
ONNX backend's sessions), image_inputs.py (the pictures a job starts from) and fake.py (the test
and demo backend). Heavy libraries are imported inside the backends, so this table names classes
by import path and `backend_class` imports one on first use."""

from __future__ import annotations

import importlib

from studio.core.errors import SpecError
from studio.core.kinds import ModelFormat, Runtime
from studio.engine.backends.base import BackendClass

# (model format, runtime) -> "module:Class". The enums are strings: plain ones look them up too.
BACKENDS: dict[tuple[str, str], str] = {
    (ModelFormat.DIFFUSERS, Runtime.TORCH): "studio.engine.backends.diffusion.diffusers_image:DiffusersImageBackend",
    (
        ModelFormat.SD_SINGLE_FILE,
        Runtime.TORCH,
    ): "studio.engine.backends.diffusion.diffusers_image:DiffusersImageBackend",
    (ModelFormat.ONNX_DIFFUSION, Runtime.ONNX): "studio.engine.backends.diffusion.onnx_diffusion:OnnxDiffusionBackend",
    (ModelFormat.TRANSFORMERS, Runtime.TORCH): "studio.engine.backends.text.transformers_text:TransformersTextBackend",
    (ModelFormat.ONNX_TEXT, Runtime.ONNX): "studio.engine.backends.text.onnx_text:OnnxTextBackend",
    (ModelFormat.GGUF, Runtime.LLAMA_CPP): "studio.engine.backends.text.llama_cpp_text:LlamaCppTextBackend",
    (ModelFormat.STUDIO_LATENT, Runtime.TORCH): "studio.engine.backends.latent.torch_latent:TorchLatentBackend",
    (ModelFormat.STUDIO_LATENT, Runtime.ONNX): "studio.engine.backends.latent.onnx_latent:OnnxLatentBackend",
    (ModelFormat.ONNX, Runtime.ONNX): "studio.engine.backends.latent.onnx_latent:OnnxLatentBackend",
    (ModelFormat.ONNX_LATENT, Runtime.ONNX): "studio.engine.backends.latent.onnx_latent:OnnxLatentBackend",
    (ModelFormat.FAKE, Runtime.TORCH): "studio.engine.backends.fake:FakeBackend",
}


def backend_class(fmt: str, runtime: str) -> BackendClass:
    """The class that loads a model of format `fmt` on `runtime`; SpecError naming `runtime` when
    that runtime cannot run such a model."""
    target = BACKENDS.get((fmt, runtime))
    if target is None:
        runtimes = sorted(r for f, r in BACKENDS if f == fmt)
        raise SpecError("runtime", f"{str(runtime)!r} cannot run a {fmt} model; use {' or '.join(runtimes)}.")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
