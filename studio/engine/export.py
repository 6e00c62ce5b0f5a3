"""`studio export-onnx`: turn a model the studio runs on torch into ONNX files that ONNX Runtime
(and other ONNX tools) can run, and prove the two agree.

One exporter per family, each in its own module: export_latent (our VAE/GAN decoders and the VAE
encoder), export_diffusion (Stable Diffusion pipelines, in Optimum's folder layout) and export_text
(causal language models with a KV cache, in Optimum's input/output naming). Each writes into an
empty folder and returns its parity check against torch on fixed inputs. `export_onnx` runs one
into a hidden staging folder beside the target and moves it into place only when the parity
check passes, so a half-written or wrong export never shows up as a model.

Uses torch's TorchScript-based exporter (`dynamo=False`): the torch.export-based one that newer
torch uses by default needs onnxscript, which the studio does not ship. torch is imported lazily."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from studio.core.atomic import current_umask, write_atomic
from studio.core.errors import ErrorKind, SpecError, StudioError
from studio.core.untrusted import expand_user
from studio.models.formats import weights_fingerprint

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

Say = Callable[[str], None]
# model format -> "module:function" of its exporter, imported when used (they import torch).
EXPORTERS = {
    "studio-latent": "studio.engine.export_latent:export_latent",
    "diffusers": "studio.engine.export_diffusion:export_diffusion",
    "sd-single-file": "studio.engine.export_diffusion:export_diffusion",
    "transformers": "studio.engine.export_text:export_text",
}
EXPORTABLE_FORMATS = tuple(EXPORTERS)


class ExportRefused(StudioError):
    """An export asked of a model that has no exporter, or into a folder that is taken: bad input."""

    kind = ErrorKind.BAD_INPUT


@dataclass
class Parity:
    """An export's parity check: one line per comparison, and whether all were within limits."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def image(self, what: str, difference: float, limit: float = IMAGE_TOLERANCE) -> None:
        """Record one max-abs-difference comparison."""
        passed = difference <= limit
        self.ok = self.ok and passed
        self.lines.append(f"{what}: max abs difference {difference:.2e} (limit {limit:.0e}) "
                          f"{'ok' if passed else 'TOO LARGE'}")

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


def export_graph(module: Any, args: tuple, target: Path, input_names: list[str], output_names: list[str],
                 dynamic_axes: dict[str, dict[int, str]], adjust: Optional[Callable[[Any], None]] = None) -> Path:
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
            torch.onnx.export(module, args, str(traced), dynamo=False, input_names=input_names,
                              output_names=output_names, dynamic_axes=dynamic_axes, opset_version=OPSET,
                              do_constant_folding=True)
        # Over protobuf's limit the exporter itself keeps the weights in files beside the graph;
        # ByteSize() cannot even measure such a model (upb raises), so size is judged on disk.
        large = traced.stat().st_size >= EXTERNAL_DATA_BYTES or any(
            p.name != traced.name for p in Path(scratch).iterdir())
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
            onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            onnx.checker.check_model(str(staged))  # by path: the checker reads external data itself
            os.replace(staged.parent / data_name, target.parent / data_name)
            os.replace(staged, target)
    log.info("exported %s (opset %d, IR %d)", target, OPSET, min(MAX_IR_VERSION, model.ir_version))
    return target


# ---------------------------------------------------------------------------------------------
# The command


def _exporter(model: Any) -> Callable[[Any, Path, Say], Parity]:
    """The export function for a model's family; StudioError for a model that has no ONNX export."""
    target = EXPORTERS.get(model.format)
    if target is not None:
        module_name, function = target.split(":")
        return getattr(importlib.import_module(module_name), function)
    if "onnx" in model.format:
        raise ExportRefused(f"{model.id} is already an ONNX model ({model.format}); there is nothing to export.")
    raise ExportRefused(f"{model.id} is a {model.format} model, which the studio cannot export to ONNX.")


def default_out(model: Any) -> Path:
    """Where an export goes when no --out is given: the user's models folder, as `<id>-onnx`, so
    the studio finds it at once and offers ONNX Runtime for the model."""
    from studio.models.paths import user_models_dir

    return user_models_dir() / f"{model.id}-onnx"


def export_onnx(model: Any, out: Path, say: Say = log.info, replace: bool = False) -> Parity:
    """Export `model` (a ModelInfo) into the folder `out` and return the parity check.

    The export is built in a hidden folder beside `out` and takes its place only once the parity
    check passes; when it fails, nothing is left behind and the figures say why. An existing
    non-empty `out` is refused unless `replace`."""
    exporter = _exporter(model)
    out = expand_user(out, SpecError).absolute()
    _check_out(model, out, replace)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out.parent.glob(f".{out.name}.exporting-*"), *out.parent.glob(f".{out.name}.replaced-*")]:
        # Left by an export that was killed (out of memory, power): hidden, so no scan would report them.
        log.warning("removing %s, left by an interrupted export", stale)
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.exporting-", dir=out.parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's private 0700 would stay on the model folder
    try:
        parity = exporter(model, staging, say)
        if not parity.ok:
            return parity
        _stamp(staging, model)
        if out.exists():
            old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
        return parity
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_out(model: Any, out: Path, replace: bool) -> None:
    """ExportRefused unless `out` may receive the export: not the model's own folder, inside it or
    holding it, and, when it exists with files in it, an earlier export that `replace` allows."""
    from studio.models.formats import MANIFEST, read_json

    source, target = Path(model.path).resolve(), out.resolve()
    if target == source or target.is_relative_to(source) or source.is_relative_to(target):
        raise ExportRefused(f"{out} is {model.id}'s own folder or holds it; choose another --out.")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not replace:
        raise ExportRefused(f"{out} already exists and is not empty; choose another --out, or pass --replace.")
    # --replace swaps out a whole folder: only ever one that an export made.
    try:
        earlier = out.is_dir() and "exported_from" in read_json(out / MANIFEST)
    except StudioError:
        earlier = False
    if not earlier:
        raise ExportRefused(f"{out} holds files that are not an ONNX export, so --replace leaves it alone; "
                            "choose another --out.")


def _stamp(folder: Path, model: Any) -> None:
    """Give the export a studio.json naming its source (the registry pairs the two, so the source
    model offers ONNX Runtime), with its title and licence, unless the exporter wrote one."""
    import json

    from studio.models.formats import MANIFEST

    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    manifest.setdefault("title", f"{model.title} (ONNX)")
    if model.licence:
        manifest.setdefault("licence", model.licence)
    for key in ("description", "defaults"):
        if key in model.manifest:
            manifest.setdefault(key, model.manifest[key])
    manifest["exported_from"] = model.id
    # Which weights it was made from: a source changed since (retrained, another model under the
    # same name) is no longer paired with it (registry).
    manifest["source_weights"] = weights_fingerprint(Path(model.path))
    if model.kind == "image":
        from studio.models.hashes import model_hash

        source_hash = model_hash(Path(model.path))
        if source_hash:  # images made on the export carry their source's hash (A1111's "Model hash")
            manifest["source_model_hash"] = source_hash
    write_atomic(manifest_path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def check_exportable(model: Any) -> None:
    """ExportRefused (a sentence saying why) unless `model` can be exported: it has an exporter
    and, for a diffusers folder, is a pipeline that exporter handles (its model_index.json says)."""
    _exporter(model)
    if model.format == "diffusers":
        from studio.engine.export_diffusion import check_source

        check_source(model)

