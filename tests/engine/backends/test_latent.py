"""Our own latent decoders on torch and ONNX Runtime, through the real runner and registry."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from studio.bench.tiny_latent import build_tiny_latent
from studio.core.errors import ModelFileError, SpecError
from studio.core.events import Failed, Finished
from studio.core.jobs import LatentDecodeJob
from studio.engine.backends import onnx_session
from studio.engine.backends.helpers import to_uint8_image
from studio.engine.backends.latent.onnx_latent import OnnxLatentBackend
from studio.engine.backends.latent.torch_latent import TorchLatentBackend
from studio.engine.backends.onnx_session import providers_for
from studio.engine.queue import JobQueue
from studio.engine.runner import Runner
from studio.models.registry import ModelRegistry

LATENT_DIM, IMAGE_SIZE = 16, 32


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One tiny decoder (torch weights + ONNX export), built once and copied by tests that break it."""
    return build_tiny_latent(tmp_path_factory.mktemp("built") / "tiny", LATENT_DIM, IMAGE_SIZE, seed=0)


@pytest.fixture
def models(tmp_path, built):
    root = tmp_path / "models"
    shutil.copytree(built, root / "tiny")
    return root


def one_sentence(message):
    return "\n" not in message and message.endswith(".") and "Traceback" not in message


def run(models, latent, runtime="torch", model="tiny", device="auto"):
    runner = Runner(ModelRegistry(roots=[(models, "user")]))
    job = JobQueue().make_job(LatentDecodeJob(model=model, latent=tuple(latent), runtime=runtime, device=device))
    events = []
    runner.run(job, events.append)
    return events[-1], runner


def latent(seed):
    return np.random.default_rng(seed).standard_normal(LATENT_DIM).astype(np.float32).tolist()


def test_torch_decode_gives_an_image_and_different_latents_differ(models):
    first, _ = run(models, latent(1))
    second, _ = run(models, latent(2))
    assert isinstance(first, Finished), first
    image = first.result.images[0]
    assert image.dtype == np.uint8 and image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert not np.array_equal(image, second.result.images[0])
    again, _ = run(models, latent(1))
    assert np.array_equal(image, again.result.images[0])  # same latent, same pixels


def test_onnx_matches_torch_within_1e_4(models):
    model = ModelRegistry(roots=[(models, "user")]).resolve("tiny")
    assert model.runtimes == ("torch", "onnx")
    torch_backend = TorchLatentBackend.load(model, "cpu", "float32")
    onnx_backend = OnnxLatentBackend.load(model, "cpu", "float32")
    assert (onnx_backend.latent_dim, onnx_backend.image_size) == (LATENT_DIM, IMAGE_SIZE)
    batch = np.random.default_rng(7).standard_normal((6, LATENT_DIM)).astype(np.float32)
    expected, got = torch_backend.decode_float(batch), onnx_backend.decode_float(batch)
    assert got.shape == expected.shape == (6, IMAGE_SIZE, IMAGE_SIZE, 3) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4
    assert np.array_equal(onnx_backend.decode(batch), to_uint8_image(got))

    finished, runner = run(models, batch[0].tolist(), runtime="onnx", device="cpu")
    assert isinstance(finished, Finished), finished
    assert np.abs(finished.result.images[0].astype(int) - torch_backend.decode(batch[:1])[0]).max() <= 1


def test_onnx_reports_the_provider_and_cpu_requests_only_cpu(models, monkeypatch):
    import onnxruntime

    requested = []
    real_session = onnxruntime.InferenceSession

    def spy(*args, **kwargs):
        requested.append(kwargs.get("providers"))
        return real_session(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    finished, runner = run(models, latent(3), runtime="onnx", device="cpu")
    assert isinstance(finished, Finished), finished
    assert requested == [["CPUExecutionProvider"]]
    (backend,) = [runner.cache.get(key, None) for key in runner.cache.keys()]
    assert backend.provider == "CPUExecutionProvider" and backend.info.provider == "CPU"

    assert providers_for("cpu") == ["CPUExecutionProvider"]
    cuda = providers_for("cuda")
    assert cuda[-1] == "CPUExecutionProvider"
    available = onnxruntime.get_available_providers()
    # TensorRT first (when its library is installed), then CUDA, then the CPU: those this build has.
    order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    usable = [p for p in order if p in available and (p != order[0] or onnx_session.tensorrt_installed())]
    assert cuda == usable


def test_tensorrt_is_asked_for_first_when_installed_with_its_engines_cached(monkeypatch, sandbox_dirs):
    monkeypatch.setattr(
        onnx_session,
        "available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(onnx_session, "tensorrt_installed", lambda: True)
    assert providers_for("cuda") == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    (trt, options), cuda, cpu = onnx_session.provider_options(providers_for("cuda"))
    assert trt == "TensorrtExecutionProvider" and options["trt_engine_cache_enable"] is True
    assert Path(options["trt_engine_cache_path"]).is_dir() and (cuda, cpu) == (
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    )
    # Without TensorRT's library its provider is left out: a failing one makes ORT print a banner to stdout.
    monkeypatch.setattr(onnx_session, "tensorrt_installed", lambda: False)
    assert providers_for("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_session.provider_options(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_auto_device_is_cpu_without_a_working_gpu(monkeypatch):
    monkeypatch.setattr(onnx_session, "cuda_works", lambda: False)
    assert OnnxLatentBackend.choose_device("auto") == ("cpu", "float32")
    monkeypatch.setattr(onnx_session, "cuda_works", lambda: True)
    assert OnnxLatentBackend.choose_device("auto") == ("cuda", "float32")
    assert OnnxLatentBackend.choose_device("cpu") == ("cpu", "float32")


def test_a_gpu_request_that_lands_on_the_cpu_is_a_sentence_not_a_silent_fallback(models, monkeypatch):
    """ONNX Runtime falls back to the CPU silently when CUDA cannot start; the studio refuses."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider to fail")  # onnxruntime-gpu is the one we install
    monkeypatch.setattr(onnx_session, "providers_for", lambda device: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    model = ModelRegistry(roots=[(models, "user")]).resolve("tiny")
    try:
        backend = OnnxLatentBackend.load(model, "cuda", "float32")
    except SpecError as error:  # no GPU here: the session landed on the CPU
        assert error.field == "device"
        assert error.message.startswith(
            "`device` is cuda, but ONNX Runtime could not start a GPU provider for decoder.onnx"
        )
        assert "got CPU" in error.message
    else:  # a machine with a working GPU
        assert backend.provider == "CUDAExecutionProvider"


def test_cuda_on_an_onnxruntime_without_gpu_providers_says_what_to_install(monkeypatch):
    monkeypatch.setattr(onnx_session, "available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(SpecError) as info:
        OnnxLatentBackend.choose_device("cuda")
    assert info.value.field == "device" and "install onnxruntime-gpu" in info.value.message


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_wrong_latent_length_is_bad_input_naming_latent(models, runtime):
    failed, _ = run(models, latent(1)[:5], runtime=runtime)
    assert isinstance(failed, Failed) and failed.kind == "bad input"
    assert "`latent`" in failed.message and str(LATENT_DIM) in failed.message


def test_truncated_weights_is_one_model_file_sentence(models):
    weights = models / "tiny" / "decoder.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    failed, _ = run(models, latent(1))
    assert isinstance(failed, Failed) and failed.kind == "model file"
    assert "decoder.safetensors is incomplete" in failed.message and one_sentence(failed.message)


def test_weights_of_another_architecture_are_named(models, tmp_path):
    other = build_tiny_latent(tmp_path / "other", latent_dim=8, image_size=IMAGE_SIZE, onnx=False)
    shutil.copy(other / "decoder.safetensors", models / "tiny" / "decoder.safetensors")
    failed, _ = run(models, latent(1))
    assert isinstance(failed, Failed) and failed.kind == "model file"
    assert "does not match the architecture in studio.json" in failed.message and "project.weight" in failed.message
    assert one_sentence(failed.message)


def test_weights_outside_the_folder_are_refused(models):
    manifest_path = models / "tiny" / "studio.json"
    manifest = json.loads(manifest_path.read_text())
    shutil.copy(models / "tiny" / "decoder.safetensors", models / "outside.safetensors")
    manifest["weights"] = "../outside.safetensors"
    manifest_path.write_text(json.dumps(manifest))
    failed, _ = run(models, latent(1))
    assert isinstance(failed, Failed) and failed.kind == "model file" and "outside the model folder" in failed.message


@pytest.mark.parametrize("location", ["../outside.bin", "/tmp/outside.bin"])
def test_onnx_external_data_outside_the_folder_is_refused(models, location):
    import onnx

    path = models / "tiny" / "decoder.onnx"
    graph = onnx.load(str(path))
    tensor = graph.graph.initializer[0]
    (models / "outside.bin").write_bytes(tensor.raw_data)  # present, so only the location is wrong
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(tensor.raw_data)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.ClearField("raw_data")
    path.write_bytes(graph.SerializeToString())

    model = ModelRegistry(roots=[(models, "user")]).resolve("tiny")
    with pytest.raises(ModelFileError, match="outside its folder") as info:
        OnnxLatentBackend.load(model, "cpu", "float32")
    assert one_sentence(info.value.message)
    failed, _ = run(models, latent(1), runtime="onnx")
    assert isinstance(failed, Failed) and failed.kind == "model file"


def test_bare_onnx_file_decodes_and_a_truncated_one_is_a_model_file_error(models):
    data = (models / "tiny" / "decoder.onnx").read_bytes()
    (models / "bare.onnx").write_bytes(data)
    finished, _ = run(models, latent(1), runtime="onnx", model="bare")
    assert isinstance(finished, Finished), finished
    assert finished.result.images[0].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)

    import onnx

    graph = onnx.load_from_string(data)  # an export without static image dims: the size is probed
    for dim in graph.graph.output[0].type.tensor_type.shape.dim[1:]:
        dim.dim_param = "unknown"
    (models / "bare.onnx").write_bytes(graph.SerializeToString())
    model = ModelRegistry(roots=[(models, "user")]).resolve("bare")
    assert (model.format, model.runtimes) == ("onnx", ("onnx",))
    assert OnnxLatentBackend.load(model, "cpu", "float32").image_size == IMAGE_SIZE

    (models / "bare.onnx").write_bytes(data[: len(data) // 2])
    failed, _ = run(models, latent(1), runtime="onnx", model="bare")
    assert isinstance(failed, Failed) and failed.kind == "model file"
    assert "bare.onnx" in failed.message and one_sentence(failed.message)


# Hand-built ONNX graphs: sparse external data, and outputs of other channel counts.


def external(tensor, location, length):
    import onnx

    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.ClearField("int64_data")


def sparse_outside(part):
    """A 4-element sparse tensor with one value, its `part` ("values"/"indices") kept in ../outside.bin."""
    import onnx
    from onnx import helper

    values = helper.make_tensor("sparse_values", onnx.TensorProto.FLOAT, [1], [1.0])
    indices = helper.make_tensor("sparse_indices", onnx.TensorProto.INT64, [1], [2])
    external(values if part == "values" else indices, "../outside.bin", 8)
    return helper.make_sparse_tensor(values, indices, [4])


@pytest.mark.parametrize("part", ["values", "indices"])
@pytest.mark.parametrize("where", ["sparse_value", "sparse_tensors", "sparse_initializer", "subgraph"])
def test_onnx_sparse_external_data_outside_the_folder_is_refused(tmp_path, where, part):
    import onnx
    from onnx import helper

    out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])
    sparse = sparse_outside(part)
    nodes, sparse_init = [], []
    if where == "sparse_value":
        nodes.append(helper.make_node("Constant", [], ["y"], sparse_value=sparse))
    elif where == "sparse_tensors":
        node = helper.make_node("Identity", ["c"], ["y"])
        attr = node.attribute.add()
        attr.name, attr.type = "extra", onnx.AttributeProto.SPARSE_TENSORS
        attr.sparse_tensors.append(sparse)
        nodes += [helper.make_node("Constant", [], ["c"], value_floats=[0.0] * 4), node]
    elif where == "sparse_initializer":
        sparse_init.append(sparse)
        sparse.values.name = "y"
        nodes.append(helper.make_node("Identity", ["y"], ["z"]))
    else:  # a Constant with sparse data inside an If branch
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["b"], sparse_value=sparse)],
            "branch",
            [],
            [helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [4])],
        )
        nodes += [
            helper.make_node(
                "Constant", [], ["cond"], value=helper.make_tensor("t", onnx.TensorProto.BOOL, [], [True])
            ),
            helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
        ]
    graph = helper.make_graph(nodes, "g", [], [out], sparse_initializer=sparse_init)
    folder = tmp_path / "models" / "sparse"
    folder.mkdir(parents=True)
    (tmp_path / "models" / "outside.bin").write_bytes(b"\0" * 8)  # present: only the location is wrong
    path = folder / "decoder.onnx"
    path.write_bytes(
        helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )

    with pytest.raises(ModelFileError, match="outside its folder") as info:
        onnx_session.check_external_data(path)
    assert one_sentence(info.value.message) and "../outside.bin" in info.value.message


def write_image_decoder(path, channels, layout="NCHW", static=True, latent_dim=4, size=8):
    """latent (N, latent_dim) -> sigmoid(latent @ W) reshaped to an image batch; returns W."""
    import onnx
    from onnx import helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((latent_dim, channels * size * size)).astype(np.float32)
    shape = [-1, channels, size, size] if layout == "NCHW" else [-1, size, size, channels]
    nodes = [
        helper.make_node("MatMul", ["latent", "W"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape"], ["raw"]),
        helper.make_node("Sigmoid", ["raw"], ["image"]),
    ]
    out_shape = ["N", *shape[1:]] if static else ["N", "a", "b", "c"]
    graph = helper.make_graph(
        nodes,
        "decoder",
        [helper.make_tensor_value_info("latent", onnx.TensorProto.FLOAT, ["N", latent_dim])],
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array(shape, np.int64), "shape")],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return weight


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("static", [True, False])
def test_a_grayscale_onnx_decoder_is_shown_as_rgb(tmp_path, layout, static):
    weight = write_image_decoder(tmp_path / "models" / "gray.onnx", channels=1, layout=layout, static=static)
    model = ModelRegistry(roots=[(tmp_path / "models", "user")]).resolve("gray")
    backend = OnnxLatentBackend.load(model, "cpu", "float32")
    assert (backend.latent_dim, backend.image_size, backend.layout) == (4, 8, layout)
    batch = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    images = backend.decode_float(batch)
    assert images.shape == (2, 8, 8, 3) and images.dtype == np.float32
    expected = (1 / (1 + np.exp(-(batch @ weight)))).reshape(2, 8, 8)
    for c in range(3):
        assert np.allclose(images[..., c], expected, atol=1e-5)
    decoded = backend.decode(batch)
    assert decoded.shape == (2, 8, 8, 3) and decoded.dtype == np.uint8


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("static", [True, False])
def test_an_onnx_decoder_with_two_channels_is_refused_at_load(tmp_path, layout, static):
    write_image_decoder(tmp_path / "models" / "two.onnx", channels=2, layout=layout, static=static)
    model = ModelRegistry(roots=[(tmp_path / "models", "user")]).resolve("two")
    with pytest.raises(ModelFileError) as info:
        OnnxLatentBackend.load(model, "cpu", "float32")
    message = info.value.message
    assert message.startswith("two.onnx gives images of shape ") and "neither 1 (grayscale) nor 3 (RGB)" in message
    assert one_sentence(message)
    failed, _ = run(tmp_path / "models", [0.0] * 4, runtime="onnx", model="two")
    assert isinstance(failed, Failed) and failed.kind == "model file"


def test_auto_stays_on_the_cpu_when_torch_sees_a_gpu_but_onnx_runtime_cannot_start_on_it(monkeypatch):
    import torch

    monkeypatch.setattr(onnx_session, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(onnx_session, "probe_provider", lambda device: "CPUExecutionProvider")  # CUDA libs broken
    onnx_session.cuda_works.cache_clear()
    try:
        assert OnnxLatentBackend.choose_device("auto") == ("cpu", "float32")
        with pytest.raises(SpecError):  # asked for by name, it is a sentence rather than the CPU
            OnnxLatentBackend.choose_device("cuda")
        monkeypatch.setattr(onnx_session, "probe_provider", lambda device: "CUDAExecutionProvider")
        onnx_session.cuda_works.cache_clear()
        assert OnnxLatentBackend.choose_device("auto") == ("cuda", "float32")
    finally:
        onnx_session.cuda_works.cache_clear()


def test_onnx_external_data_in_a_local_functions_body_is_refused_too(tmp_path):
    """A model-local function's Constant pointing at ../outside.bin: older ONNX Runtimes would read it."""
    import onnx
    from onnx import helper

    constant = helper.make_tensor("w", onnx.TensorProto.FLOAT, [2], [1.0, 2.0])
    external(constant, "../outside.bin", 8)
    function = helper.make_function(
        "studio.test",
        "Leak",
        [],
        ["out"],
        [helper.make_node("Constant", [], ["out"], value=constant)],
        [helper.make_opsetid("", 17)],
    )
    graph = helper.make_graph(
        [helper.make_node("Leak", [], ["y"], domain="studio.test")],
        "g",
        [],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph,
        ir_version=10,
        functions=[function],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("studio.test", 1)],
    )
    folder = tmp_path / "models" / "leak"
    folder.mkdir(parents=True)
    (tmp_path / "models" / "outside.bin").write_bytes(b"\0" * 8)
    path = folder / "decoder.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelFileError, match="keeps tensor 'w' in '../outside.bin', outside its folder"):
        onnx_session.check_external_data(path)
