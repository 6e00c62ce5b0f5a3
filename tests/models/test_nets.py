"""Loading our own decoder weights: stored dtype in, float32 network out."""

import json

import torch
from safetensors.torch import save_file

from studio.models.nets import LatentDecoder, load_decoder, load_weights


def test_half_precision_weights_load_as_stored_and_decode_in_float32(tmp_path):
    torch.manual_seed(0)
    net = LatentDecoder(latent_dim=4, image_size=16, base_channels=2)
    save_file({k: v.half() for k, v in net.state_dict().items()}, str(tmp_path / "decoder.safetensors"))
    manifest = {
        "format": "studio-latent",
        "latent_dim": 4,
        "image_size": 16,
        "decoder": {"base_channels": 2},
        "weights": "decoder.safetensors",
    }
    (tmp_path / "studio.json").write_text(json.dumps(manifest))

    weights = load_weights(tmp_path / "decoder.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}  # as stored, as the docstring says
    assert {t.device.type for t in weights.values()} == {"cpu"}

    loaded = load_decoder(tmp_path, manifest)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, net.state_dict()[key].half().float())
    assert loaded(torch.zeros(1, 4)).dtype == torch.float32
