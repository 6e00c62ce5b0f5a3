"""emoji-sd: a miniature Stable Diffusion, in diffusers format, trained from scratch on Noto emoji
and their CLDR labels and tags.

The same parts as SD 1.x, just small: AutoencoderKL (64 px <-> 8x8x8 latent), CLIPTextModel with
its own CLIP-style BPE tokenizer, UNet2DConditionModel with cross-attention, and a DPM++ 2M
scheduler, saved with `StableDiffusionPipeline.save_pretrained`. So `DiffusionPipeline
.from_pretrained(folder, local_files_only=True)` loads it, the studio's diffusers backend serves
it like a user's SD model, and img2img / inpainting pipelines can be built from its components.

Training runs in two phases within the time budget: the autoencoder first (VAE_SHARE of the
time; L1 + MSE with a tiny KL, as in SD), then the UNet and the text encoder together on the
frozen autoencoder's latents (ε-prediction, min-SNR weighting, captions dropped 10 % of the time
for classifier-free guidance, EMAs of the UNet and the text encoder shipped)."""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import cast

import torch

from studio.models.tokenizer_files import write_clip_text_encoder_for_older_readers, write_legacy_tokenizer_files
from studio.training.images import batch, load_images, save_grid, to_tensor
from studio.training.loop import Recipe, RunReport
from studio.training.model_card import EMOJI_DATA, write_card
from studio.training.shipping import finish_folder, write_json

# 4 latent channels, as in SD 1.x: diffusers' inpainting pipeline accepts only 4- or 9-channel UNets
IMAGE_SIZE, LATENT_CHANNELS, MAX_TOKENS = 64, 4, 32
VAE_SHARE = 0.25  # the autoencoder converges early; the UNet gains from every minute
VAE_LR, UNET_LR = 1e-3, 1e-3
VAE_BATCH, UNET_BATCH = 32, 64
KL_WEIGHT = 1e-6
CAPTION_DROP = 0.1
MIN_SNR = 5.0
EMA_DECAY = 0.999
SAMPLE_PROMPTS = (
    "red apple",
    "grinning face",
    "dog face",
    "rocket",
    "red heart",
    "pizza",
    "soccer ball",
    "waving hand",
)
DEFAULTS = {"steps": 20, "guidance_scale": 5.0}


def cosine(progress: float, floor: float = 0.05) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def train_clip_tokenizer(texts: list[str], vocab_size: int):
    """A CLIP-style BPE (lower-cased, words end in </w>, byte-level alphabet, so any text
    encodes) trained on our captions, as a transformers CLIPTokenizer."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    words = Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")  # CLIP's own split
    backend = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    backend.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(words, behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    model = json.loads(backend.to_str())["model"]
    vocab = dict(model["vocab"])
    for char in pre_tokenizers.ByteLevel.alphabet():  # every byte, mid-word and word-final
        for token in (char, char + "</w>"):
            vocab.setdefault(token, len(vocab))
    # transformers annotates merges as strings; the tokenizers BPE it feeds them to takes (left, right) pairs.
    pairs = [tuple(m) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=MAX_TOKENS)  # pyright: ignore[reportArgumentType]


def caption(label: str, tags: list[str], rng: random.Random) -> str:
    """The label, then up to four of its tags in random order, so both "red apple" and
    "red apple, fruit, red" are in distribution."""
    words = set(label.split())
    extra = [t for t in tags if t not in words]
    rng.shuffle(extra)
    return ", ".join([label] + extra[: rng.randint(0, min(4, len(extra)))])


class EmojiSdRecipe(Recipe):
    name = "emoji-sd"
    default_minutes = 40.0

    def prepare(self) -> None:
        # diffusers' public names: its lazy __init__ re-exports them in a way pyright reads as private.
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel  # pyright: ignore[reportPrivateImportUsage]
        from transformers import CLIPTextConfig, CLIPTextModel

        tiny = self.options.tiny
        data = load_images(self.options, IMAGE_SIZE)
        self.data = data.train()
        self.val = data.validation()
        self.images = to_tensor(self.data.images, self.device)
        self.rng = random.Random(self.options.seed)
        # BPE training is not deterministic across processes (hash-map order decides ties), so the
        # tokenizer is trained once per run and kept in the checkpoint (see `restored`).
        self.tokenizer = train_clip_tokenizer(
            [f"{label} {' '.join(tags)}" for label, tags in zip(data.labels, data.tags)], 300 if tiny else 3000
        )
        self.extra["tokenizer"] = self.tokenizer.backend_tokenizer.to_str()
        ch = (8, 8, 16, 16) if tiny else (16, 32, 64, 64)
        # diffusers annotates these per-block tuples as Tuple[int] (one block); they take one entry per block.
        self.vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=LATENT_CHANNELS,
            block_out_channels=ch,  # pyright: ignore[reportArgumentType]
            down_block_types=("DownEncoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
            up_block_types=("UpDecoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=IMAGE_SIZE,
        ).to(self.device)  # pyright: ignore[reportArgumentType] - @wraps(Module.to) hides the binding
        width = 32 if tiny else 128
        self.text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(self.tokenizer),
                hidden_size=width,
                intermediate_size=width * 4,
                num_hidden_layers=1 if tiny else 3,
                num_attention_heads=4,
                max_position_embeddings=MAX_TOKENS,
                # transformers serves these through a catch-all __getattr__ typed as any attribute's
                # value; for a tokenizer's special tokens they are ids.
                bos_token_id=cast(int, self.tokenizer.bos_token_id),
                eos_token_id=cast(int, self.tokenizer.eos_token_id),
                pad_token_id=cast(int, self.tokenizer.pad_token_id),
                projection_dim=width,
            )
        ).to(self.device)  # pyright: ignore[reportArgumentType] - @wraps(Module.to) hides the binding
        unet_ch = (16, 32) if tiny else (64, 128)
        self.unet = UNet2DConditionModel(
            sample_size=IMAGE_SIZE // 8,
            in_channels=LATENT_CHANNELS,
            out_channels=LATENT_CHANNELS,
            block_out_channels=unet_ch,
            layers_per_block=1,  # 1.5x the steps of 2 per CPU minute
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=width,
            attention_head_dim=8,
            norm_num_groups=8,
        ).to(self.device)  # pyright: ignore[reportArgumentType] - @wraps(Module.to) hides the binding
        # EMAs of both networks the UNet phase trains: the shipped pair must match.
        self.ema = copy.deepcopy(self.unet).eval().requires_grad_(False)
        self.ema_text = copy.deepcopy(self.text_encoder).eval().requires_grad_(False)
        self.noise = DDPMScheduler(
            num_train_timesteps=1000,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="epsilon",
            steps_offset=1,
            clip_sample=False,
        )
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=VAE_LR, weight_decay=0.0)
        self.unet_opt = torch.optim.AdamW(
            [*self.unet.parameters(), *self.text_encoder.parameters()], lr=UNET_LR, weight_decay=0.01
        )
        self.latents: torch.Tensor | None = None  # (2N, 2, C, 8, 8): mean and std, plain and mirrored
        self.extra.setdefault("scaling_factor", 1.0)

    def modules(self):
        return {
            "vae": self.vae,
            "text_encoder": self.text_encoder,
            "unet": self.unet,
            "ema": self.ema,
            "ema_text": self.ema_text,
            "vae_opt": self.vae_opt,
            "unet_opt": self.unet_opt,
        }

    def restored(self) -> None:
        from tokenizers import Tokenizer

        self.tokenizer._tokenizer = Tokenizer.from_str(self.extra["tokenizer"])  # this run's own ids

    def train_step(self, progress: float) -> dict[str, float]:
        # Once the UNet phase has begun it never goes back (a resumed run with a bigger budget
        # would otherwise retrain the autoencoder under a UNet that learned its old latents).
        if progress < VAE_SHARE and not self.extra.get("unet_phase"):
            return self.vae_step(progress / VAE_SHARE)
        if self.latents is None:
            self.encode_dataset()
        return self.unet_step((progress - VAE_SHARE) / (1 - VAE_SHARE))

    # -- phase 1: the autoencoder -------------------------------------------------------------

    def vae_step(self, progress: float) -> dict[str, float]:
        for group in self.vae_opt.param_groups:
            group["lr"] = VAE_LR * cosine(progress)
        self.vae.train()
        _, x = batch(self.images, min(VAE_BATCH, self.images.shape[0]))
        x = x * 2 - 1
        # diffusers types encode() and decode() as returning a tuple too (when return_dict is False).
        posterior = self.vae.encode(x).latent_dist  # pyright: ignore[reportAttributeAccessIssue]
        recon = self.vae.decode(posterior.sample()).sample  # pyright: ignore[reportAttributeAccessIssue]
        l1, mse = (recon - x).abs().mean(), (recon - x).pow(2).mean()
        kl = posterior.kl().mean()
        loss = l1 + mse + KL_WEIGHT * kl
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.vae_opt.step()
        return {"vae_l1": l1.item(), "kl": kl.item()}

    @torch.no_grad()
    def encode_dataset(self) -> None:
        """Posterior mean and std of every training image and its mirror image, once, with the
        latent scale that makes them unit-variance (SD's scaling_factor)."""
        self.vae.eval()
        parts = []
        for images in (self.images, self.images.flip(3)):
            for i in range(0, images.shape[0], 128):
                # An output object (return_dict is True), which diffusers types as possibly a tuple.
                dist = self.vae.encode(images[i : i + 128] * 2 - 1).latent_dist  # pyright: ignore[reportAttributeAccessIssue]
                parts.append(torch.stack([dist.mean, dist.std], 1))
        self.latents = torch.cat(parts)
        if not self.extra.get("unet_phase"):  # a resumed run keeps the scale its UNet learned
            self.extra["scaling_factor"] = float(1.0 / self.latents[:, 0].std().item())
        self.extra["unet_phase"] = 1
        self.vae.requires_grad_(False)

    # -- phase 2: the UNet and text encoder ---------------------------------------------------

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    def unet_step(self, progress: float) -> dict[str, float]:
        for group in self.unet_opt.param_groups:
            group["lr"] = UNET_LR * cosine(progress) * min(1.0, progress * 50 + 0.02)  # 2 % warm-up
        self.unet.train()
        self.text_encoder.train()
        encoded = self.latents
        if encoded is None:
            raise RuntimeError("The UNet phase trains on the encoded dataset: call encode_dataset() first.")
        n = min(UNET_BATCH, encoded.shape[0])
        index = torch.randint(0, encoded.shape[0], (n,))
        stats = encoded[index.to(self.device)]
        latents = (stats[:, 0] + stats[:, 1] * torch.randn_like(stats[:, 1])) * self.extra["scaling_factor"]
        images = index % self.images.shape[0]  # mirrored copies share their image's words
        prompts = [
            "" if self.rng.random() < CAPTION_DROP else caption(self.data.labels[i], self.data.tags[i], self.rng)
            for i in images.tolist()
        ]
        noise = torch.randn_like(latents)
        steps = torch.randint(0, self.noise.config["num_train_timesteps"], (n,), device=self.device)
        # diffusers annotates timesteps as IntTensor (int32); any integer tensor indexes its schedule.
        noisy = self.noise.add_noise(latents, noise, steps)  # pyright: ignore[reportArgumentType]
        predicted = self.unet(noisy, steps, encoder_hidden_states=self.encode_text(prompts)).sample
        alpha = self.noise.alphas_cumprod.to(self.device)[steps]
        snr = alpha / (1 - alpha)
        weight = snr.clamp(max=MIN_SNR) / snr  # min-SNR-γ for ε-prediction: faster, steadier training
        loss = (weight * (predicted - noise).pow(2).mean((1, 2, 3))).mean()
        self.unet_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*self.unet.parameters(), *self.text_encoder.parameters()], 1.0)
        self.unet_opt.step()
        decay = min(EMA_DECAY, (1 + self.extra.get("ema_updates", 0)) / (10 + self.extra.get("ema_updates", 0)))
        self.extra["ema_updates"] = self.extra.get("ema_updates", 0) + 1
        with torch.no_grad():
            for ema_net, live_net in ((self.ema, self.unet), (self.ema_text, self.text_encoder)):
                for ema, live in zip(ema_net.parameters(), live_net.parameters()):
                    ema.lerp_(live, 1 - decay)
        return {"unet": loss.item()}

    # -- evaluation and export ----------------------------------------------------------------

    def pipeline(self):
        # diffusers' public names: its lazy __init__ re-exports them in a way pyright reads as private.
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline  # pyright: ignore[reportPrivateImportUsage]

        self.vae.register_to_config(scaling_factor=self.extra["scaling_factor"])  # saved in vae/config.json
        scheduler = DPMSolverMultistepScheduler.from_config(self.noise.config)  # "DPM++ 2M"
        return StableDiffusionPipeline(
            vae=self.vae.eval(),
            text_encoder=self.ema_text.eval(),
            tokenizer=self.tokenizer,
            unet=self.ema.eval(),
            # diffusers annotates these without the None it accepts (and the scheduler as an enum of names).
            scheduler=scheduler,  # pyright: ignore[reportArgumentType]
            safety_checker=None,  # pyright: ignore[reportArgumentType]
            feature_extractor=None,  # pyright: ignore[reportArgumentType]
            requires_safety_checker=False,
        )

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.latents is None:  # a run too short to reach phase 2 still gets its latent scale
            self.encode_dataset()
        self.vae.eval()
        val = to_tensor(self.val.images, self.device) if len(self.val) else self.images[:64]
        # Output objects (return_dict is True), which diffusers types as possibly tuples.
        posterior = self.vae.encode(val * 2 - 1).latent_dist  # pyright: ignore[reportAttributeAccessIssue]
        recon = self.vae.decode(posterior.mean).sample  # pyright: ignore[reportAttributeAccessIssue]
        mse = ((recon.clamp(-1, 1) + 1) / 2 - val).pow(2).mean().item()
        return {
            "vae_val_psnr_db": -10 * math.log10(max(mse, 1e-10)),
            "latent_scaling_factor": self.extra["scaling_factor"],
        }

    @torch.no_grad()
    def sample_sheet(self, path: Path, pipe) -> None:
        rows = []
        tiny = self.options.tiny  # tests: two rows, two steps
        for prompt in SAMPLE_PROMPTS[:2] if tiny else SAMPLE_PROMPTS:
            generator = [torch.Generator().manual_seed(s) for s in range(1, 7)]
            out = pipe(
                [prompt] * 6,
                num_inference_steps=2 if tiny else DEFAULTS["steps"],
                guidance_scale=DEFAULTS["guidance_scale"],
                generator=generator,
                output_type="pt",
            )
            rows.append(out.images.cpu())
        save_grid(path, torch.cat(rows), columns=6)

    def export(self, folder: Path, report: RunReport) -> None:
        pipe = self.pipeline()
        pipe.set_progress_bar_config(disable=True)
        self.sample_sheet(folder / "samples.png", pipe)
        pipe.to(torch.float16).save_pretrained(str(folder), safe_serialization=True)
        write_legacy_tokenizer_files(folder / "tokenizer", "CLIPTokenizer")
        write_clip_text_encoder_for_older_readers(folder / "text_encoder")
        pipe.to(torch.float32)
        write_json(
            folder / "studio.json",
            {
                "title": "Emoji SD (miniature Stable Diffusion)",
                "licence": "Apache-2.0",
                "defaults": DEFAULTS,
                "description": "A tiny text-to-image diffusion model of Noto emoji, 64x64.",
            },
        )
        params = {
            name: sum(p.numel() for p in m.parameters()) / 1e6
            for name, m in (("unet", self.ema), ("vae", self.vae), ("text_encoder", self.ema_text))
        }
        write_card(
            folder,
            "emoji-sd",
            summary="A miniature Stable Diffusion that draws 64×64 emoji from short English prompts "
            '("red apple", "grinning cat face"), trained from scratch by Studio\'s own code.',
            image="samples.png",
            sections=[
                (
                    "Model",
                    f"diffusers `StableDiffusionPipeline` layout: AutoencoderKL (64 px ↔ 8×8×{LATENT_CHANNELS} "
                    f"latent, {params['vae']:.2f} M), CLIPTextModel trained from scratch ({params['text_encoder']:.2f} M, "
                    f"{len(self.tokenizer)}-token CLIP-style BPE, {MAX_TOKENS} tokens; EMA weights), "
                    f"UNet2DConditionModel ({params['unet']:.2f} M, EMA weights), DPMSolverMultistepScheduler (DPM++ 2M). fp16 "
                    f"safetensors. Suggested: {DEFAULTS['steps']} steps, CFG {DEFAULTS['guidance_scale']}.",
                ),
                (
                    "Prompts",
                    'It knows the CLDR emoji names and keywords: "red apple", "dog face", "rocket", '
                    '"smiling face with heart-eyes", optionally followed by keywords ("red apple, fruit"). '
                    "Rows of the sample sheet: " + ", ".join(SAMPLE_PROMPTS) + " (seeds 1-6).",
                ),
                (
                    "Data and licence",
                    EMOJI_DATA + " Captions are the label plus up to four of its tags. "
                    "The weights are released under Apache-2.0, like the images.",
                ),
                (
                    "Limitations",
                    "Tiny and trained for minutes on a CPU: shapes and colours follow the prompt more "
                    "than details do; rare words are not understood; 64×64 only. Not a general "
                    "image model.",
                ),
            ],
            report=report,
            reproduce=f"studio train emoji-sd --minutes {round(report.seconds / 60)} --device {report.device}",
        )
        finish_folder(folder)
