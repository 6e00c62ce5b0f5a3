"""Tiny models built in code: real diffusers / transformers classes with small random weights.

Tests and benchmarks use them to exercise the real loading and generation paths without a network
or a download. Each builder writes an ordinary model folder (safetensors + configs + tokenizer)
that the registry recognises and the backends load with `local_files_only=True`.

- `build_tiny_diffusers`: a Stable Diffusion pipeline (UNet, VAE with 4 latent channels and the
  SD 1.x downsampling factor of 8, CLIP text encoder). Native size 64 x 64 (latents 8 x 8); any
  multiple of 8 works. About 4 MB on disk; two steps on a CPU take well under a second.
- `build_tiny_gpt2`, `build_tiny_llama` (and `build_long_llama`, 4,096-token window): causal language models (vocabulary of 400) with a
  byte-level BPE tokenizer trained on the paragraphs below, so any text round-trips exactly.

Only the standard library is imported at module level; torch and friends load inside the builders."""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_SIZE = 64  # the tiny diffusers pipeline's native output size (latents are 8 x 8)
TEXT_VOCAB_SIZE = 400

CORPUS = """\
The quiet river ran under a lantern moon, and she laughed softly at the boats that drifted by.
In the morning the fishermen mended their nets while gulls argued over the harbour wall.
A story is a small machine for moving feelings from one person to another; it works best when
the parts are simple and the reader can see how each one turns.
Light falls differently in winter. The shadows are longer, the colours thinner, and every window
seems to hold a secret it has no intention of telling anyone who walks past in the cold.
She wrote letters she never sent: to her brother, to the sea, to the version of herself who had
stayed in the village and learned the names of all the stars above the hill.
Numbers help too: 1, 2, 3, 10, 42, 2024. Punctuation as well - commas, full stops; questions?
Yes! "Quotes", (brackets), and the occasional ellipsis... Café, naïve, jalapeño, and 東京.
"""

# Words the tiny CLIP tokenizer gets merges for; anything else falls back to single bytes.
CLIP_WORDS = ("a", "the", "cat", "photo", "of", "red", "blue", "sky", "tree", "house", "painting")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (what byte-level BPE vocabularies use)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """A small CLIP-style BPE vocabulary: every byte with and without `</w>`, merges for a few
    words, then the two special tokens (last, as in the real CLIP vocabulary)."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in CLIP_WORDS:
        if len(word) < 2:
            continue
        # Merge left to right: ((c a) t</w>) -> "cat</w>".
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            piece = ch + ("</w>" if i == len(word) - 1 else "")
            merge = f"{current} {piece}"
            current = current + piece
            if merge not in merges:
                merges.append(merge)
            if current not in tokens:
                tokens.append(current)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def _clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=77)
    ids = tokenizer("a photo of a red cat")["input_ids"]
    if (
        len(tokenizer) != len(vocab)
        or len(ids) < 3
        or tokenizer.decode(ids, skip_special_tokens=True) != "a photo of a red cat"
    ):
        raise RuntimeError(f"the tiny CLIP tokenizer does not round-trip (ids {ids})")
    return tokenizer


def build_tiny_diffusers(folder: Path, seed: int = 0) -> Path:
    """A tiny Stable Diffusion pipeline saved as a diffusers folder; returns `folder`."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel  # pyright: ignore[reportPrivateImportUsage] - exported lazily, not marked public
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = _clip_tokenizer(folder / "tokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=IMAGE_SIZE // 8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            # diffusers annotates these as one-element tuples (tuple[int]); any length is meant.
            block_out_channels=(8, 8, 16, 16),  # pyright: ignore[reportArgumentType] - four levels: downsampling by 8, as in SD 1.x
            down_block_types=("DownEncoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
            up_block_types=("UpDecoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=IMAGE_SIZE,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                projection_dim=32,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        # diffusers annotates `scheduler` with an enum of scheduler names and these two as required,
        # though it takes any scheduler instance and None for both (with requires_safety_checker=False).
        scheduler=EulerDiscreteScheduler(steps_offset=1),  # pyright: ignore[reportArgumentType]
        safety_checker=None,  # pyright: ignore[reportArgumentType]
        feature_extractor=None,  # pyright: ignore[reportArgumentType]
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def _byte_level_tokenizer(vocab_size: int = TEXT_VOCAB_SIZE):
    """A GPT-2 style byte-level BPE tokenizer trained on CORPUS (every byte is in the vocabulary)."""
    from studio.training.text_tokenizer import train_byte_level_bpe

    return train_byte_level_bpe(CORPUS.splitlines(), vocab_size, model_max_length=128, min_frequency=0)


def _eos_token_id(tokenizer) -> int:
    """The tokenizer's end-of-text id, which the tiny causal models also use as bos and pad."""
    eos = tokenizer.eos_token_id
    if not isinstance(eos, int):
        raise RuntimeError(f"the tiny byte-level tokenizer has no single end-of-text id (it has {eos!r})")
    return eos


def _save_causal_lm(folder: Path, model, tokenizer) -> Path:
    from studio.training.text_tokenizer import check_round_trip

    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    check_round_trip(folder)
    return folder


def build_tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A tiny GPT-2 (2 layers, width 32, context 128) saved as a transformers folder; returns `folder`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _byte_level_tokenizer()
    eos = _eos_token_id(tokenizer)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config).eval()
    return _save_causal_lm(folder, model, tokenizer)


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A tiny Llama (2 layers, width 32, grouped-query attention) saved as a transformers folder."""
    return _build_llama(folder, seed, width=32, layers=2, window=128, tie=False)


def build_long_llama(folder: Path, seed: int = 0) -> Path:
    """A random Llama with a 4,096-token window (4 layers, width 256), for the Continue-reuse
    benchmark: long enough for a 3,000-token story, small enough to read it in a second on a CPU."""
    return _build_llama(folder, seed, width=256, layers=4, window=4096, tie=True)


def _build_llama(folder: Path, seed: int, width: int, layers: int, window: int, tie: bool) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _byte_level_tokenizer()
    tokenizer.model_max_length = max(tokenizer.model_max_length, window)
    eos = _eos_token_id(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=window,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        tie_word_embeddings=tie,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    return _save_causal_lm(folder, model, tokenizer)
