"""A diffusers pipeline from a single-file Stable Diffusion checkpoint (.safetensors), offline.

diffusers' `from_single_file` needs each component's diffusers config and the tokenizer files; left
to itself it downloads them from the Hub, and with `local_files_only=True` and an empty cache it
retries *online*. So every call here passes `config=` a local folder of ours
(`studio/resources/sd-configs/<family>/`, configs only, no weights) and ready-made tokenizers built from
`studio/resources/clip-tokenizer/merges.txt`, and sets HF_HUB_OFFLINE first: nothing can reach the network.

Which family a file is comes from its header (studio.models.single_file, at discovery). Loading
reads the tensors once, converts the original (LDM) names to diffusers' (diffusers' own mapping),
and every way it can fail becomes one ModelFileError sentence naming the file.

Torch and diffusers are imported inside the functions, so importing this module stays cheap."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Optional

from studio.core.errors import ModelFileError, StudioError
from studio.models.clip_tokenizer import MAX_LENGTH, PAD_SD1, load_clip_tokenizer
from studio.models.formats import read_json
from studio.models.libraries import quiet_library_logs
from studio.models.paths import RESOURCES_DIR, offline
from studio.models.safe_files import check_safetensors, explain_load_error
from studio.models.single_file import FAMILIES, TITLES, flat_text_encoder_prefixes
from studio.models.weights_match import listed, unfilled

CONFIG_ROOT = RESOURCES_DIR / "sd-configs"
PIPELINES = {
    "sd15": "StableDiffusionPipeline",
    "sd15-inpaint": "StableDiffusionInpaintPipeline",
    "sd2": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}
TOKENIZER_FOLDERS = ("tokenizer", "tokenizer_2")


def family_config_dir(family: str, config_root: Optional[Path] = None) -> Path:
    """The local diffusers-format config folder for a family (ModelFileError if it is missing)."""
    if family not in PIPELINES:
        raise ModelFileError(
            f"The studio has no configs for the checkpoint family {family!r} (it knows {', '.join(FAMILIES)})."
        )
    folder = Path(config_root or CONFIG_ROOT) / family
    if not (folder / "model_index.json").is_file():
        raise ModelFileError(f"The studio's {TITLES[family]} configs are missing from {folder}; reinstall the studio.")
    return folder


def family_tokenizers(config: Path) -> dict[str, Any]:
    """`tokenizer` (and `tokenizer_2`) for a family folder, built from our CLIP merges with the pad
    token and length its tokenizer_config.json gives."""
    tokenizers = {}
    for sub in TOKENIZER_FOLDERS:
        settings_file = config / sub / "tokenizer_config.json"
        if not settings_file.is_file():
            continue
        settings = read_json(settings_file)
        pad = settings.get("pad_token", PAD_SD1)
        pad = pad.get("content", PAD_SD1) if isinstance(pad, dict) else str(pad)
        length = settings.get("model_max_length", MAX_LENGTH)
        tokenizers[sub] = load_clip_tokenizer(
            pad_token=pad, max_length=int(length) if isinstance(length, int) else MAX_LENGTH
        )
    return tokenizers


def load_single_file_pipeline(
    path: Path,
    family: str,
    torch_dtype: Any,
    config_root: Optional[Path] = None,
    prediction_type: Optional[str] = None,
) -> Any:
    """A StableDiffusionPipeline / StableDiffusionInpaintPipeline / StableDiffusionXLPipeline from
    one .safetensors checkpoint, on the CPU in `torch_dtype`, never touching the network.

    `family` comes from single_file.detect_family (the registry keeps it in the model's manifest);
    `prediction_type` ("epsilon" / "v_prediction", also in the manifest) overrides the family's
    scheduler default when the file says otherwise; `config_root` replaces studio/resources/sd-configs
    (tests use tiny configs)."""
    offline()
    quiet_library_logs("diffusers", "transformers")
    path = Path(path)
    header = check_safetensors(path)  # our sentence for a truncated or impostor file, before any library
    config = family_config_dir(family, config_root)
    tokenizers = family_tokenizers(config)

    import diffusers

    cls = getattr(diffusers, PIPELINES[family])
    with explained_single_file_errors(path, family):
        text_encoders = flat_text_encoders(path, header, config, torch_dtype)
        pipe = cls.from_single_file(
            str(path),
            config=str(config),
            local_files_only=True,
            torch_dtype=torch_dtype,
            **tokenizers,
            **text_encoders,
        )
    check_all_weights_loaded(pipe, path, family)
    if prediction_type and pipe.scheduler.config.get("prediction_type") != prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction_type)
    return pipe


def flat_text_encoders(path: Path, header: dict[str, Any], config: Path, torch_dtype: Any) -> dict[str, Any]:
    """{component: CLIPTextModel} for the text encoders `path` stores flat (no text_model level, as
    diffusers' conversion script writes them on transformers 5), which diffusers' single-file loader
    would leave empty: built from the family's config and filled from the file's own tensors."""
    from safetensors import safe_open
    from transformers import CLIPTextConfig, CLIPTextModel

    models = {}
    for component, prefix in flat_text_encoder_prefixes(header).items():
        model = CLIPTextModel(CLIPTextConfig.from_pretrained(str(config / component), local_files_only=True))
        with safe_open(str(path), "pt") as f:
            state = {name[len(prefix) :]: f.get_tensor(name) for name in f.keys() if name.startswith(prefix)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [name for name in missing if not name.endswith("position_ids")]  # a buffer CLIP makes itself
        if missing or unexpected:
            raise ModelFileError(
                f"{path.name}'s text encoder does not fit the CLIP its family uses "
                f"({len(missing)} tensors missing, {len(unexpected)} unexpected: "
                f"{listed(sorted(missing + unexpected))})."
            )
        models[component] = model.to(torch_dtype).eval()
    return models


def check_all_weights_loaded(pipe: Any, path: Path, family: str) -> None:
    """diffusers leaves a tensor the file lacks on the "meta" device (no data) and only fails
    much later; say so now, naming the component and how many it lacks."""
    import torch

    for name, component in getattr(pipe, "components", {}).items():
        if not isinstance(component, torch.nn.Module):
            continue
        empty, total = unfilled(component)
        if empty:
            raise ModelFileError(
                f"{path.name} has no weights for {len(empty)} of its {name}'s {total} tensors "
                f"({listed(sorted(empty))}): it is not a complete {TITLES[family]} checkpoint."
            )


@contextlib.contextmanager
def explained_single_file_errors(path: Path, family: str) -> Iterator[None]:
    """Whatever diffusers or transformers raise while building the pipeline, as one sentence."""
    try:
        yield
    except (StudioError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - every other failure is a file that does not fit
        if type(exc).__name__ == "OutOfMemoryError":
            raise
        raise ModelFileError(explain_single_file_error(path, family, exc)) from exc


def explain_single_file_error(path: Path, family: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split()).lower()
    title = TITLES.get(family, "Stable Diffusion")
    if "expected shape" in text or "size mismatch" in text:
        return (
            f"{path.name} does not fit the {title} layout its tensor names suggest (a tensor has an "
            "unexpected shape): it may be another kind of model or a damaged file."
        )
    if "meta tensor" in text:  # a parameter the file has no tensor for, found when diffusers moves it
        return f"{path.name} lacks some of its weights: it is not a complete {title} checkpoint."
    if "weights for this component appear to be missing" in text or "valid clip model" in text:
        return f"{path.name} lacks part of a {title} checkpoint (a component's weights are missing)."
    return explain_load_error(path, exc, f"a {title} checkpoint")
