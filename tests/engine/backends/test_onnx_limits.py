"""Every ONNX run ends: a graph that loops without end is stopped by the job's Stop, by Ctrl-C in
`studio`, or by the time limit, and the job ends with Cancelled or one sentence. And an ONNX file
whose external data names a path with a NUL in it is refused with a sentence."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from studio.core.errors import ModelFileError
from studio.core.events import Cancelled, Failed, Started
from studio.core.jobs import LatentDecodeJob
from studio.engine.backends import onnx_session
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

from run_jobs import run

LATENT_DIM, SIZE = 4, 8
ENDLESS = 10**12  # Loop iterations: never done in a test's lifetime


def write_generator(path, endless=True):
    """A 1 KB latent generator: latent @ W as an image batch, passed through a Loop that runs
    ENDLESS times (or not at all, when not `endless`). Its output shape is declared, so loading
    it runs nothing."""
    import onnx
    from onnx import helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((LATENT_DIM, 3 * SIZE * SIZE)).astype(np.float32)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", onnx.TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", onnx.TensorProto.FLOAT, None),
        ],
    )
    nodes = [
        helper.make_node("MatMul", ["latent", "W"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape"], ["raw"]),
        helper.make_node("Sigmoid", ["raw"], ["image0"]),
        helper.make_node("Loop", ["trips", "go", "image0"], ["image"], body=body),
    ]
    graph = helper.make_graph(
        nodes,
        "generator",
        [helper.make_tensor_value_info("latent", onnx.TensorProto.FLOAT, ["N", LATENT_DIM])],
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        initializer=[
            numpy_helper.from_array(weight, "W"),
            numpy_helper.from_array(np.array([-1, 3, SIZE, SIZE], np.int64), "shape"),
            numpy_helper.from_array(np.array(ENDLESS if endless else 0, np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "go"),
        ],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def endless(tmp_path):
    write_generator(tmp_path / "models" / "endless.onnx")
    write_generator(tmp_path / "models" / "quick.onnx", endless=False)
    return Runner(ModelRegistry(roots=[(tmp_path / "models", "user")]))


def decode_job(model="endless"):
    return LatentDecodeJob(model=model, latent=(0.5,) * LATENT_DIM, runtime="onnx", device="cpu")


def cancel_once_started(delay_s):
    """An on_event for run(): sets the job's cancel flag `delay_s` after it starts (the decode is
    running by then)."""

    def on_event(job, event):
        if isinstance(event, Started):
            threading.Timer(delay_s, job.cancel.set).start()

    return on_event


@pytest.mark.timeout(120, method="thread")
def test_an_endless_graph_is_stopped_at_the_time_limit_with_one_sentence(endless, monkeypatch):
    monkeypatch.setattr(onnx_session, "RUN_LIMIT_S", 0.5)
    failed = run(endless, decode_job())[-1]
    assert isinstance(failed, Failed) and failed.kind == "runtime", failed
    assert failed.message.startswith("endless.onnx ran longer than 0.5 s in one step, so it was stopped; ")
    assert "\n" not in failed.message and failed.message.endswith(".")
    assert "cannot be interrupted" not in failed.message  # ONNX Runtime did stop it


@pytest.mark.timeout(120, method="thread")
def test_stop_ends_an_endless_graph(endless):
    events = run(endless, decode_job(), on_event=cancel_once_started(0.3))
    assert isinstance(events[-1], Cancelled), events[-1]


@pytest.mark.timeout(120, method="thread")
def test_ctrl_c_in_studio_ends_an_endless_graph(endless):
    """`studio` runs jobs on its main thread, where Ctrl-C's handler runs only between bytecodes:
    the run must not hold that thread."""
    from studio.cli import run_job

    def interrupt(event):
        if isinstance(event, Started):
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    end = run_job(endless, decode_job(), interrupt)
    assert isinstance(end, Cancelled), end


@pytest.mark.timeout(120, method="thread")
def test_the_engine_serves_the_next_job_after_stopping_one(endless):
    assert isinstance(run(endless, decode_job(), on_event=cancel_once_started(0.2))[-1], Cancelled)
    finished = run(endless, decode_job("quick"))[-1]
    image = finished.result.images[0]
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8


def test_external_data_named_with_a_nul_is_refused_with_a_sentence(tmp_path):
    import onnx
    from onnx import helper

    constant = helper.make_tensor("w", onnx.TensorProto.FLOAT, [2], [1.0, 2.0])
    constant.ClearField("float_data")
    constant.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "weights\0.bin"), ("offset", "0"), ("length", "8")):
        entry = constant.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        initializer=[constant],
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(
        helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    with pytest.raises(ModelFileError) as info:
        onnx_session.check_external_data(path)
    message = info.value.message
    assert message.startswith("model.onnx keeps tensor 'w' in 'weights\\x00.bin', a file name with a NUL")
    assert message.endswith("so it is refused.") and "\n" not in message
