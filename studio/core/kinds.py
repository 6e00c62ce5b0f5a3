"""What a model is and where it runs, as enums: its kind, its format on disk, the runtime that
runs it and the device it runs on.

They are `enum.StrEnum`s: each member is the very string used before them (`Runtime.ONNX ==
"onnx"`, with the same hash), so a member compares equal to today's strings, is a dict key for
them, prints as its value in messages and f-strings, and is written as that string in JSON. A
value read from a file or a command line becomes a member with `Runtime(text)` (ValueError when
it is none)."""

from __future__ import annotations

import enum


class ModelKind(enum.StrEnum):
    """What a model makes, and so which workspace offers it and which jobs it runs."""

    IMAGE = "image"
    TEXT = "text"
    LATENT = "latent"
    LORA = "lora"  # LoRA files: listed, never run as a model


class ModelFormat(enum.StrEnum):
    """How a model lies on disk, as recognised by studio.models.formats."""

    DIFFUSERS = "diffusers"  # a diffusers pipeline folder (model_index.json)
    SD_SINGLE_FILE = "sd-single-file"  # one Stable Diffusion .safetensors checkpoint
    LORA = "lora"  # one LoRA .safetensors file
    TRANSFORMERS = "transformers"  # a transformers causal language model folder
    STUDIO_LATENT = "studio-latent"  # our own latent models (studio.json)
    FAKE = "fake"  # the deliberately slow test and demo backend (studio.json)
    # On ONNX Runtime: one bare .onnx generator, and the studio's (or Optimum's) exports.
    ONNX = "onnx"
    ONNX_LATENT = "onnx-latent"
    ONNX_DIFFUSION = "onnx-diffusion"
    ONNX_TEXT = "onnx-text"
    GGUF = "gguf"  # a llama.cpp language model: one .gguf file (or a folder holding one)


ONNX_FORMATS = frozenset({ModelFormat.ONNX, ModelFormat.ONNX_LATENT, ModelFormat.ONNX_DIFFUSION, ModelFormat.ONNX_TEXT})


class Runtime(enum.StrEnum):
    """The library that runs a model. A job may ask for AUTO: the model's own (its first)."""

    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"
    LLAMA_CPP = "llama.cpp"  # GGUF language models (llama-cpp-python)


class Device(enum.StrEnum):
    """Where a model runs. A job may ask for AUTO: CUDA when a usable GPU is there, else the CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
