"""Export our own latent models to ONNX, so ONNX Runtime can run them (studio-latent folders).

Uses torch's TorchScript-based exporter (`dynamo=False`): the torch.export-based one that newer
torch uses by default needs onnxscript, which the studio does not ship. torch is imported lazily."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

from studio.core.atomic import write_atomic
from studio.core.errors import ModelFileError, StudioError

log = logging.getLogger(__name__)

OPSET = 17
# The newest ONNX IR version every onnxruntime the studio supports (>= 1.20) can read. onnx may
# stamp a newer one than the graph needs; a newer one than ORT knows makes it refuse the file.
MAX_IR_VERSION = 10
INPUT_NAME, OUTPUT_NAME = "latent", "image"


def export_decoder_onnx(model_dir: Path, out_name: str = "decoder.onnx") -> Path:
    """Export a studio-latent folder's torch decoder to `model_dir / out_name` and return that path.

    The graph takes "latent" (batch, latent_dim) float32 and gives "image" (batch, 3, H, W) in
    [0, 1], with a dynamic batch axis. Written atomically; studio.json is left as it is."""
    import onnx
    import torch

    from studio.models.nets import load_decoder
    from studio.models.registry import inspect

    model_dir = Path(model_dir)
    if not out_name or Path(out_name).name != out_name or not out_name.endswith(".onnx"):
        raise StudioError(f"The export name {out_name!r} should be a plain file name ending in .onnx.")
    model = inspect(model_dir, "path")
    if model.format != "studio-latent":
        raise ModelFileError(f"{model_dir} is a {model.format} model; only studio-latent folders export to ONNX.")
    net = load_decoder(model_dir, model.manifest)
    example = torch.zeros(1, net.latent_dim, dtype=torch.float32)

    # The exporter writes a file; it goes to a temp name first, and the fixed-up model is then
    # written atomically over the target, so a crash never leaves a half-written decoder.onnx.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_name}.export.", suffix=".tmp", dir=model_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(
                net,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )
        exported = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    # The tracer loses the image's static size through Resize; state it, so readers of the graph
    # (and the ONNX backend) see (batch, 3, H, W) rather than four unknowns.
    dims = exported.graph.output[0].type.tensor_type.shape.dim
    for dim, value in zip(dims[1:], (3, net.image_size, net.image_size)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    if exported.ir_version > MAX_IR_VERSION:
        exported.ir_version = MAX_IR_VERSION
    exported.producer_name = "studio"
    onnx.checker.check_model(exported)
    target = model_dir / out_name
    write_atomic(target, exported.SerializeToString())
    log.info("exported %s (opset %d, IR %d)", target, OPSET, exported.ir_version)
    return target
