"""Exporting Stable Diffusion pipelines to ONNX in Optimum's folder layout: tiny random SD 1.x,
SDXL and 9-channel inpainting (v-prediction) pipelines, the files and graph IO Optimum's
ORTDiffusionPipeline reads, dynamic axes, the parity record, and the refusals."""

import json

import onnx
import pytest

from studio.bench.tiny_models import build_tiny_diffusers
from studio.engine.export.graph import MAX_IR_VERSION
from studio.engine.export.onnx_export import ExportRefused, export_onnx
from studio.models import formats
from studio.models.registry import ModelInfo, ModelRegistry

import fake_checkpoints as fc

PARTS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")


def export(root, name, say=lambda line: None):
    """Export the model `name` under `root` to `root/name-onnx`; its parity record."""
    return export_onnx(ModelRegistry([(root, "user")]).resolve(name), root / f"{name}-onnx", say=say)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-sd")
    build_tiny_diffusers(root / "tiny-sd")
    said = []
    parity = export(root, "tiny-sd", said.append)
    return root / "tiny-sd-onnx", parity, said


def io(path):
    """{name: (element type, dims)} of a graph's inputs and outputs; a dim is its name when dynamic."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return (
        {v.name: (v.type.tensor_type.elem_type, dims(v)) for v in graph.input},
        {v.name: (v.type.tensor_type.elem_type, dims(v)) for v in graph.output},
    )


FLOAT, INT32 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32


def test_export_writes_optimums_folder_and_the_studio_finds_it(sd):
    folder, parity, said = sd
    for part in PARTS:
        assert (folder / part / "model.onnx").is_file() and (folder / part / "config.json").is_file()
    assert (folder / "scheduler" / "scheduler_config.json").is_file()
    assert (folder / "tokenizer" / "vocab.json").is_file()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and "_name_or_path" not in index
    assert json.loads((folder / "studio.json").read_text())["exported_from"] == "tiny-sd"
    assert formats.detect(folder).format == "onnx-diffusion"
    model = ModelRegistry([(folder.parent, "user")]).resolve("tiny-sd-onnx")
    assert (model.kind, model.runtimes, model.default_size) == ("image", ("onnx",), 64)
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no staging left
    assert "exporting unet/model.onnx…" in said and any(line.startswith("checking parity") for line in said)


def test_parity_compares_each_network_and_a_whole_generation(sd):
    _, parity, _ = sd
    assert parity.ok
    assert [line.split(":")[0] for line in parity.lines] == [f"{p}/model.onnx" for p in PARTS] + [
        "whole generation (4 steps, 64×64, seed 0, image in [0, 1])"
    ]
    for line in parity.lines:
        assert line.endswith(" ok") and float(line.split("difference ")[1].split()[0].rstrip(",")) <= 1e-3


def test_network_outputs_are_measured_against_their_own_scale():
    from studio.engine.export.graph import Parity

    parity = Parity()
    parity.scaled("text_encoder/model.onnx", 0.02, 40.0)  # CLIP hidden states reach the tens
    parity.scaled("unet/model.onnx", 2e-4, 0.8)  # below 1: absolute
    assert parity.ok and parity.lines == [
        "text_encoder/model.onnx: max abs difference 2.00e-02, 5.00e-04 of its largest value 40 (limit 1e-03) ok",
        "unet/model.onnx: max abs difference 2.00e-04 (limit 1e-03) ok",
    ]
    parity.scaled("vae_decoder/model.onnx", 0.1, 40.0)
    assert not parity.ok and parity.lines[-1].endswith("TOO LARGE")


def test_graphs_have_optimums_names_dynamic_axes_and_a_readable_ir(sd):
    folder = sd[0]
    for part in PARTS:
        assert onnx.load(str(folder / part / "model.onnx"), load_external_data=False).ir_version <= MAX_IR_VERSION
    inputs, outputs = io(folder / "text_encoder" / "model.onnx")
    assert inputs == {"input_ids": (INT32, ["batch_size", "sequence_length"])}
    assert outputs == {
        "last_hidden_state": (FLOAT, ["batch_size", "sequence_length", 32]),
        "pooler_output": (FLOAT, ["batch_size", 32]),
    }
    inputs, outputs = io(folder / "unet" / "model.onnx")
    assert inputs == {
        "sample": (FLOAT, ["batch_size", 4, "height", "width"]),
        "timestep": (FLOAT, []),  # one float timestep for the batch, as newer Optimum
        "encoder_hidden_states": (FLOAT, ["batch_size", "sequence_length", 32]),
    }
    assert outputs == {"out_sample": (FLOAT, ["batch_size", 4, "height", "width"])}
    inputs, outputs = io(folder / "vae_encoder" / "model.onnx")
    assert inputs == {"sample": (FLOAT, ["batch_size", 3, "sample_height", "sample_width"])}
    assert outputs == {"latent_parameters": (FLOAT, ["batch_size", 8, "sample_height / 8", "sample_width / 8"])}
    inputs, outputs = io(folder / "vae_decoder" / "model.onnx")
    assert inputs == {"latent_sample": (FLOAT, ["batch_size", 4, "latent_height", "latent_width"])}
    assert outputs == {"sample": (FLOAT, ["batch_size", 3, "latent_height * 8", "latent_width * 8"])}
    assert json.loads((folder / "unet" / "config.json").read_text())["in_channels"] == 4
    assert json.loads((folder / "vae_decoder" / "config.json").read_text())["latent_channels"] == 4


def test_the_unet_runs_at_sizes_its_upsampling_factor_does_not_divide(sd):
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(sd[0] / "unet" / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, height, width in ((1, 8, 8), (3, 7, 12)):
        sample = rng.standard_normal((batch, 4, height, width)).astype(np.float32)
        states = rng.standard_normal((batch, 10, 32)).astype(np.float32)
        out = session.run(
            None, {"sample": sample, "timestep": np.array(7.5, np.float32), "encoder_hidden_states": states}
        )
        assert out[0].shape == sample.shape


def test_sdxl_exports_both_text_encoders_and_the_added_conditions(tmp_path):
    fc.tiny_sdxl_pipeline().save_pretrained(str(tmp_path / "tiny-xl"), safe_serialization=True)
    parity = export(tmp_path, "tiny-xl")
    assert parity.ok, parity.lines
    assert [line.split(":")[0] for line in parity.lines][:2] == ["text_encoder/model.onnx", "text_encoder_2/model.onnx"]
    folder = tmp_path / "tiny-xl-onnx"
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "StableDiffusionXLPipeline"
    assert (folder / "tokenizer_2").is_dir() and (folder / "text_encoder_2" / "config.json").is_file()
    _, outputs = io(folder / "text_encoder" / "model.onnx")
    assert list(outputs) == ["last_hidden_state", "pooler_output"] + [f"hidden_states.{i}" for i in range(3)]
    _, outputs = io(folder / "text_encoder_2" / "model.onnx")
    assert list(outputs)[:2] == ["text_embeds", "last_hidden_state"] and "hidden_states.1" in outputs
    inputs, _ = io(folder / "unet" / "model.onnx")
    assert inputs["text_embeds"] == (FLOAT, ["batch_size", 32]) and inputs["time_ids"] == (FLOAT, ["batch_size", 6])


def test_an_inpainting_unet_with_v_prediction_exports_and_passes(tmp_path):
    from diffusers import EulerDiscreteScheduler

    pipe = fc.tiny_sd1_pipeline(in_channels=9)
    pipe.scheduler = EulerDiscreteScheduler(steps_offset=1, prediction_type="v_prediction")
    pipe.save_pretrained(str(tmp_path / "tiny-inpaint"), safe_serialization=True)
    parity = export(tmp_path, "tiny-inpaint")
    assert parity.ok, parity.lines
    folder = tmp_path / "tiny-inpaint-onnx"
    assert io(folder / "unet" / "model.onnx")[0]["sample"] == (FLOAT, ["batch_size", 9, "height", "width"])
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "StableDiffusionInpaintPipeline"


def test_transformer_pipelines_are_refused_with_a_sentence(tmp_path):
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]})
    )
    model = ModelInfo(id="flux", kind="image", format="diffusers", path=folder, source="user")
    with pytest.raises(
        ExportRefused,
        match=r"flux is a FluxPipeline; the studio exports only .* not transformer pipelines such as SD3 or Flux\.",
    ):
        export_onnx(model, tmp_path / "flux-onnx")
    assert not (tmp_path / "flux-onnx").exists()


def test_images_made_on_the_export_carry_their_sources_model_hash(sd):
    """A1111's "Model hash" of an ONNX image is the hash of the checkpoint it was exported from, so
    the image names a model other tools know."""
    from studio.engine.backends.diffusion.onnx_diffusion import OnnxDiffusionBackend
    from studio.models.hashes import model_hash

    folder, _, _ = sd
    source_hash = model_hash(folder.parent / "tiny-sd")
    assert source_hash and json.loads((folder / "studio.json").read_text())["source_model_hash"] == source_hash
    backend = OnnxDiffusionBackend.load(ModelRegistry([(folder.parent, "user")]).resolve(folder.name), "cpu", "float32")
    try:
        assert backend.info.model_hash == source_hash
    finally:
        backend.close()
