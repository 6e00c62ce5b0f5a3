"""Discovery and format detection, from marker files alone."""

import json

import pytest

from studio.core.errors import ModelFileError, ModelNotFound
from studio.models import formats
from studio.models.registry import ModelRegistry, default_roots

from fake_models import write_fake_model


def make_diffusers(folder):
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": 64}))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [1, 2, 3, 4]}))
    return folder


def make_transformers(folder, **config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", **config}))
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_discovers_each_format_from_every_root(tmp_path, monkeypatch, sandbox_dirs):
    user = sandbox_dirs / "models"
    embedded = sandbox_dirs / "embedded"
    extra = tmp_path / "extra"
    make_diffusers(user / "sd")
    make_transformers(user / "prose")
    write_fake_model(embedded / "demo", "latent")
    (extra).mkdir()
    (extra / "decoder.onnx").write_bytes(b"onnx")
    registry = ModelRegistry(default_roots([extra]))
    found = {m.id: (m.kind, m.format, m.source) for m in registry.models()}
    assert found == {
        "sd": ("image", "diffusers", "user"),
        "prose": ("text", "transformers", "user"),
        "demo": ("latent", "fake", "embedded"),
        "decoder": ("latent", "onnx", "settings"),
    }
    assert registry.resolve("sd").default_size == 512  # 64 latent x 2**3
    assert registry.resolve("sd").size_bytes > 0


def test_first_root_wins_on_a_clash(sandbox_dirs):
    write_fake_model(sandbox_dirs / "embedded" / "same", "image")
    write_fake_model(sandbox_dirs / "models" / "same", "text")
    assert ModelRegistry().resolve("same").source == "embedded"


def test_resolve_by_path_and_unknown_id(tmp_path):
    folder = write_fake_model(tmp_path / "anywhere", "image")
    registry = ModelRegistry()
    assert registry.resolve(str(folder)).source == "path"
    with pytest.raises(ModelNotFound, match="studio models"):
        registry.resolve("nothing-here")


def test_unusable_folders_are_reported_not_listed(sandbox_dirs):
    user = sandbox_dirs / "models"
    make_transformers(user / "remote-code", auto_map={"AutoModel": "x.y"})
    (user / "weights.ckpt").write_bytes(b"\x80\x02")
    (user / "badjson").mkdir()
    (user / "badjson" / "studio.json").write_text("{oops")
    registry = ModelRegistry()
    assert registry.models() == []
    messages = {p.path.name: p.message for p in registry.problems}
    assert "custom Python code" in messages["remote-code"]
    assert "pickle" in messages["weights.ckpt"]
    assert "not valid JSON" in messages["badjson"]
    assert "models" in registry.where_to_put_models()


def test_pickle_files_are_refused_with_a_sentence(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="pickle"):
        formats.detect(path)


def test_a_refused_model_asked_for_by_id_says_why(sandbox_dirs):
    make_transformers(sandbox_dirs / "models" / "remote-code", auto_map={"AutoModel": "x.y"})
    with pytest.raises(ModelFileError, match="custom Python code"):
        ModelRegistry().resolve("remote-code")


def test_an_unreadable_entry_is_a_problem_not_a_crash(sandbox_dirs, monkeypatch):
    write_fake_model(sandbox_dirs / "models" / "good", "image")
    write_fake_model(sandbox_dirs / "models" / "locked", "image")
    real_detect = formats.detect

    def detect(path):
        if path.name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_detect(path)

    monkeypatch.setattr(formats, "detect", detect)
    registry = ModelRegistry()
    assert [m.id for m in registry.models()] == ["good"]
    assert "cannot be read" in registry.problems[0].message


def test_latent_size_comes_from_the_manifest_top_level_or_decoder_part(tmp_path):
    registry = ModelRegistry()
    top = write_fake_model(tmp_path / "top", "latent", latent_dim=12)
    part = write_fake_model(tmp_path / "part", "latent", decoder={"latent_dim": 7})
    silent = write_fake_model(tmp_path / "silent", "latent")
    assert registry.resolve(str(top)).latent_dim == 12
    assert registry.resolve(str(part)).latent_dim == 7
    assert registry.resolve(str(silent)).latent_dim is None


def test_the_users_own_models_come_before_the_embedded_defaults(tmp_path):
    from studio.models.registry import ModelRegistry

    from fake_models import write_fake_model

    embedded, user = tmp_path / "embedded", tmp_path / "user"
    for name in ("emoji-gan", "emoji-vae", "aaa-latent"):
        write_fake_model(embedded / name, "latent", latent_dim=4, image_size=16)
    registry = ModelRegistry([(embedded, "embedded"), (user, "user")])
    assert [m.id for m in registry.models("latent")] == ["emoji-vae", "aaa-latent", "emoji-gan"]
    write_fake_model(user / "mine", "latent", latent_dim=4, image_size=16)
    registry.refresh()
    assert [m.id for m in registry.models("latent")][0] == "mine"


def test_a_studio_json_without_a_format_adds_metadata_to_a_diffusers_folder(tmp_path):
    import json

    from studio.bench.tiny_models import build_tiny_diffusers
    from studio.models.registry import inspect

    folder = build_tiny_diffusers(tmp_path / "sd")
    (folder / "studio.json").write_text(json.dumps({"title": "Tiny SD", "licence": "MIT"}))
    model = inspect(folder, "user")
    assert (model.kind, model.format, model.title, model.licence) == ("image", "diffusers", "Tiny SD", "MIT")


def test_a_text_model_knows_its_context_length_from_its_config(tmp_path):
    import json

    from studio.bench.tiny_models import build_tiny_gpt2
    from studio.models.registry import inspect

    folder = build_tiny_gpt2(tmp_path / "tiny-gpt2")
    info = inspect(folder, "path")
    assert info.context_length == json.loads((folder / "config.json").read_text())["n_positions"]
    (folder / "config.json").write_text("{broken")
    assert info.context_length is None  # an unreadable config: unknown, not a crash
