"""The principal basis and folding it into Linear layers: the shipped networks compute exactly what
the trained ones did, in the new coordinates."""

from __future__ import annotations

import torch

from studio.training.images import fold_basis_into_input, fold_basis_into_output, principal_basis


def _latents(n=400, d=6):
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(d, d, generator=g) * torch.linspace(3, 0.2, d)[:, None]
    return torch.randn(n, d, generator=g) @ mix + torch.linspace(-1, 1, d)


def test_basis_orders_directions_by_variance_and_whitens():
    z = _latents()
    basis = principal_basis(z)
    u = (z - basis["mean"]) @ basis["components"].T / basis["sigma"]
    assert torch.allclose(u.mean(0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(u.std(0), torch.ones(6), atol=1e-4)
    assert (basis["sigma"][:-1] >= basis["sigma"][1:]).all()


def test_basis_of_fewer_latents_than_dimensions_stays_finite():
    basis = principal_basis(_latents(n=3, d=6))
    assert basis["components"].shape == (6, 6) and torch.isfinite(basis["sigma"]).all() and (basis["sigma"] > 0).all()


def test_folding_keeps_what_the_networks_compute():
    z = _latents()
    basis = principal_basis(z)
    decoder_in = torch.nn.Linear(6, 5).double()
    encoder_out = torch.nn.Linear(4, 6).double()
    folded_in, folded_out = torch.nn.Linear(6, 5).double(), torch.nn.Linear(4, 6).double()
    folded_in.load_state_dict(decoder_in.state_dict())
    folded_out.load_state_dict(encoder_out.state_dict())
    fold_basis_into_input(folded_in, basis)
    fold_basis_into_output(folded_out, basis)
    with torch.no_grad():
        u = ((z.double() - basis["mean"].double()) @ basis["components"].double().T) / basis["sigma"].double()
        assert torch.allclose(folded_in(u), decoder_in(z.double()), atol=1e-4)  # decoder: u in, same output
        h = torch.randn(10, 4, dtype=torch.float64)
        raw = encoder_out(h)
        expected = ((raw - basis["mean"].double()) @ basis["components"].double().T) / basis["sigma"].double()
        assert torch.allclose(folded_out(h), expected, atol=1e-4)  # encoder: gives u for the same input
