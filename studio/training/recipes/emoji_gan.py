"""emoji-gan: a DCGAN-class generator of 64 px Noto emoji with a 128-d latent, the same interface
as emoji-vae (a studio-latent decoder) but no encoder.

Generator: our LatentDecoder (BatchNorm). Discriminator (not shipped): 4x4 stride-2 convolutions
with BatchNorm and LeakyReLU. Non-saturating loss, Adam(2e-4, β1 0.5), and the same random
translation applied to real and generated images before the discriminator sees them (a
DiffAugment-style trick that keeps a discriminator from memorising 3,000 images). The shipped
weights are an exponential moving average of the generator's.

Latent axes: GANSpace-style. The generator's first layer is linear, so the principal directions
of its output for z ~ N(0, I) are the right singular vectors of its weight. They are folded in,
so axis i is the i-th direction (most change first) and N(0, I) is still the generator's prior."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from studio.models.nets import LatentDecoder
from studio.training.images import batch, fold_basis_into_input, load_images, save_grid, to_tensor
from studio.training.loop import Recipe, RunReport
from studio.training.model_card import latent_card
from studio.training.shipping import finish_folder, save_fp16, write_json

LATENT_DIM, IMAGE_SIZE = 128, 64
LR, BATCH, EMA_DECAY = 2e-4, 64, 0.999
SHIFT = 4  # pixels of random translation (DiffAugment)


class Discriminator(nn.Module):
    def __init__(self, base: int = 32, image_size: int = IMAGE_SIZE):
        super().__init__()
        layers: list[nn.Module] = []
        cin, channels, size = 3, base, image_size
        while size > 4:
            layers += [nn.Conv2d(cin, channels, 4, stride=2, padding=1, bias=False)]
            if cin != 3:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.LeakyReLU(0.2))
            cin, channels, size = channels, min(channels * 2, base * 8), size // 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * 16, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image * 2 - 1).squeeze(1)


def translate(x: torch.Tensor, shift: int = SHIFT) -> torch.Tensor:
    """Shift each image by up to `shift` pixels, padding with white (the emoji background)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=1.0)
    dx = torch.randint(0, 2 * shift + 1, (n,)).tolist()
    dy = torch.randint(0, 2 * shift + 1, (n,)).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


class EmojiGanRecipe(Recipe):
    name = "emoji-gan"
    default_minutes = 12.0

    def prepare(self) -> None:
        base = 8 if self.options.tiny else 32
        last = torch.channels_last
        self.decoder_config = {"base_channels": base, "norm": "batch", "convs": 1}
        # torch's overloads of Module.to omit memory_format, which it takes.
        generator = LatentDecoder(LATENT_DIM, IMAGE_SIZE, base, norm="batch", convs=1)
        self.generator = generator.to(self.device, memory_format=last)  # pyright: ignore[reportCallIssue]
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.discriminator = Discriminator(base).to(self.device, memory_format=last)  # pyright: ignore[reportCallIssue]
        self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=LR, betas=(0.5, 0.999))
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=LR, betas=(0.5, 0.999))
        data = load_images(self.options, IMAGE_SIZE)
        self.images = to_tensor(data.train().images, self.device).contiguous(memory_format=last)
        self.val_images = to_tensor(data.validation().images, self.device)
        self.batch = min(BATCH, self.images.shape[0])

    def modules(self):
        return {
            "generator": self.generator,
            "ema": self.ema,
            "discriminator": self.discriminator,
            "g_opt": self.g_opt,
            "d_opt": self.d_opt,
        }

    def train_step(self, progress: float) -> dict[str, float]:
        self.generator.train()
        self.discriminator.train()
        _, real = batch(self.images, self.batch)
        z = torch.randn(self.batch, LATENT_DIM, device=self.device)
        fake = self.generator(z)
        d_real = self.discriminator(translate(real))
        d_fake = self.discriminator(translate(fake.detach()))
        d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()
        g_loss = F.softplus(-self.discriminator(translate(fake))).mean()
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        with torch.no_grad():
            updates = self.extra.get("ema_updates", 0)
            decay = min(EMA_DECAY, (1 + updates) / (10 + updates))
            self.extra["ema_updates"] = updates + 1
            for ema, live in zip(self.ema.parameters(), self.generator.parameters()):
                ema.lerp_(live, 1 - decay)
            for ema, live in zip(self.ema.buffers(), self.generator.buffers()):
                ema.copy_(live)
        return {"d": d_loss.item(), "g": g_loss.item()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Nearest-neighbour distance of samples to the training set, in pixels: far from 0 means
        the generator does not just replay training images (the card's FD-emoji comes from
        `studio eval`)."""
        g = torch.Generator().manual_seed(0)
        samples = self.ema(torch.randn(64, LATENT_DIM, generator=g).to(self.device)).flatten(1)
        reals = self.images.flatten(1)
        nearest = torch.cdist(samples, reals).min(1).values / samples.shape[1] ** 0.5
        return {"sample_nearest_train_rms": nearest.mean().item()}

    @torch.no_grad()
    def export(self, folder: Path, report: RunReport) -> None:
        generator = copy.deepcopy(self.ema).cpu().eval()
        weight = generator.project.weight.double()
        _, strength, vh = torch.linalg.svd(weight, full_matrices=False)
        basis = {"mean": torch.zeros(LATENT_DIM), "components": vh.float(), "sigma": torch.ones(LATENT_DIM)}
        fold_basis_into_input(generator.project, basis)
        save_fp16(folder / "decoder.safetensors", generator.state_dict())
        save_fp16(folder / "raw_basis.safetensors", {**basis, "strength": strength.float()})
        write_json(
            folder / "studio.json",
            {
                "format": "studio-latent",
                "architecture": "decoder-v1",
                "kind": "latent",
                "latent_dim": LATENT_DIM,
                "image_size": IMAGE_SIZE,
                "decoder": self.decoder_config,
                "weights": "decoder.safetensors",
                "latent_basis": "principal",
                "raw_basis": "raw_basis.safetensors",
                "title": "Emoji GAN",
                "licence": "Apache-2.0",
                "description": "A 128-d DCGAN-class generator of Noto emoji, 64 px. Axes ordered GANSpace-style.",
            },
        )
        self.sample_sheet(folder / "samples.png", generator)
        latent_card(
            folder,
            report,
            title="emoji-gan",
            kind="GAN generator (no encoder)",
            architecture=f"DCGAN-class generator, {sum(p.numel() for p in generator.parameters()) / 1e6:.2f} M "
            "parameters (EMA weights), 128-d latent, BatchNorm, nearest-upsample convolutions",
            basis_note="Latent axes are the generator's principal directions, GANSpace-style: the right "
            "singular vectors of its first (linear) layer, largest effect first. The prior is "
            "still N(0, I) in these axes.",
            sigma=strength / strength[0],
            sigma_label="Relative strength (singular value) of the first eight axes",
            limitations="Small and trained for minutes on a CPU: colours and textures are emoji-like, "
            "shapes are often incoherent. It knows only the Noto style.",
        )
        finish_folder(folder)

    @torch.no_grad()
    def sample_sheet(self, path: Path, generator: LatentDecoder) -> None:
        g = torch.Generator().manual_seed(1)
        samples = generator(torch.randn(32, LATENT_DIM, generator=g))
        sweeps = []
        for axis in range(4):
            u = torch.randn(1, LATENT_DIM, generator=g).repeat(8, 1)
            u[:, axis] = torch.linspace(-3, 3, 8)
            sweeps.append(generator(u))
        save_grid(path, torch.cat([samples, *sweeps]), columns=8)
