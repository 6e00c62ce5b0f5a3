"""Backends, one module per runtime x family. Their heavy imports live inside them, so this
table names classes by import path and `backend_class` imports one on first use."""

from __future__ import annotations

import importlib
from typing import Any

from studio.core.errors import SpecError

# (model format, runtime) -> "module:Class"
BACKENDS: dict[tuple[str, str], str] = {
    ("diffusers", "torch"): "studio.engine.backends.diffusers_image:DiffusersImageBackend",
    ("sd-single-file", "torch"): "studio.engine.backends.diffusers_image:DiffusersImageBackend",
    ("transformers", "torch"): "studio.engine.backends.transformers_text:TransformersTextBackend",
    ("studio-latent", "torch"): "studio.engine.backends.latent_torch:TorchLatentBackend",
    ("studio-latent", "onnx"): "studio.engine.backends.onnx_latent:OnnxLatentBackend",
    ("onnx", "onnx"): "studio.engine.backends.onnx_latent:OnnxLatentBackend",
    ("onnx-latent", "onnx"): "studio.engine.backends.onnx_latent:OnnxLatentBackend",
    ("onnx-diffusion", "onnx"): "studio.engine.backends.onnx_diffusion:OnnxDiffusionBackend",
    ("onnx-text", "onnx"): "studio.engine.backends.onnx_text:OnnxTextBackend",
    ("fake", "torch"): "studio.engine.backends.fake:FakeBackend",
}


def backend_class(fmt: str, runtime: str) -> Any:
    target = BACKENDS.get((fmt, runtime))
    if target is None:
        runtimes = sorted(r for f, r in BACKENDS if f == fmt)
        raise SpecError("runtime", f"{runtime!r} cannot run a {fmt} model; use {' or '.join(runtimes)}.")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
