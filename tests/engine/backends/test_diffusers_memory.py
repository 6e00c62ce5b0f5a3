"""Out of memory in a real (tiny, random) Stable Diffusion pipeline: the VAE decode runs out, the
job runs again with VAE tiling and slicing and attention slicing, and says so."""

import numpy as np
import pytest
import torch

from studio.bench.tiny_models import build_tiny_diffusers
from studio.core.events import Failed, Finished
from studio.core.jobs import ImageJob
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import run


@pytest.fixture
def runner(tmp_path):
    build_tiny_diffusers(tmp_path / "tiny-sd")
    return Runner(ModelRegistry([(tmp_path, "user")]), previews=False)


def spec(**kw):
    return ImageJob(**{**dict(model="tiny-sd", prompt="a red cat", steps=2, width=64, height=64, seed=1), **kw})


def starve_the_vae(backend, monkeypatch, always=False):
    """The VAE decode runs out of memory unless it is tiled, as a large image would on a small GPU."""
    vae = backend.pipe.vae
    decode = vae.decode

    def short_of_memory(*args, **kwargs):
        if always or not vae.use_tiling:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return decode(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", short_of_memory)


def test_a_vae_that_runs_out_of_memory_decodes_again_tiled_with_the_same_picture(runner, monkeypatch):
    reference = run(runner, spec())[-1].result.images[0]
    backend = runner.backend_for(spec())[0]
    starve_the_vae(backend, monkeypatch)
    end = run(runner, spec())[-1]
    assert isinstance(end, Finished), end
    assert end.result.info.degraded == (
        "Ran out of memory, so it ran again with VAE tiling, VAE slicing, attention slicing; that can be slower."
    )
    assert end.result.info.memory_saving == "VAE tiling, VAE slicing, attention slicing"
    # A picture smaller than one tile is decoded whole, and sliced attention computes the same sums.
    assert np.abs(end.result.images[0].astype(int) - reference.astype(int)).max() <= 2


def test_a_vae_that_runs_out_even_tiled_is_a_sentence_and_the_model_still_works(runner, monkeypatch):
    backend = runner.backend_for(spec())[0]
    starve_the_vae(backend, monkeypatch, always=True)
    end = run(runner, spec())[-1]
    assert isinstance(end, Failed) and end.kind == "out of memory"
    assert end.message.startswith("Out of memory even with VAE tiling, VAE slicing, attention slicing.")
    monkeypatch.undo()
    assert isinstance(run(runner, spec())[-1], Finished)
