"""A model folder's config is checked against its weights' headers before anything is built: a
config that sizes the model beyond its files, weights that are missing, extra or of another
model are refused in one sentence, and the library is never asked to build the model.

Tiny real GPT-2 and Stable Diffusion folders, each changed in one way."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import diffusers
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from studio.bench.tiny_models import build_tiny_diffusers, build_tiny_gpt2
from studio.core.errors import ModelFileError
from studio.core.jobs import TextJob
from studio.engine.backends.diffusion import diffusers_image
from studio.engine.backends.diffusion.diffusers_image import DiffusersImageBackend
from studio.engine.backends.text import transformers_text
from studio.engine.backends.text.transformers_text import TransformersTextBackend
from studio.engine.runner import Runner
from studio.models import weights_match
from studio.models.registry import ModelRegistry

from run_jobs import finished, one_sentence_failure, run


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("originals")
    return {"gpt2": build_tiny_gpt2(root / "gpt2"), "sd": build_tiny_diffusers(root / "sd")}


def names_in(path: Path) -> list[str]:
    with safe_open(str(path), "pt") as f:
        return sorted(f.keys())


def variant(original: Path, folder: Path, config: dict | None = None, weights=None, part: str = "") -> Path:
    """A copy of `original` with `config` merged into (part's) config.json and its weights
    replaced by `weights(state dict)`."""
    shutil.copytree(original, folder)
    where = folder / part if part else folder
    if config:
        settings = json.loads((where / "config.json").read_text())
        (where / "config.json").write_text(json.dumps({**settings, **config}))
    if weights:
        [path] = where.glob("*.safetensors")
        save_file(weights(load_file(str(path))), str(path), metadata={"format": "pt"})
    return folder


@pytest.fixture
def never_built(monkeypatch):
    """Fails the test if a library is asked to build a model: what the refusal must come before."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", refuse)


def load_text(folder: Path):
    return TransformersTextBackend.load(SimpleNamespace(path=folder), "cpu", "float32")


def refusal(load, folder: Path) -> str:
    with pytest.raises(ModelFileError) as info:
        load(folder)
    assert "\n" not in info.value.message
    return info.value.message


# -- a transformers language model ---------------------------------------------------------------------


def test_a_huge_vocabulary_beside_a_tiny_weights_file_is_refused_unbuilt(originals, tmp_path, never_built):
    gpt2 = originals["gpt2"]
    folder = variant(gpt2, tmp_path / "vocab", {"vocab_size": 4_000_000}, lambda state: {"x": torch.zeros(3)})
    assert (folder / "model.safetensors").stat().st_size < 200
    needed = len(names_in(gpt2 / "model.safetensors"))
    message = refusal(load_text, folder)
    assert f"lack {needed} of the {needed} tensors its config.json describes" in message
    assert "hold 1 tensor it does not (x)" in message and "was not loaded" in message


def test_a_vocabulary_its_weights_do_not_have_is_refused_naming_both_shapes(originals, tmp_path, never_built):
    folder = variant(originals["gpt2"], tmp_path / "vocab", {"vocab_size": 4_000_000})
    width = json.loads((folder / "config.json").read_text())["n_embd"]
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        held = f.get_slice("transformer.wte.weight").get_shape()
    message = refusal(load_text, folder)
    assert f"transformer.wte.weight as {held[0]}×{held[1]} where the config makes it 4000000×{width}" in message


def test_a_config_of_200000_layers_stops_being_built_at_once(originals, tmp_path, never_built):
    folder = variant(originals["gpt2"], tmp_path / "deep", {"n_layer": 200_000})
    held = len(names_in(folder / "model.safetensors"))
    message = refusal(load_text, folder)
    assert message.startswith(f"The config.json in {folder} describes a model of more than ")
    assert f"but its weights hold {held}: the config does not belong to these weights" in message


def test_weights_holding_none_of_the_configs_tensors_are_refused_with_how_many(originals, tmp_path, never_built):
    folder = variant(originals["gpt2"], tmp_path / "other", weights=lambda s: {f"other.{k}": v for k, v in s.items()})
    needed = len(names_in(originals["gpt2"] / "model.safetensors"))
    message = refusal(load_text, folder)
    assert f"lack {needed} of the {needed} tensors its config.json describes (transformer.h.0." in message


def test_one_unexpected_tensor_is_refused_by_name(originals, tmp_path, never_built):
    folder = variant(originals["gpt2"], tmp_path / "extra", weights=lambda s: {**s, "extra.weight": torch.zeros(2)})
    assert refusal(load_text, folder) == (
        f"The weights in {folder} hold 1 tensor its config.json does not describe (extra.weight): they do not "
        "belong to this config, so the model was not loaded."
    )


def test_a_model_larger_than_the_machines_memory_is_refused_unbuilt(originals, monkeypatch, never_built):
    monkeypatch.setattr(weights_match, "model_memory_budget", lambda: 1000)
    message = refusal(load_text, originals["gpt2"])
    assert "more than this machine's 1.0 KB of memory, so it was not loaded." in message


@pytest.mark.parametrize(
    "change",
    [
        lambda s: {**s, "lm_head.weight": s["transformer.wte.weight"].clone()},  # the tied head stored as well
        lambda s: {k.removeprefix("transformer."): v for k, v in s.items()},  # saved from the base model
    ],
    ids=["tied-head-stored", "no-prefix"],
)
def test_what_transformers_itself_accepts_still_loads(originals, tmp_path, change):
    folder = variant(originals["gpt2"], tmp_path / "fine", weights=change)
    backend = load_text(folder)
    assert backend.memory_bytes > 0
    backend.close()


def test_transformers_own_report_refuses_what_would_run_random(originals, tmp_path, monkeypatch):
    """The second line: were the check before the build to miss a renaming, transformers' own
    account of the load still stops a model that would run with random weights."""
    monkeypatch.setattr(transformers_text, "check_transformers_folder", lambda *a, **k: 0)
    folder = variant(
        originals["gpt2"],
        tmp_path / "pruned",
        weights=lambda s: {k: v for k, v in s.items() if k != "transformer.ln_f.bias"},
    )
    message = refusal(load_text, folder)
    assert "lack 1 of the" in message and "(transformer.ln_f.bias)" in message


def test_the_runner_reports_the_refusal_as_one_sentence_and_carries_on(originals, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(originals["gpt2"], root / "good")
    variant(originals["gpt2"], root / "deep", {"n_layer": 200_000})
    runner = Runner(ModelRegistry([(root, "user")]))
    job = dict(prompt="The quiet river", max_new_tokens=3, seed=1)
    one_sentence_failure(run(runner, TextJob(model="deep", **job)), "model file", ["config.json", "deep"])
    assert finished(run(runner, TextJob(model="good", **job))).text is not None


# -- a diffusers pipeline ----------------------------------------------------------------------------------


def load_image(folder: Path):
    return DiffusersImageBackend.load(SimpleNamespace(path=folder, format="diffusers"), "cpu", "float32")


def without_first(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != min(state)}


@pytest.mark.parametrize("part", ["unet", "vae", "text_encoder"])
def test_a_component_lacking_a_tensor_is_refused_naming_it(originals, tmp_path, part, never_built):
    [weights] = (originals["sd"] / part).glob("*.safetensors")
    names = names_in(weights)
    folder = variant(originals["sd"], tmp_path / "pruned", weights=without_first, part=part)
    message = refusal(load_image, folder)
    assert message.startswith(f"The weights in {folder / part} lack 1 of the {len(names)} tensors")
    assert f"({names[0]})" in message


def test_a_unet_holding_none_of_its_tensors_is_refused_with_how_many(originals, tmp_path, never_built):
    folder = variant(
        originals["sd"], tmp_path / "other", weights=lambda s: {f"x.{k}": v for k, v in s.items()}, part="unet"
    )
    needed = len(names_in(originals["sd"] / "unet" / "diffusion_pytorch_model.safetensors"))
    assert f"lack {needed} of the {needed} tensors its config.json describes" in refusal(load_image, folder)


def test_an_extra_unet_tensor_is_refused_by_name(originals, tmp_path, never_built):
    folder = variant(
        originals["sd"], tmp_path / "extra", weights=lambda s: {**s, "extra.weight": torch.zeros(3)}, part="unet"
    )
    assert "hold 1 tensor its config.json does not describe (extra.weight)" in refusal(load_image, folder)


def test_a_unet_config_of_100000_layers_per_block_stops_being_built_at_once(originals, tmp_path, never_built):
    folder = variant(originals["sd"], tmp_path / "deep", {"layers_per_block": 100_000}, part="unet")
    assert refusal(load_image, folder).startswith(
        f"The config.json in {folder / 'unet'} describes a model of more than"
    )


def test_weights_left_on_the_meta_device_are_refused_with_how_many(originals, tmp_path, monkeypatch):
    """The second line: were the check before the build to pass a folder, what diffusers leaves
    without data is refused by count, not met later as "Cannot copy out of meta tensor"."""
    monkeypatch.setattr(diffusers_image, "check_diffusers_folder", lambda *a, **k: None)
    folder = variant(originals["sd"], tmp_path / "pruned", weights=without_first, part="vae")
    vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(str(folder / "vae")))
    total = len(list(vae.named_parameters())) + len(list(vae.named_buffers()))
    assert f"The weights in {folder / 'vae'} lack 1 of the {total} tensors" in refusal(load_image, folder)


def test_the_single_file_check_counts_what_a_component_lacks():
    from studio.engine.backends.diffusion.single_file_pipeline import check_all_weights_loaded

    vae = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, device="meta"))
    with pytest.raises(ModelFileError) as info:
        pipe = SimpleNamespace(components={"vae": vae, "tokenizer": None})
        check_all_weights_loaded(pipe, Path("m.safetensors"), "sd15")
    assert info.value.message == (
        "m.safetensors has no weights for 2 of its vae's 4 tensors (1.bias, 1.weight): it "
        "is not a complete Stable Diffusion 1.x checkpoint."
    )
