"""What every exporter shares: tracing a torch module into one checked ONNX file (export_graph)
and the record of its parity check against torch (Parity).

Uses torch's TorchScript-based exporter (`dynamo=False`): the torch.export-based one that newer
torch uses by default needs onnxscript, which the studio does not ship. torch and onnx are
imported inside export_graph."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from studio.core.atomic import write_atomic
from studio.core.errors import StudioError

log = logging.getLogger(__name__)

OPSET = 17
# The newest ONNX IR version every onnxruntime the studio supports (>= 1.20) can read. onnx may
# stamp a newer one than the graph needs; a newer one than ORT knows makes it refuse the file.
MAX_IR_VERSION = 10
# protobuf cannot hold a message over 2 GiB: larger graphs (an SD 1.5 UNet in fp32 is 3.4 GB) keep
# their weights in one external-data file beside the graph.
EXTERNAL_DATA_BYTES = 1_800_000_000
# The parity limit for images and decoded latents: max |onnx - torch| over pixels in [0, 1], fp32.
IMAGE_TOLERANCE = 1e-3
# How many greedy tokens must agree exactly for a language model.
PARITY_TOKENS = 64

Say = Callable[[str], None]  # an exporter reports each stage in a line


@dataclass
class Parity:
    """An export's parity check: one line per comparison, and whether all were within limits."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def image(self, what: str, difference: float, limit: float = IMAGE_TOLERANCE) -> None:
        """Record one max-abs-difference comparison."""
        passed = difference <= limit
        self.ok = self.ok and passed
        self.lines.append(
            f"{what}: max abs difference {difference:.2e} (limit {limit:.0e}) {'ok' if passed else 'TOO LARGE'}"
        )

    def scaled(self, what: str, difference: float, largest: float, limit: float = IMAGE_TOLERANCE) -> None:
        """Record one network-output comparison, for outputs with no fixed range (CLIP hidden
        states reach the tens, noise predictions and log-variances vary): the difference measured
        against the reference's largest magnitude when that is over 1, absolute below it."""
        scale = max(1.0, largest)
        passed = difference / scale <= limit
        self.ok = self.ok and passed
        measure = f"max abs difference {difference:.2e}"
        if scale > 1.0:
            measure += f", {difference / scale:.2e} of its largest value {largest:.3g}"
        self.lines.append(f"{what}: {measure} (limit {limit:.0e}) {'ok' if passed else 'TOO LARGE'}")

    def tokens(self, what: str, same: int, total: int) -> None:
        """Record one identical-tokens comparison."""
        passed = same == total
        self.ok = self.ok and passed
        self.lines.append(f"{what}: {same}/{total} greedy tokens identical {'ok' if passed else 'DIFFERENT'}")


def _pin(model: Any) -> None:
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    model.producer_name = "studio"


def export_graph(
    module: Any,
    args: tuple,
    target: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    adjust: Optional[Callable[[Any], None]] = None,
) -> Path:
    """Export a torch module called with `args` to the ONNX file `target`, and return it.

    The IR version is pinned to one the installed onnxruntime reads and the graph is checked.
    `adjust(model)` may edit the loaded graph first (e.g. state output sizes the tracer lost).
    Written atomically; a graph over protobuf's limit keeps its weights in `<name>_data` beside it."""
    import onnx
    import torch

    target = Path(target)
    if not target.name.endswith(".onnx"):
        raise StudioError(f"The export name {target.name!r} should be a plain file name ending in .onnx.")
    # The exporter writes files (and for a large graph, one per tensor beside it): into a private
    # temp folder first; the final files are then written whole, so a crash never leaves half a graph.
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.export.", dir=target.parent) as scratch:
        traced = Path(scratch) / "model.onnx"
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(
                module,
                args,
                str(traced),
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
            )
        # Over protobuf's limit the exporter itself keeps the weights in files beside the graph;
        # ByteSize() cannot even measure such a model (upb raises), so size is judged on disk.
        large = traced.stat().st_size >= EXTERNAL_DATA_BYTES or any(
            p.name != traced.name for p in Path(scratch).iterdir()
        )
        model = onnx.load(str(traced))  # with any external data it was given
        _pin(model)
        if adjust is not None:
            adjust(model)
        if not large:
            onnx.checker.check_model(model)
            write_atomic(target, model.SerializeToString())
        else:
            data_name = f"{target.name}_data"
            staged = Path(scratch) / "out" / target.name
            staged.parent.mkdir()
            onnx.save_model(
                model,
                str(staged),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
            onnx.checker.check_model(str(staged))  # by path: the checker reads external data itself
            os.replace(staged.parent / data_name, target.parent / data_name)
            os.replace(staged, target)
    log.info("exported %s (opset %d, IR %d)", target, OPSET, min(MAX_IR_VERSION, model.ir_version))
    return target
