"""Helpers every backend shares: device choice, dtypes, latent checks, quieting library logs."""

import numpy as np
import pytest

from studio.core.errors import ErrorKind, SpecError
from studio.engine.backends import fake, helpers, onnx_session
from studio.engine.backends.latent import onnx_latent
from studio.engine.backends.latent import torch_latent as latent_torch


def test_cuda_without_a_gpu_is_bad_input_naming_device(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError) as info:
        helpers.torch_device("cuda")
    assert info.value.kind == ErrorKind.BAD_INPUT and info.value.field == "device"
    assert info.value.message == "`device` is cuda but no CUDA GPU is available; choose cpu or auto."
    assert helpers.torch_device("auto") == ("cpu", "float32")


def test_onnx_cuda_without_a_gpu_says_the_same(monkeypatch):
    monkeypatch.setattr(onnx_session, "cuda_works", lambda: False)
    with pytest.raises(SpecError) as info:
        onnx_latent.OnnxLatentBackend.choose_device("cuda")
    assert info.value.kind == ErrorKind.BAD_INPUT
    assert info.value.message == "`device` is cuda but no CUDA GPU is available; choose cpu or auto."


def test_torch_dtype_names():
    import torch

    assert helpers.torch_dtype("float16") is torch.float16
    assert helpers.torch_dtype("bfloat16") is torch.bfloat16
    assert helpers.torch_dtype("float32") is torch.float32


def test_check_latents_is_shared_and_names_latent():
    assert latent_torch.check_latents is helpers.check_latents is onnx_latent.check_latents
    assert helpers.check_latents(np.zeros(4), 4).shape == (1, 4)
    with pytest.raises(SpecError, match="`latent` has shape"):
        helpers.check_latents(np.zeros((2, 3)), 4)
    with pytest.raises(SpecError, match="finite"):
        helpers.check_latents(np.array([0.0, np.nan]), 2)


def test_fake_backend_uses_the_shared_uint8_conversion():
    backend = fake.FakeBackend("latent", step_seconds=0, latent_dim=3, image_size=8)
    image = backend.decode(np.zeros((2, 3), np.float32))
    assert image.dtype == np.uint8 and image.shape == (2, 8, 8, 3) and image.flags.c_contiguous
    assert not hasattr(fake, "_to_u8")
