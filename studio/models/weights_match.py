"""A model folder's weights against the model its config describes, before anything is built.

A config is a few numbers that size a model (vocab_size, n_layer, block_out_channels) and a
weights file is what fills it; nothing ties the two together. Left to themselves, the libraries
build whatever the config says, then fill in what the files hold and initialise the rest at
random: a 4-million-word vocabulary beside a 119-byte file takes gigabytes and runs as noise, a
200 000-layer config is still being built minutes later, and weights from another model run
silently as a random one.

So before a library loads a folder, the model is built here on torch's "meta" device (shapes,
no memory), counting its tensors as they are made, and its tensor names and shapes are compared
with the safetensors headers (read, never the data):
- a config that makes far more tensors than the files hold stops being built at once;
- a tensor the model needs and the files lack, or one the files hold and no model tensor takes,
  is refused with how many and a couple of names (tied weights and the library's own ignore
  lists excepted, as the library itself excepts them);
- a shape that differs from the file's is refused naming both;
- and the model's size in the dtype it loads in must fit in this machine's memory.
Only then does the library build and load it for real.

Torch and the libraries are imported inside the functions."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from studio.core.errors import ModelFileError
from studio.core.memory import size_words
from studio.models.formats import read_json
from studio.models.load_budget import model_memory_budget, shape_words
from studio.models.safe_files import check_safetensors

# A model may make this many tensors per tensor in its files (a fused one split in three, tied
# copies, buffers) plus TENSORS_SLACK (a model's own constants) before its build is stopped.
TENSORS_PER_FILE_TENSOR = 4
TENSORS_SLACK = 64
NAMED = 2  # tensor names a refusal quotes
# Buffers old checkpoints stored and transformers now makes itself: (pattern, buffer name ending).
LEGACY_BUFFERS = ((r"rotary_emb\.inv_freq", "rotary_emb.inv_freq"), (r"(^|\.)position_ids$", "position_ids"))

Shape = tuple[int, ...]
# A file's tensor name -> the model tensors it fills (one, or several when the library splits it)
# and whether its shape is theirs (False when the library converts it: merged, split, transposed).
Rename = Callable[[str], tuple[tuple[str, ...], bool]]


# -- what the files hold ----------------------------------------------------------------------------


def weights_files(folder: Path, stem: str, index_first: bool = False) -> list[Path]:
    """The safetensors files a library reads for `folder`: `stem.safetensors` or the shards its
    index lists (diffusers prefers the index, transformers the single file). [] when there are
    none, or the index names files that are not there: the library then says what is missing."""
    single, index = folder / f"{stem}.safetensors", folder / f"{stem}.safetensors.index.json"
    for candidate in (index, single) if index_first else (single, index):
        if not candidate.is_file():
            continue
        if candidate == single:
            return [single]
        weight_map = read_json(index).get("weight_map")
        names = set(weight_map.values()) if isinstance(weight_map, dict) else set()
        shards = [folder / n for n in sorted(names) if isinstance(n, str)]
        root = folder.resolve()
        if not shards or not all(s.resolve().is_relative_to(root) and s.is_file() for s in shards):
            return []
        return shards
    return []


def file_shapes(files: Iterable[Path], folder: Path) -> dict[str, Shape]:
    """Tensor name -> shape over the files' safetensors headers."""
    shapes: dict[str, Shape] = {}
    for path in files:
        shown = str(path.relative_to(folder.parent)) if path.is_relative_to(folder.parent) else path.name
        for name, entry in check_safetensors(path, shown).items():
            if name == "__metadata__":
                continue
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise ModelFileError(f"{shown} is not a valid safetensors file (tensor {_quote(name)!r} has no shape).")
            shapes[name] = tuple(shape)
    return shapes


# -- what the config describes ------------------------------------------------------------------------


class _TooManyTensors(Exception):
    pass


@contextlib.contextmanager
def _on_meta_counting(limit: int, count: list[int]) -> Iterator[None]:
    """Build on the meta device and count the parameters and buffers made, in this thread only
    (the hooks are process-wide); past `limit` every further one raises, so a config that makes
    far more tensors than its files hold stops at once, even if a library catches the first."""
    import torch
    from torch.nn.modules import module as nn_module

    owner = threading.get_ident()

    def counted(module: Any, name: str, tensor: Any) -> None:
        if tensor is not None and threading.get_ident() == owner:
            count[0] += 1
            if count[0] > limit:
                raise _TooManyTensors()

    hooks = [
        nn_module.register_module_parameter_registration_hook(counted),
        nn_module.register_module_buffer_registration_hook(counted),
    ]
    try:
        with torch.device("meta"):
            yield
    finally:
        for hook in hooks:
            hook.remove()


def build_on_meta(build: Callable[[], Any], where: Path, file_tensors: int) -> Any:
    """`build()` on the meta device, refused once it makes more tensors than `file_tensors` allow."""
    limit, count = TENSORS_PER_FILE_TENSOR * file_tensors + TENSORS_SLACK, [0]
    try:
        with _on_meta_counting(limit, count):
            model = build()
    except Exception:  # noqa: BLE001 - ours, or whatever a library turned it into
        if count[0] <= limit:
            raise
    if count[0] > limit:
        raise ModelFileError(
            f"The config.json in {where} describes a model of more than {limit} tensors, but its weights hold "
            f"{file_tensors}: the config does not belong to these weights, so the model was not built."
        )
    return model


def state_shapes(model: Any) -> dict[str, Shape]:
    """What the model loads from files: its state dict's names and shapes."""
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict(keep_vars=True).items()}


def model_bytes(model: Any, dtype: Any) -> int:
    """The model's size once loaded in `dtype` (floating tensors) or their own dtype, tied tensors once."""
    tensors = {id(t): t for t in model.state_dict(keep_vars=True).values()}
    return sum(t.numel() * (dtype.itemsize if t.is_floating_point() else t.element_size()) for t in tensors.values())


# -- the comparison -------------------------------------------------------------------------------


def compare(
    where: Path,
    expected: dict[str, Shape],
    found: dict[str, Shape],
    rename: Optional[Rename] = None,
    tied: Optional[dict[str, str]] = None,
    ignore_missing: Optional[re.Pattern] = None,
    ignore_unexpected: Optional[re.Pattern] = None,
) -> None:
    """ModelFileError unless the files' tensors (`found`, renamed as the library renames them)
    are exactly the model's (`expected`) with the same shapes. A tied pair (target -> source) is
    whole when either is in the files; the ignore patterns are the library's own."""
    loaded: set[str] = set()
    unexpected, mismatched = [], []
    for name, shape in found.items():
        targets, same_shape = rename(name) if rename else ((name,), True)
        targets = tuple(t for t in targets if t in expected)
        if not targets:
            if ignore_unexpected is None or not ignore_unexpected.search(name):
                unexpected.append(name)
            continue
        loaded.update(targets)
        if same_shape and shape != expected[targets[0]]:
            mismatched.append((name, shape, expected[targets[0]]))
    # A tied tensor needs no tensor of its own: it shares the one it is tied to (or lends it its own).
    tied = tied or {}
    shared = {target for target, source in tied.items() if target in expected and source in expected}
    for target in shared:
        if target in loaded:
            loaded.add(tied[target])
    needed = [k for k in expected if k not in shared]
    missing = [k for k in needed if k not in loaded and (ignore_missing is None or not ignore_missing.search(k))]
    refusal = mismatch_sentence(where, len(needed), missing, unexpected)
    if refusal:
        raise ModelFileError(refusal)
    if mismatched:
        name, shape, wanted = mismatched[0]
        more = f" ({len(mismatched) - 1} more differ)" if len(mismatched) > 1 else ""
        raise ModelFileError(
            f"The weights in {where} do not match its config.json: they hold {_quote(name)} as {shape_words(shape)} "
            f"where the config makes it {shape_words(wanted)}{more}, so the model was not loaded."
        )


def mismatch_sentence(where: Path, total: int, missing: Iterable[str], unexpected: Iterable[str]) -> Optional[str]:
    """One sentence for tensors the files lack and tensors they hold that the model has no place
    for; None when there are neither."""
    missing, unexpected = sorted(missing), sorted(unexpected)
    parts = []
    if missing:
        parts.append(f"lack {len(missing)} of the {total} tensors its config.json describes ({listed(missing)})")
    if unexpected:
        it = "it does not" if missing else "its config.json does not describe"
        parts.append(
            f"hold {len(unexpected)} {'tensor' if len(unexpected) == 1 else 'tensors'} {it} ({listed(unexpected)})"
        )
    if not parts:
        return None
    return (
        f"The weights in {where} {' and '.join(parts)}: they do not belong to this config, so the model was not loaded."
    )


def check_memory(where: Path, needed: int, dtype: Any) -> None:
    """Refuse a model larger than this machine's memory before it is allocated."""
    budget = model_memory_budget()
    if budget is not None and needed > budget:
        raise ModelFileError(
            f"{where} holds a model of {size_words(needed)} in {str(dtype).removeprefix('torch.')}, more than this "
            f"machine's {size_words(budget)} of memory, so it was not loaded."
        )


def unfilled(module: Any) -> tuple[list[str], int]:
    """The names of a built module's parameters and buffers that hold no data (left on the meta
    device, as diffusers leaves what a file lacks), and how many it has in all."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    return [name for name, tensor in tensors if tensor.device.type == "meta"], len(tensors)


def patterns(*groups: Optional[Iterable[str]]) -> Optional[re.Pattern]:
    """One regex for a library's lists of key patterns (None when there are none)."""
    found = [p for group in groups for p in (group or ())]
    return re.compile("|".join(f"(?:{p})" for p in found)) if found else None


# -- the libraries' folders ---------------------------------------------------------------------------


def check_transformers_folder(folder: Path, dtype: Any, model_class: Any = None) -> int:
    """Refuse a transformers model folder whose weights do not fill the model its config.json
    describes (see the module's docstring); the model's size in `dtype` when they do (0 when the
    folder has no safetensors weights, which the library then names). `model_class`: a
    PreTrainedModel class (a pipeline's text encoder); by default the causal LM the config names."""
    files = weights_files(folder, "model")
    if not files:
        return 0
    found = file_shapes(files, folder)
    from transformers import AutoConfig, AutoModelForCausalLM

    if model_class is None:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        model = build_on_meta(
            lambda: AutoModelForCausalLM.from_config(config, trust_remote_code=False), folder, len(found)
        )
    else:
        config = model_class.config_class.from_pretrained(str(folder), local_files_only=True)
        model = build_on_meta(lambda: model_class._from_config(config), folder, len(found))
    expected = state_shapes(model)
    # As transformers does: old checkpoints' per-layer rotary and position-id buffers are not unexpected.
    buffers = [name for name, _ in model.named_buffers()]
    legacy = [pattern for pattern, end in LEGACY_BUFFERS if any(b.endswith(end) for b in buffers)]
    compare(
        folder,
        expected,
        found,
        _transformers_rename(model, expected),
        _tied(model),
        patterns(getattr(model, "_keys_to_ignore_on_load_missing", None)),
        patterns(getattr(model, "_keys_to_ignore_on_load_unexpected", None), legacy),
    )
    return model_bytes(model, dtype)


def _tied(model: Any) -> dict[str, str]:
    """Tied tensor -> the one it shares (lm_head.weight -> the embeddings), where the config ties them."""
    tied = getattr(model, "all_tied_weights_keys", None)
    if tied is None:  # transformers 4: the names of the tied tensors only
        keys = getattr(model, "_tied_weights_keys", None) or ()
        tied = dict(keys) if isinstance(keys, dict) else {k: k for k in keys}
    return dict(tied)


def _transformers_rename(model: Any, expected: dict[str, Shape]) -> Rename:
    """The renaming transformers applies to a checkpoint's names on load, from its own tables
    (legacy names, merged or split tensors), and its base-model prefix added or dropped."""
    prefix = getattr(model, "base_model_prefix", "") or None
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

        mapping = get_model_conversion_mapping(model)
    except (ImportError, TypeError):  # another transformers: the prefix alone

        def by_prefix(key: str) -> tuple[tuple[str, ...], bool]:
            if prefix and key not in expected:
                key = f"{prefix}.{key}" if f"{prefix}.{key}" in expected else key.removeprefix(f"{prefix}.")
            return (key,), True

        return by_prefix
    renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
    converters = [m for m in mapping if isinstance(m, WeightConverter)]
    targets_of = {source: list(c.target_patterns) for c in converters for source in c.source_patterns}

    def rename(key: str) -> tuple[tuple[str, ...], bool]:
        target, source_pattern = rename_source_key(key, renamings, converters, prefix, expected)
        if target not in expected and key in expected:
            target, source_pattern = rename_source_key(key, [], [], prefix, expected)
        if source_pattern is None:
            return (target,), True
        # A converter names its first target; a split fills the others too (qkv -> q, then k and v).
        first, *others = targets_of.get(source_pattern) or [""]
        return (target, *(target.replace(first, t, 1) for t in others if first in target)), False

    return rename


def check_diffusers_folder(folder: Path, dtype: Any) -> None:
    """Refuse a diffusers pipeline folder when any of its model components (UNet, VAE, text
    encoder...) has weights that do not fill the model its config.json describes, or when together
    they would not fit in this machine's memory."""
    # diffusers' public names: its lazy __init__ re-exports them in a way pyright reads as private.
    from diffusers import ModelMixin  # pyright: ignore[reportPrivateImportUsage]
    from transformers import PreTrainedModel

    index = read_json(folder / "model_index.json")
    needed = 0
    for name, entry in index.items():
        cls = None if name.startswith("_") else _component_class(entry)
        if cls is None:
            continue  # an empty slot
        if issubclass(cls, PreTrainedModel):
            needed += check_transformers_folder(folder / name, dtype, cls)
        elif issubclass(cls, ModelMixin):
            needed += _check_diffusers_model(folder / name, cls, dtype)
        # Anything else (a tokenizer, a scheduler) holds no weights to compare.
    check_memory(folder, needed, dtype)


def _component_class(entry: Any) -> Any:
    """The class a model_index.json entry names (check_model_index has vetted the library), or
    None when it cannot be found (diffusers then says so)."""
    import importlib

    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)):
        return None
    library, class_name = entry
    module = library if library in ("diffusers", "transformers") else f"diffusers.pipelines.{library}"
    try:
        cls = getattr(importlib.import_module(module), class_name)
    except (ImportError, AttributeError):
        return None
    return cls if isinstance(cls, type) else None


def _check_diffusers_model(folder: Path, cls: Any, dtype: Any) -> int:
    files = weights_files(folder, "diffusion_pytorch_model", index_first=True)
    if not files:
        return 0
    found = file_shapes(files, folder)
    config = cls.load_config(str(folder), local_files_only=True)
    model = build_on_meta(lambda: cls.from_config(config), folder, len(found))
    fix = getattr(model, "_fix_state_dict_keys_on_load", None)
    if fix is not None and len(files) == 1 and files[0].name == "diffusion_pytorch_model.safetensors":
        found = dict(found)
        fix(found)  # diffusers renames old attention blocks' tensors, in a single file only (as it does)
    compare(
        folder,
        state_shapes(model),
        found,
        ignore_unexpected=patterns(getattr(cls, "_keys_to_ignore_on_load_unexpected", None)),
    )
    return model_bytes(model, dtype)


def listed(names: list[str]) -> str:
    """The first few of `names`, for a sentence ("a, b, …")."""
    shown = ", ".join(_quote(n) for n in names[:NAMED])
    return shown + (", …" if len(names) > NAMED else "")


def _quote(name: str) -> str:
    return name if len(name) <= 80 else name[:79] + "…"
