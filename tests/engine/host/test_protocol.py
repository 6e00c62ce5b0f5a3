"""The window <-> engine process messages: typed, frozen, and whole after the trip through pickle."""

import dataclasses
import pickle

import numpy as np
import pytest

from studio.core.events import Finished, ImageResult, Progress, RunInfo
from studio.core.jobs import ImageJob
from studio.engine.host import protocol

MESSAGES = [
    protocol.Setup(("/opt/studio",), pickle.dumps({"recipe": 1})),
    protocol.Run(7, ImageJob(model="m", prompt="a cat", seed=3), batch=True),
    protocol.Nested(8, ImageJob(model="m", prompt="a dog")),
    protocol.NoNested(),
    protocol.Cancel(7),
    protocol.Poke(),
    protocol.Refresh(),
    protocol.Quit(),
    protocol.Ready(1234),
    protocol.Fatal("The engine could not start (RuntimeError: no runner today)."),
    protocol.EventMessage(Progress(7, 2, 10)),
    protocol.Want(),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_is_a_frozen_dataclass_that_survives_pickling(message):
    assert dataclasses.is_dataclass(message)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(message, "extra", 1)
    assert pickle.loads(pickle.dumps(message)) == message


def test_the_messages_cover_both_directions_of_the_protocol():
    assert {type(m) for m in MESSAGES} == set(protocol.ToEngine.__args__) | set(protocol.FromEngine.__args__)


def test_a_result_with_pixels_crosses_whole():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    sent = protocol.EventMessage(Finished(4, ImageResult((image,), RunInfo(seed=1))))
    received = pickle.loads(pickle.dumps(sent))
    assert isinstance(received.event, Finished) and received.event.job_id == 4
    assert np.array_equal(received.event.result.images[0], image)
