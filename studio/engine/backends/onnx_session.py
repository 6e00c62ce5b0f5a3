"""ONNX Runtime sessions for every ONNX backend (latent decoders, diffusion pipelines, language
models): which execution providers to ask for, opening a session safely, and saying which
provider really runs it.

Providers are asked for in the order TensorRT -> CUDA -> CPU on a GPU, CPU alone otherwise. ONNX
Runtime falls back silently when a provider cannot start (its libraries missing, no GPU); here a
job that asked for the GPU and would land on the CPU is refused with a sentence instead, and the
provider actually used is reported in every result (`info.provider`), in the status bar and
in `studio models`. onnxruntime is imported inside the functions, so importing this stays cheap."""

from __future__ import annotations

import functools
import itertools
import logging
import re
from pathlib import Path
from typing import Any, Iterator

from studio.core.errors import ModelFileError, SpecError, StudioError, first_line, shown
from studio.core.events import RunInfo
from studio.core.kinds import Device, Runtime
from studio.engine.backends import native
from studio.engine.backends.helpers import no_cuda
from studio.models.paths import offline

log = logging.getLogger(__name__)

# ONNX Runtime's telemetry is switched off by a variable its native library reads when it loads,
# which is inside this module's functions: set before any of them can run, whoever imported this.
offline()

# The longest one session.run may take. The slowest honest run is a 4096 px VAE decode or a long
# prefill on a CPU (minutes); a graph that loops without end (a Loop with a huge trip count) is
# stopped here instead of holding the engine forever.
RUN_LIMIT_S = 900.0

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
SHORT_NAMES = {TENSORRT: "TensorRT", CUDA: "CUDA", CPU: "CPU"}


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


# The TensorRT libraries the TensorRT provider loads (10.x, 8.x; Linux and Windows names).
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.8", "nvinfer_10.dll", "nvinfer.dll")


@functools.lru_cache(maxsize=1)
def tensorrt_installed() -> bool:
    """Whether TensorRT's runtime library loads. onnxruntime-gpu lists its TensorRT provider
    whether or not TensorRT is installed, and a provider that fails to start makes ORT print an
    error banner to stdout and build the session twice; so it is asked for only when it can start."""
    import ctypes

    for name in TENSORRT_LIBRARIES:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def providers_for(device: str) -> list[str]:
    """The execution providers to ask for, in order, for a device ("cpu" or "cuda"): those of
    TensorRT -> CUDA -> CPU that this onnxruntime build has (TensorRT only when installed; the
    CPU always)."""
    wanted = [TENSORRT, CUDA, CPU] if device == Device.CUDA else [CPU]
    available = available_providers()
    found = [p for p in wanted if p in available and (p != TENSORRT or tensorrt_installed())]
    return found or [CPU]


def provider_options(providers: list[str]) -> list[Any]:
    """The providers with their options: TensorRT keeps the engines it builds in the studio's
    cache folder, so a model is compiled once per shape, not at every load."""
    from studio.models.paths import cache_dir

    if TENSORRT not in providers:
        return list(providers)
    cache = cache_dir() / "tensorrt"
    cache.mkdir(parents=True, exist_ok=True)
    options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
    return [(p, options) if p == TENSORRT else p for p in providers]


@functools.lru_cache(maxsize=1)
def cuda_works() -> bool:
    """Whether ONNX Runtime can really run on a CUDA GPU: onnxruntime-gpu lists its CUDA provider
    even on a machine without one, and a GPU torch sees may still fail ORT's CUDA libraries. So
    torch is asked first (imported lazily; no torch means no auto-CUDA), then a one-node graph is
    opened on the GPU providers."""
    if CUDA not in available_providers():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available()) and probe_provider(Device.CUDA) in GPU_PROVIDERS


def choose_device(requested: str) -> tuple[Device, str]:
    """(device, dtype) for an ONNX backend: CUDA when asked for (a sentence naming `device` when
    there is none) or when auto finds one, else the CPU; exports are float32 throughout."""
    if requested == Device.CUDA:
        if CUDA not in available_providers():
            raise SpecError(
                "device",
                "is cuda, but the installed ONNX Runtime has no GPU provider; install "
                "onnxruntime-gpu, or choose cpu or auto.",
            )
        if not cuda_works():
            raise no_cuda()
        return Device.CUDA, "float32"
    if requested == Device.AUTO and cuda_works():
        return Device.CUDA, "float32"
    return Device.CPU, "float32"


def short_name(provider: str) -> str:
    """ "CPU", "CUDA", "TensorRT" (other providers by their own name, less the suffix)."""
    return SHORT_NAMES.get(provider, provider.replace("ExecutionProvider", ""))


def ort_message(exc: BaseException) -> str:
    """The first line of an ONNX Runtime error, without its "[ONNXRuntimeError] : 7 : FAIL :" code."""
    return re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", first_line(exc)).rstrip(". ")


# ---------------------------------------------------------------------------------------------
# External data: an ONNX file may keep its tensors in other files; they must stay in its folder.


def _sparse(sparse: Any) -> Iterator[Any]:
    """The two TensorProtos a SparseTensorProto is made of."""
    yield sparse.values
    yield sparse.indices


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto in a graph and its subgraphs (If / Loop / Scan bodies): initializers,
    sparse initializers, and node attributes (tensor, tensors, sparse_tensor, sparse_tensors), any
    of which may keep its data in an external file."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from _sparse(sparse)
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Any) -> Iterator[Any]:
    """The TensorProtos in nodes' attributes, their subgraphs' included."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from _sparse(attr.sparse_tensor)
            for sparse in attr.sparse_tensors:
                yield from _sparse(sparse)
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def check_external_data(path: Path, label: str = "") -> set[Path]:
    """The external-data files an ONNX file uses, all inside its folder; ModelFileError if any
    points outside (or the file cannot be parsed). Loads the graph without its external data, so
    nothing outside the folder is ever opened. `label` names the file in sentences."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise ModelFileError(
            f"{label or path.name} is not a valid ONNX model ({ort_message(exc)}): copy it again."
        ) from None
    root = path.parent.resolve()
    files: set[Path] = set()
    # The graph, and the bodies of the model's local functions (a Constant in one may point anywhere).
    everything = itertools.chain(_tensors(model.graph), *(_node_tensors(f.node) for f in model.functions))
    for tensor in everything:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        if "\0" in location:  # no file name holds one; the path functions would raise a bare ValueError
            raise ModelFileError(
                f"{label or path.name} keeps tensor {tensor.name!r} in {shown(location)}, a file "
                "name with a NUL character in it, so it is refused."
            )
        target = (root / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(root) or target == root:
            raise ModelFileError(
                f"{label or path.name} keeps tensor {tensor.name!r} in {location!r}, outside its folder, so it is refused."
            )
        files.add(target)
    return files


def file_bytes(path: Path, external: set[Path]) -> int:
    """An ONNX file's size with its external data: what the model cache budgets for it."""
    return path.stat().st_size + sum(p.stat().st_size for p in external if p.is_file())


# ---------------------------------------------------------------------------------------------
# Sessions


def open_session(path: Path, device: str, label: str = "") -> tuple[Any, int]:
    """An InferenceSession for the ONNX file at `path` on `device` ("cpu" or "cuda"), and the bytes
    it takes (file plus external data). `label` names the file in sentences (default: its name).

    External data must stay in the file's folder (checked before ORT opens anything). A file ORT
    cannot load is a ModelFileError sentence; on "cuda", a session that would land on the CPU is a
    SpecError sentence naming `device`, never a silent fallback."""
    import onnxruntime

    label = label or path.name
    external = check_external_data(path, label)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: our own log says which provider was used
    requested = providers_for(device)
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=provider_options(requested))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind types (InvalidProtobuf, Fail...)
        raise ModelFileError(
            f"{label} could not be loaded by ONNX Runtime ({ort_message(exc)}); check the file and copy it again."
        ) from None
    used = session.get_providers()[0]
    if device == Device.CUDA and used not in GPU_PROVIDERS:
        raise SpecError(
            "device",
            f"is cuda, but ONNX Runtime could not start a GPU provider for {label} "
            f"(it asked for {', '.join(map(short_name, requested))} and got {short_name(used)}); "
            "check the CUDA libraries, or choose cpu.",
        )
    if used != requested[0]:
        log.warning(
            "ONNX Runtime could not use %s for %s; it runs on %s.", short_name(requested[0]), label, short_name(used)
        )
    else:
        log.info("%s runs on %s", label, short_name(used))
    return session, file_bytes(path, external)


def run(session: Any, output_names: Any, feeds: dict[str, Any], label: str) -> list[Any]:
    """session.run(output_names, feeds) as every ONNX backend makes it: stopped by the running
    job's Stop (and Ctrl-C in the CLI), which raises JobCancelled, and after RUN_LIMIT_S, which is
    a sentence naming `label`. ONNX Runtime checks RunOptions.terminate between the graph's nodes
    (and a Loop's iterations), so a stopped run ends within one node."""
    import onnxruntime

    options = onnxruntime.RunOptions()
    options.log_severity_level = 4  # a terminated run is our doing: no error banner on stderr

    def stop() -> None:
        options.terminate = True

    try:
        return native.call_stoppable(lambda: session.run(output_names, feeds, options), RUN_LIMIT_S, stop)
    except native.TimeLimit:
        raise StudioError(
            f"{label} ran longer than {RUN_LIMIT_S:g} s in one step, so it was stopped; "
            "the model may loop without end (check it), or the step is too large for this "
            "machine (try a smaller size)."
        ) from None


def session_provider(session: Any) -> str:
    """The provider that runs a session (the first of those it kept)."""
    return session.get_providers()[0]


@functools.lru_cache(maxsize=4)
def probe_provider(device: str) -> str:
    """The provider ONNX Runtime really starts on this machine for `device` ("cpu" or "cuda"),
    found by opening a one-node graph with the same request as a model would: `studio models`
    reports it without loading any model. Never raises: the CPU when even that fails."""
    try:
        import onnxruntime
        from onnx import TensorProto, helper

        node = helper.make_node("Identity", ["x"], ["y"])
        graph = helper.make_graph(
            [node],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 10)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=provider_options(providers_for(device))
        )
        return session_provider(session)
    except Exception:  # noqa: BLE001 - a report, not a job: the CPU is what would run
        log.exception("probing ONNX Runtime's providers failed")
        return CPU


def info_for(device: str, provider: str) -> RunInfo:
    """What every ONNX result says about where it ran."""
    return RunInfo(runtime=Runtime.ONNX, device=device, provider=short_name(provider), dtype="float32")
