"""Exporting our latent decoders to ONNX, and the tiny latent model builder."""

import json
import subprocess
import sys

import numpy as np
import pytest

from studio.bench.tiny_latent import build_tiny_latent
from studio.core.errors import ModelFileError, StudioError
from studio.engine.export.graph import MAX_IR_VERSION
from studio.engine.export.latent import export_decoder_onnx
from studio.models.registry import ModelRegistry


@pytest.fixture(scope="module")
def torch_only(tmp_path_factory):
    return build_tiny_latent(tmp_path_factory.mktemp("export") / "tiny", latent_dim=8, image_size=16, onnx=False)


def test_builder_writes_a_manifest_the_registry_reads(tmp_path, torch_only):
    manifest = json.loads((torch_only / "studio.json").read_text())
    assert manifest["format"] == "studio-latent" and manifest["kind"] == "latent"
    assert manifest["title"] == "Tiny latent decoder"
    assert (manifest["latent_dim"], manifest["image_size"]) == (8, 16)
    assert manifest["weights"] == "decoder.safetensors" and "onnx" not in manifest
    assert isinstance(manifest["decoder"], dict)

    with_onnx = build_tiny_latent(tmp_path / "models" / "tiny")
    assert json.loads((with_onnx / "studio.json").read_text())["onnx"] == "decoder.onnx"
    model = ModelRegistry(roots=[(tmp_path / "models", "user")]).resolve("tiny")
    assert model.kind == "latent" and model.runtimes == ("torch", "onnx") and model.title == "Tiny latent decoder"
    assert sorted(p.name for p in with_onnx.iterdir()) == ["decoder.onnx", "decoder.safetensors", "studio.json"]


def test_builder_is_deterministic_per_seed(tmp_path, torch_only):
    same = build_tiny_latent(tmp_path / "same", latent_dim=8, image_size=16, onnx=False)
    other = build_tiny_latent(tmp_path / "other", latent_dim=8, image_size=16, seed=1, onnx=False)
    weights = (torch_only / "decoder.safetensors").read_bytes()
    assert (same / "decoder.safetensors").read_bytes() == weights
    assert (other / "decoder.safetensors").read_bytes() != weights


def test_export_has_named_dynamic_batch_io_and_a_readable_ir(tmp_path, torch_only):
    import onnx
    import onnxruntime

    out = export_decoder_onnx(torch_only, "exported.onnx")
    try:
        assert out == torch_only / "exported.onnx"
        model = onnx.load(str(out))
        onnx.checker.check_model(model)
        assert model.ir_version <= MAX_IR_VERSION
        (inp,), (output,) = model.graph.input, model.graph.output
        assert inp.name == "latent" and output.name == "image"
        in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        out_dims = [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim]
        assert isinstance(in_dims[0], str) and in_dims[1] == 8
        assert isinstance(out_dims[0], str) and out_dims[1:] == [3, 16, 16]

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        for batch in (1, 5):  # the batch axis really is dynamic
            image = session.run(None, {"latent": np.zeros((batch, 8), np.float32)})[0]
            assert image.shape == (batch, 3, 16, 16) and 0 <= image.min() and image.max() <= 1

        before = out.read_bytes()
        export_decoder_onnx(torch_only, "exported.onnx")  # over an existing file, atomically
        assert out.read_bytes() == before
        assert not [p.name for p in torch_only.iterdir() if p.name.endswith(".tmp")]
        assert "onnx" not in json.loads((torch_only / "studio.json").read_text())  # manifest untouched
    finally:
        out.unlink(missing_ok=True)


@pytest.mark.parametrize("name", ["../escape.onnx", "sub/decoder.onnx", "decoder.bin", ""])
def test_export_name_must_be_a_plain_onnx_file_name(torch_only, name):
    with pytest.raises(StudioError, match="plain file name"):
        export_decoder_onnx(torch_only, name)


def test_export_refuses_a_folder_that_is_not_studio_latent(tmp_path):
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "studio.json").write_text(json.dumps({"format": "fake", "kind": "latent"}))
    with pytest.raises(ModelFileError, match="studio-latent"):
        export_decoder_onnx(folder)


def test_builder_and_models_package_import_no_ml_library():
    code = (
        "import sys, studio.bench.tiny_latent, studio.models, studio.models.registry, studio.engine.backends; "
        "heavy = {'torch', 'onnx', 'onnxruntime', 'safetensors'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_graph_over_the_protobuf_limit_keeps_its_weights_in_one_file_beside_it(tmp_path, torch_only, monkeypatch):
    """Real SD UNets are 3.4 GB: the same path, with the limit lowered so a tiny decoder takes it."""
    import onnxruntime

    from studio.engine.backends.onnx_session import check_external_data
    from studio.engine.export import graph as export

    monkeypatch.setattr(export, "EXTERNAL_DATA_BYTES", 10_000)
    out = export_decoder_onnx(torch_only, "big.onnx")
    try:
        data = torch_only / "big.onnx_data"
        assert out.stat().st_size < 10_000 < data.stat().st_size  # the graph small, the weights beside it
        assert check_external_data(out) == {data.resolve()}
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        image = session.run(None, {"latent": np.ones((2, 8), np.float32)})[0]
        assert image.shape == (2, 3, 16, 16) and image.std() > 0
    finally:
        for name in ("big.onnx", "big.onnx_data"):
            (torch_only / name).unlink(missing_ok=True)
