"""docs/DESIGN.md §4: no network at run time. Loading a model and generating with it, for images and for
text, must not even try to open a connection (no Hugging Face hub lookups, no telemetry)."""

import pytest

from studio.bench.tiny_models import build_tiny_diffusers, build_tiny_gpt2
from studio.core.events import Finished
from studio.core.jobs import ImageJob, TextJob
from studio.engine.queue import JobQueue
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline-models")
    build_tiny_diffusers(root / "tiny-sd")
    build_tiny_gpt2(root / "tiny-gpt2")
    return root


def test_loading_and_generating_never_touch_the_network(models, no_sockets):
    runner = Runner(ModelRegistry([(models, "user")]))  # fresh: the models load inside the guard
    image = runner.run(
        JobQueue().make_job(ImageJob(model="tiny-sd", prompt="a red cat", steps=2, width=64, height=64)), lambda e: None
    )
    text = runner.run(
        JobQueue().make_job(TextJob(model="tiny-gpt2", prompt="The river", max_new_tokens=8)), lambda e: None
    )
    assert isinstance(image, Finished), image
    assert isinstance(text, Finished), text
    assert no_sockets == []
