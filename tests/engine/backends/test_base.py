"""The backend Protocols describe what the backends really implement: every class the runner can
load has the methods of each capability its kind of model needs (backends/base.py)."""

import importlib

import pytest

from studio.engine.backends import BACKENDS, base

# What a backend of each family must offer, beyond loading.
NEEDS = {
    "diffusion": (base.ImageBackend, base.MorphableImageBackend),
    "text": (base.TextBackend,),
    "latent": (base.LatentBackend, base.PictureEncoder, base.SavesMemory),
    "fake": (base.ImageBackend, base.TextBackend, base.LatentBackend, base.PictureEncoder, base.SavesMemory),
}


def methods(protocol):
    return sorted(name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_"))


def family(target):
    module = target.split(":")[0]
    return "fake" if module.endswith(".fake") else module.split(".")[3]


@pytest.mark.parametrize("target", sorted(set(BACKENDS.values())))
def test_every_backend_class_has_the_methods_its_family_needs(target):
    module, name = target.split(":")
    cls = getattr(importlib.import_module(module), name)
    for method in methods(base.BackendClass):
        assert callable(getattr(cls, method, None)), (name, method)
    for protocol in NEEDS[family(target)]:
        missing = [m for m in methods(protocol) if not callable(getattr(cls, m, None))]
        assert not missing, f"{name} lacks {missing} of {protocol.__name__}"


def test_the_fake_backend_is_every_capability_at_once():
    from studio.engine.backends.fake import FakeBackend

    backend = FakeBackend("image", step_seconds=0, latent_dim=3, image_size=8)
    for protocol in NEEDS["fake"]:
        assert isinstance(backend, protocol), protocol.__name__
    assert not isinstance(backend, base.MorphableImageBackend)  # fake image models cannot morph
