"""`studio export-onnx`: turn a model the studio runs on torch into ONNX files that ONNX Runtime
(and other ONNX tools) can run, and prove the two agree; and whether a model can be exported at
all (check_exportable, needs_export), which the window's runtime picker asks.

One exporter per family, each in its own module beside this one: latent (our VAE/GAN decoders and
the VAE encoder), diffusion (Stable Diffusion pipelines, in Optimum's folder layout) and text
(causal language models with a KV cache, in Optimum's input/output naming). Each writes into an
empty folder and returns its parity check against torch on fixed inputs (graph.Parity).
`export_onnx` runs one into a hidden staging folder beside the target and moves it into place only
when the parity check passes, so a half-written or wrong export never shows up as a model.
torch is imported only by the exporters, when one runs."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from studio.core.atomic import current_umask, write_atomic
from studio.core.errors import ErrorKind, SpecError, StudioError
from studio.core.kinds import ONNX_FORMATS, ModelFormat, ModelKind, Runtime
from studio.core.untrusted import expand_user
from studio.engine.export.graph import Parity, Say
from studio.models.formats import weights_fingerprint

log = logging.getLogger(__name__)

# model format -> "module:function" of its exporter, imported when used (they import torch).
EXPORTERS = {
    ModelFormat.STUDIO_LATENT: "studio.engine.export.latent:export_latent",
    ModelFormat.DIFFUSERS: "studio.engine.export.diffusion:export_diffusion",
    ModelFormat.SD_SINGLE_FILE: "studio.engine.export.diffusion:export_diffusion",
    ModelFormat.TRANSFORMERS: "studio.engine.export.text:export_text",
}
EXPORTABLE_FORMATS = tuple(EXPORTERS)


class ExportRefused(StudioError):
    """An export asked of a model that has no exporter, or into a folder that is taken: bad input."""

    kind = ErrorKind.BAD_INPUT


def _exporter(model: Any) -> Callable[[Any, Path, Say], Parity]:
    """The export function for a model's family; StudioError for a model that has no ONNX export."""
    target = EXPORTERS.get(model.format)
    if target is not None:
        module_name, function = target.split(":")
        return getattr(importlib.import_module(module_name), function)
    if model.format in ONNX_FORMATS:
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
    out = expand_user(out, lambda sentence: SpecError("out", sentence)).absolute()
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
        raise ExportRefused(
            f"{out} holds files that are not an ONNX export, so --replace leaves it alone; choose another --out."
        )


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
    if model.kind == ModelKind.IMAGE:
        from studio.models.hashes import model_hash

        source_hash = model_hash(Path(model.path))
        if source_hash:  # images made on the export carry their source's hash (A1111's "Model hash")
            manifest["source_model_hash"] = source_hash
    write_atomic(manifest_path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def check_exportable(model: Any) -> None:
    """ExportRefused (a sentence saying why) unless `model` can be exported: it has an exporter
    and, for a diffusers folder, is a pipeline that exporter handles (its model_index.json says)."""
    _exporter(model)
    if model.format == ModelFormat.DIFFUSERS:
        from studio.engine.export.diffusion import check_source

        check_source(model)


def why_not_exportable(model: Any) -> str:
    """The sentence saying why a model cannot be exported to ONNX, less its full stop ("" when it can)."""
    try:
        check_exportable(model)
    except StudioError as error:
        return error.message.rstrip(".")
    return ""


def needs_export(model: Optional[Any]) -> bool:
    """Whether ONNX Runtime would first need `studio export-onnx` for this model, and it can have it."""
    return model is not None and Runtime.ONNX not in model.runtimes and not why_not_exportable(model)
