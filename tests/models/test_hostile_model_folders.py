"""One bad file never takes the studio down: whatever sits in a models folder (JSON too deep or
with an endless number, a named pipe under a weights file's name, a folder linked in from
elsewhere, a broken LoRA header, `~nosuchuser` in a path), the scan lists it as unusable with one
sentence naming the file, and lists every other model beside it."""

import contextlib
import json
import os
import signal
import struct

import pytest

from studio.core.errors import ModelFileError, ModelNotFound, StudioError
from studio.models import formats
from studio.models.registry import ModelInfo, ModelRegistry, default_roots
from studio.models.safe_files import check_safetensors, model_file

from fake_models import write_fake_model

DEEP = "[" * 200_000 + "]" * 200_000  # past the JSON parser's recursion limit
HUGE = "9" * 5000  # past Python's 4300-digit limit for int()
NO_SUCH_USER = "~no-such-user-for-studio-tests"
LORA_KEY = "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"


@contextlib.contextmanager
def never_hangs(seconds=20):
    """Turn a read that would block forever (a named pipe opened for reading) into a failure."""

    def hung(signum, frame):
        raise AssertionError("the studio opened a named pipe and waited for a writer")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write_safetensors(path, header, data_bytes):
    raw = json.dumps(header).encode() if isinstance(header, dict) else header
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * data_bytes)
    return path


def scan(models):
    """The registry over the sandboxed user folder, with a good model beside the bad one."""
    write_fake_model(models / "good", "image")
    return ModelRegistry()


def the_problem(registry, name):
    assert "good" in {m.id for m in registry.models()}, "the good model beside the bad one must still be listed"
    assert name not in {m.id for m in registry.models()}
    [problem] = [p for p in registry.problems if p.path.name == name]
    assert "\n" not in problem.message and problem.message.endswith(".")
    return problem.message


@pytest.fixture
def models(sandbox_dirs):
    return sandbox_dirs / "models"


def make_text(folder, config_text):
    folder.mkdir()
    (folder / "config.json").write_text(config_text)
    (folder / "tokenizer.json").write_text("{}")
    return folder


def make_diffusers(folder, index_text="{}"):
    for part in ("unet", "vae"):
        (folder / part).mkdir(parents=True)
        (folder / part / "config.json").write_text("{}")
    (folder / "model_index.json").write_text(index_text)
    return folder


# 1. JSON no parser can read, and `~nosuchuser`


@pytest.mark.parametrize(
    "where, text",
    [
        ("config.json", '{"vocab_size": ' + HUGE + "}"),
        ("config.json", '{"layers": ' + DEEP + "}"),
        ("studio.json", '{"format": "fake", "kind": "image", "seed": ' + HUGE + "}"),
        ("studio.json", '{"format": "fake", "kind": "image", "x": ' + DEEP + "}"),
        ("model_index.json", '{"_class_name": ' + DEEP + "}"),
        ("model_index.json", '{"_class_name": "StableDiffusionPipeline", "n": ' + HUGE + "}"),
    ],
)
def test_json_no_parser_can_read_makes_one_unusable_model(models, where, text):
    folder = make_diffusers(models / "bad") if where == "model_index.json" else make_text(models / "bad", "{}")
    (folder / where).write_text(text)
    message = the_problem(scan(models), "bad")
    assert message.startswith(f"{folder / where} is not valid JSON (")


def test_a_safetensors_header_with_an_endless_number_is_unusable(models):
    header = '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, ' + HUGE + "]}}"
    write_safetensors(models / "bad.safetensors", header.encode(), 4)
    assert the_problem(scan(models), "bad.safetensors").startswith("bad.safetensors is not a valid safetensors file")


def test_the_export_check_says_why_for_a_model_index_it_cannot_read(models):
    """The window asks "can this be exported?" of the model it shows; a model_index.json that broke
    after the scan must be a sentence there, not an exception in the window."""
    from studio.engine.export.onnx_export import check_exportable

    folder = make_diffusers(models / "sd")
    model = ModelInfo(id="sd", kind="image", format="diffusers", path=folder, source="user")
    (folder / "model_index.json").write_text('{"_class_name": ' + DEEP + "}")
    with pytest.raises(StudioError, match="model_index.json is not valid JSON"):
        check_exportable(model)


def test_a_settings_folder_of_an_unknown_user_is_unusable_and_the_rest_is_listed(models, tmp_path):
    registry = ModelRegistry(default_roots([f"{NO_SUCH_USER}/models"]))
    write_fake_model(models / "good", "image")
    registry.refresh()
    assert [m.id for m in registry.models()] == ["good"]
    [problem] = registry.problems
    assert problem.source == "settings" and NO_SUCH_USER in problem.message


def test_an_unknown_user_in_the_models_folder_or_a_model_path_is_one_sentence(monkeypatch, sandbox_dirs):
    write_fake_model(sandbox_dirs / "embedded" / "shipped", "image")
    monkeypatch.setenv("STUDIO_MODELS_DIR", f"{NO_SUCH_USER}/models")
    registry = ModelRegistry()
    assert [m.id for m in registry.models()] == ["shipped"]
    assert [p.source for p in registry.problems] == ["user"]
    with pytest.raises(ModelNotFound, match=NO_SUCH_USER):
        registry.resolve(f"{NO_SUCH_USER}/model.safetensors")


# 3. A component folder linked in from elsewhere


def test_a_component_folder_linked_from_outside_cannot_hide_python_code(models, tmp_path):
    folder = make_diffusers(models / "sd")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text("{}")
    (elsewhere / "pipeline.py").write_text("import os\n")
    (folder / "unet" / "config.json").unlink()
    (folder / "unet").rmdir()
    (folder / "unet").symlink_to(elsewhere, target_is_directory=True)
    message = the_problem(scan(models), "sd")
    assert "unet" in message and "outside the model folder" in message


def test_a_folder_linked_inside_the_model_folder_is_fine(models):
    folder = make_diffusers(models / "sd")
    (folder / "vae_copy").symlink_to(folder / "vae", target_is_directory=True)
    assert "sd" in {m.id for m in scan(models).models()}


# 4. A LoRA whose header the library would refuse


@pytest.mark.parametrize(
    "entry, data_bytes, why",
    [
        ({"shape": [2], "data_offsets": [0, 8]}, 8, "data type"),
        ({"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}, 8, "data type"),
        ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, 8, "does not fill"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [-8, 8]}, 8, "offsets"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}, 8, "does not start"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, 16, "after its last tensor"),
    ],
)
def test_a_lora_with_a_malformed_header_is_unusable_when_listed(models, entry, data_bytes, why):
    write_safetensors(models / "style.safetensors", {LORA_KEY: entry}, data_bytes)
    registry = scan(models)
    assert not registry.models("lora")
    message = the_problem(registry, "style.safetensors")
    assert message.startswith("style.safetensors is not a valid safetensors file") and why in message


def test_a_well_formed_lora_is_still_listed(models):
    write_safetensors(
        models / "style.safetensors",
        {LORA_KEY: {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}, "__metadata__": {"ss_network_dim": "2"}},
        8,
    )
    assert [m.id for m in scan(models).models("lora")] == ["style"]


# 5. Named pipes under the names of model files


@pytest.mark.parametrize(
    "where",
    [
        "model.safetensors",  # a single-file checkpoint or LoRA in the models folder
        "model.onnx",
        "text/config.json",
        "text/model.safetensors",
        "sd/unet/diffusion_pytorch_model.safetensors",
        "sd/unet/config.json",
    ],
)
def test_a_named_pipe_under_a_model_files_name_is_unusable_and_never_opened(models, where):
    make_text(models / "text", "{}")
    make_diffusers(models / "sd")
    pipe = models / where
    if pipe.exists():
        pipe.unlink()
    os.mkfifo(pipe)
    with never_hangs():
        message = the_problem(scan(models), where.split("/")[0])
    assert "named pipe" in message and pipe.name in message
    assert {"text", "sd", "good"} - {where.split("/")[0]} <= {m.id for m in ModelRegistry().models()}


def test_loading_refuses_a_named_pipe_without_opening_it(tmp_path):
    pipe = tmp_path / "decoder.safetensors"
    os.mkfifo(pipe)
    (tmp_path / "studio.json").write_text("{}")
    with never_hangs():
        with pytest.raises(ModelFileError, match=r"^decoder\.safetensors cannot be read \(it is a named pipe"):
            check_safetensors(pipe)
        with pytest.raises(ModelFileError, match="named pipe"):
            model_file(tmp_path, "decoder.safetensors", "decoder")
        with pytest.raises(ModelFileError, match="named pipe"):
            formats.read_json(pipe)


# 6. An ONNX text model without its tokenizer


def test_an_onnx_text_model_without_tokenizer_files_says_so(models):
    folder = models / "chat-onnx"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "model.onnx").write_bytes(b"onnx")
    registry = scan(models)
    assert not registry.models("latent")
    assert "no tokenizer files" in the_problem(registry, "chat-onnx")


# 2. `studio models` prints what the model's makers wrote, never their terminal escapes


def test_studio_models_prints_no_terminal_escapes_from_names_or_manifests(models, capsys):
    from studio.cli import main

    clipboard = "\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: set the clipboard
    write_fake_model(models / "paint\x1b[2J", "image", licence=f"MIT{clipboard}", title="t\rx")
    write_fake_model(models / "plain", "text", licence="Apache-2.0")
    (models / "broken\x1b[31m").mkdir()
    (models / "broken\x1b[31m" / "studio.json").write_text(json.dumps({"format": f"fake{clipboard}"}))
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    for control in ("\x1b", "\x07", "\r"):
        assert control not in out and control not in err
    assert "plain" in out and "paint" in out and "MIT" in out
    assert err.count("unusable: ") == 1 and "broken" in err


def test_studio_models_lists_the_rest_when_settings_name_an_unknown_user(models, sandbox_dirs, capsys):
    from studio.cli import main

    write_fake_model(models / "good", "image")
    (sandbox_dirs / "config" / "settings.json").write_text(json.dumps({"model_dirs": [f"{NO_SUCH_USER}/models"]}))
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    assert "good" in out
    assert err.startswith("unusable: ") and NO_SUCH_USER in err
