"""`studio eval MODEL`: measure a shipped model's quality with fixed seeds, print a small table, and
(with --update-card) write the numbers into the "Measured quality" section of its MODEL_CARD.md.

- text (a transformers folder, e.g. prose): sliding-window perplexity on the held-out prose,
  which no model was trained on.
- image (a diffusers folder, e.g. emoji-sd): (a) category accuracy: ten fixed emoji prompts, four
  held-out seeds each, judged by our emoji classifier; (b) FD-emoji of images generated from the
  validation set's labels against the real validation images.
- latent (a studio-latent folder, e.g. emoji-vae, emoji-gan): FD-emoji of decoded N(0, I) samples
  (shipped latents are in principal coordinates, so that *is* the model's distribution) against
  the real validation images, and, when the folder has an encoder, reconstruction PSNR.

FD-emoji is the Fréchet distance in the 128-d feature space of our emoji classifier
(studio/training/fd.py, studio/training/eval_features.py). It is not FID and cannot be compared with published FID numbers; every
FD-emoji comes with a real-vs-real reference: the same measure between as many *real* training
images and the validation images, about what an unconditional generator as good as the data would
score at that sample size.

The classifier lives in studio/resources/eval/emoji-classifier (STUDIO_EVAL_CLASSIFIER overrides it).
Imported only when `studio eval` runs, so torch is imported at module top."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from studio.core.atomic import write_text_atomic
from studio.core.errors import ModelFileError, StudioError
from studio.models import paths
from studio.training.data.emoji_data import CATEGORIES, load_emoji
from studio.training.data.prose_corpus import load_prose
from studio.training.eval_features import (
    CLASSIFIER_SIZE,
    FD_METHOD,
    fd_with_floor,
    judge,
    load_eval_classifier,
    real_sets,
    resize,
)
from studio.training.fd import NAME as FD_NAME
from studio.training.images import save_grid, to_tensor
from studio.training.model_card import update_eval_section

CARD, GRID = "MODEL_CARD.md", "eval-grid.png"

# text
QUICK_TEXT_CHARS = 20_000
MAX_CONTEXT = 1024  # longer contexts are capped, to keep CPU evaluation short
PERPLEXITY_GOAL = 40.0

# image: prompts whose CLDR labels are in the emoji set, with the category the set gives them
ACCURACY_PROMPTS: tuple[tuple[str, str], ...] = (
    ("red apple", "Food & Drink"),
    ("grinning face", "Smileys & Emotion"),
    ("dog face", "Animals & Nature"),
    ("rocket", "Travel & Places"),
    ("soccer ball", "Activities"),
    ("mobile phone", "Objects"),
    ("waving hand", "People & Body"),
    ("red heart", "Smileys & Emotion"),
    ("pizza", "Food & Drink"),
    ("up arrow", "Symbols"),
)
ACCURACY_SEEDS = (1001, 1002, 1003, 1004)  # never used in training
FD_SEED = 3001  # the FD image for validation image i uses seed FD_SEED + i
STEPS, GUIDANCE, PROMPT_TEMPLATE = 20, 7.5, "{label}"
ACCURACY_GOAL = 0.8
IMAGE_BATCH = 8
QUICK_IMAGES = 32

# latent
LATENT_SAMPLES, QUICK_LATENT_SAMPLES = 1000, 64
LATENT_SEED = 0
DECODE_BATCH = 250
GRID_SAMPLES = 64  # 8 x 8


@dataclass
class Evaluation:
    """What one evaluation found: metrics for the caller, rows for the table and the card."""

    metrics: dict[str, float] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (metric, value, note)
    method: list[str] = field(default_factory=list)  # markdown paragraphs: how it was measured
    grid: Optional[torch.Tensor] = None  # (N, 3, H, W) in [0, 1], saved as eval-grid.png
    grid_columns: int = 8
    grid_caption: str = ""


def evaluate_model(model: Any, device: str = "cpu", update_card: bool = False, quick: bool = False) -> dict[str, float]:
    """Evaluate a registry ModelInfo; print a table; with `update_card`, write its card's eval
    section (and, for image and latent models, eval-grid.png next to the card). Returns the metrics."""
    evaluator = _evaluator(model)
    _check_device(device)
    with torch.no_grad():
        found = evaluator(model, torch.device(device), quick)
    print(format_table(model, found, device, quick))
    if update_card:
        card = write_card_section(model, found, device, quick)
        print(f"Updated {card}")
    return found.metrics


def _evaluator(model: Any) -> Callable[[Any, torch.device, bool], Evaluation]:
    by_format = {"transformers": evaluate_text, "diffusers": evaluate_image, "studio-latent": evaluate_latent}
    found = by_format.get(model.format)
    if found is None:
        raise StudioError(
            f"{model.id} cannot be evaluated: `studio eval` measures transformers text models, diffusers image "
            f"models and studio-latent folders, and this is a {model.kind} model in '{model.format}' format."
        )
    return found


def _check_device(device: str) -> None:
    from studio.training.commands import check_device

    check_device(device)


def _fd_rows(found: Evaluation, fd: float, floor: float, generated: int, val: int, floor_count: int, what: str) -> None:
    found.metrics.update({"fd_emoji": fd, "fd_emoji_real": floor, "fd_samples": float(generated)})
    found.rows += [
        (FD_NAME, _number(fd), f"{generated} {what} vs {val} real validation images (lower is better)"),
        (
            f"{FD_NAME} real-vs-real",
            _number(floor),
            f"{floor_count} real training images (other emoji) vs the same: the reference",
        ),
    ]


def _number(value: float) -> str:
    """Two decimals, or three significant digits for values below 1 (a distance near 0 still shows)."""
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


# --- text ----------------------------------------------------------------------------------------


def evaluate_text(model: Any, device: torch.device, quick: bool) -> Evaluation:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.models.libraries import quiet_library_logs
    from studio.models.safe_files import check_folder_weights, explained_load_errors
    from studio.training.recipes.prose import perplexity

    paths.offline()
    quiet_library_logs("transformers")
    folder = Path(model.path)
    check_folder_weights(folder)
    with explained_load_errors(folder, "a transformers model"):
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        net = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, dtype=torch.float32
        )
    config = net.config
    context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if not isinstance(context, int) or context < 2:
        raise ModelFileError(
            f"{folder / 'config.json'} gives no context length (n_positions or max_position_embeddings)."
        )
    context = min(context, MAX_CONTEXT)

    corpus = load_prose()
    text = corpus.heldout[:QUICK_TEXT_CHARS] if quick else corpus.heldout
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    if ids.numel() < 2:
        raise StudioError("The held-out prose is empty, so there is nothing to measure perplexity on.")
    # transformers wraps `to` in @wraps(Module.to), which hides its binding from pyright.
    ppl, _ = perplexity(net.to(device), ids, context, device)  # pyright: ignore[reportArgumentType]
    name = corpus.heldout_name + (f" (first {QUICK_TEXT_CHARS:,} characters)" if quick else "")

    found = Evaluation(
        metrics={"heldout_perplexity": ppl, "heldout_tokens": float(ids.numel()), "context": float(context)}
    )
    met = "met" if ppl <= PERPLEXITY_GOAL else "not met"
    found.rows = [
        ("held-out perplexity", f"{ppl:.2f}", f"goal ≤ {PERPLEXITY_GOAL:g}: {met} (lower is better)"),
        ("held-out tokens", f"{ids.numel():,}", name),
    ]
    found.method = [
        f"Perplexity on {name}, text the model never saw in training, with this model's own tokenizer: "
        f"sliding windows of {context} tokens, each token scored once with at least {context // 2} tokens of "
        f"history after the first window. The goal for the shipped model is a perplexity of at most "
        f"{PERPLEXITY_GOAL:g}; perplexities from different tokenizers are not comparable."
    ]
    return found


# --- image (diffusers) ---------------------------------------------------------------------------


def image_settings(model: Any) -> tuple[int, float, str]:
    """(steps, guidance scale, prompt template) for evaluation: ours, unless studio.json's
    "defaults" gives "steps", "guidance_scale" or "prompt_template" (with a {label} field)."""
    manifest = dict(model.manifest or {})  # the registry attaches studio.json's metadata
    extra = Path(model.path) / "studio.json"
    defaults = manifest.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    steps = defaults.get("steps", defaults.get("num_inference_steps", STEPS))
    guidance = defaults.get("guidance_scale", defaults.get("guidance", GUIDANCE))
    template = defaults.get("prompt_template", PROMPT_TEMPLATE)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 500:
        raise ModelFileError(f"{extra} has defaults.steps {steps!r}; expected a whole number from 1 to 500.")
    if not isinstance(guidance, (int, float)) or isinstance(guidance, bool) or not 0 <= guidance <= 50:
        raise ModelFileError(f"{extra} has defaults.guidance_scale {guidance!r}; expected a number from 0 to 50.")
    if not isinstance(template, str) or "{label}" not in template:
        raise ModelFileError(f"{extra} has defaults.prompt_template {template!r}; it must contain {{label}}.")
    return steps, float(guidance), template


def load_pipeline(folder: Path, device: torch.device):
    # diffusers' public names: its lazy __init__ re-exports them in a way pyright reads as private.
    from diffusers import DiffusionPipeline  # pyright: ignore[reportPrivateImportUsage]

    from studio.models.formats import read_json
    from studio.models.libraries import quiet_library_logs
    from studio.models.safe_files import check_folder_weights, check_model_index, explained_load_errors

    paths.offline()
    quiet_library_logs("diffusers", "transformers")
    check_model_index(folder)
    check_folder_weights(folder)
    extra = {"safety_checker": None} if "safety_checker" in read_json(folder / "model_index.json") else {}
    with explained_load_errors(folder, "a diffusers model"):
        pipe = DiffusionPipeline.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=False, **extra
        )
    pipe = pipe.to(device, torch.float32)  # shipped weights are fp16; evaluate what the CPU path runs
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: Sequence[str], seeds: Sequence[int], steps: int, guidance: float) -> torch.Tensor:
    """One image per (prompt, seed), (N, 3, H, W) in [0, 1] on the CPU. Each image's starting
    noise comes from its own CPU generator, so it does not depend on batching or device."""
    out = []
    for i in range(0, len(prompts), IMAGE_BATCH):
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[i : i + IMAGE_BATCH]]
        result = pipe(
            prompt=list(prompts[i : i + IMAGE_BATCH]),
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            output_type="np",
        )
        images = torch.from_numpy(np.asarray(result.images, dtype=np.float32))
        out.append(images.permute(0, 3, 1, 2).clamp(0, 1).contiguous())
    return torch.cat(out)


def evaluate_image(model: Any, device: torch.device, quick: bool) -> Evaluation:
    classifier = load_eval_classifier(device)
    data = load_emoji(CLASSIFIER_SIZE)
    steps, guidance, template = image_settings(model)
    pipe = load_pipeline(Path(model.path), device)

    def prompt(label: str) -> str:
        return template.replace("{label}", label)

    # (a) category accuracy: prompts as rows, seeds as columns
    labels = [label for label, _ in ACCURACY_PROMPTS for _ in ACCURACY_SEEDS]
    seeds = [seed for _ in ACCURACY_PROMPTS for seed in ACCURACY_SEEDS]
    grid = generate(pipe, [prompt(label) for label in labels], seeds, steps, guidance)
    _, predicted = judge(classifier, grid, device)
    target = np.array([CATEGORIES.index(category) for _, category in ACCURACY_PROMPTS for _ in ACCURACY_SEEDS])
    correct = predicted == target
    accuracy = float(correct.mean())

    # (b) FD-emoji: one image per validation label (quick: an even spread of them)
    val, _ = real_sets(data)
    if quick and len(val) > QUICK_IMAGES:
        pick = np.unique(np.linspace(0, len(val) - 1, QUICK_IMAGES).round().astype(int))
    else:
        pick = np.arange(len(val))
    generated = generate(pipe, [prompt(val.labels[i]) for i in pick], [FD_SEED + int(i) for i in pick], steps, guidance)
    size = int(generated.shape[-1])
    fd, floor, n_val, n_floor = fd_with_floor(classifier, device, generated, data, size)

    found = Evaluation(grid=grid, grid_columns=len(ACCURACY_SEEDS))
    met = "met" if accuracy >= ACCURACY_GOAL else "not met"
    found.metrics["category_accuracy"] = accuracy
    found.rows.append(
        (
            "category accuracy",
            f"{accuracy * 100:.1f} %",
            f"{int(correct.sum())}/{correct.size} images; goal ≥ {ACCURACY_GOAL * 100:.0f} %: {met}",
        )
    )
    per_prompt = correct.reshape(len(ACCURACY_PROMPTS), len(ACCURACY_SEEDS)).sum(1)
    for (label, category), hits in zip(ACCURACY_PROMPTS, per_prompt):
        found.rows.append((f"  {label!r}", f"{int(hits)}/{len(ACCURACY_SEEDS)}", category))
    _fd_rows(found, fd, floor, len(pick), n_val, n_floor, f"images from validation labels ({size} px)")
    seeds_text = ", ".join(map(str, ACCURACY_SEEDS))
    found.method = [
        f"Category accuracy: {len(ACCURACY_PROMPTS)} fixed prompts (CLDR labels from the emoji set), seeds "
        f"{seeds_text} (never used in training), {steps} steps, guidance {guidance:g}; an image counts when "
        f"Studio's emoji classifier puts it in the prompt's category. Goal: at least {ACCURACY_GOAL * 100:.0f} %.",
        f"{FD_NAME}: one image per validation label (seed {FD_SEED} + its index), same settings. " + FD_METHOD,
    ]
    found.grid_caption = (
        f"{GRID}: rows are the prompts ({', '.join(label for label, _ in ACCURACY_PROMPTS)}), "
        f"columns the seeds {seeds_text}."
    )
    return found


# --- latent (studio-latent) ----------------------------------------------------------------------


def evaluate_latent(model: Any, device: torch.device, quick: bool) -> Evaluation:
    from studio.models import nets

    classifier = load_eval_classifier(device)
    data = load_emoji(CLASSIFIER_SIZE)
    folder = Path(model.path)
    decoder = nets.load_decoder(folder, model.manifest).to(device)
    size, dim = decoder.image_size, decoder.latent_dim

    count = QUICK_LATENT_SAMPLES if quick else LATENT_SAMPLES
    latents = torch.randn(count, dim, generator=torch.Generator().manual_seed(LATENT_SEED))
    samples = torch.cat(
        [
            decoder(latents[i : i + DECODE_BATCH].to(device)).float().clamp(0, 1).cpu()
            for i in range(0, count, DECODE_BATCH)
        ]
    )
    fd, floor, n_val, n_floor = fd_with_floor(classifier, device, samples, data, size)

    found = Evaluation(grid=samples[:GRID_SAMPLES], grid_columns=8)
    _fd_rows(found, fd, floor, count, n_val, n_floor, f"decoded N(0, I) samples ({size} px)")
    found.method = [
        f"{FD_NAME}: {count} latents drawn from N(0, I) (seed {LATENT_SEED}; latent axes are in principal "
        f"coordinates, so this samples the fitted distribution), decoded at {size} px. "
        + ("Real images are resized to that size first. " if size != CLASSIFIER_SIZE else "")
        + FD_METHOD,
    ]
    if "encoder" in model.manifest:
        encoder = nets.load_encoder(folder, model.manifest).to(device)
        real = resize(to_tensor(data.validation().images, torch.device("cpu")), size)
        psnr = []
        for i in range(0, real.shape[0], DECODE_BATCH):
            x = real[i : i + DECODE_BATCH].to(device)
            recon = decoder(encoder(x)[0]).float()
            mse = (recon - x).pow(2).mean((1, 2, 3)).clamp_min(1e-10)
            psnr.append((10 * torch.log10(1 / mse)).cpu())
        value = float(torch.cat(psnr).mean())
        found.metrics["reconstruction_psnr"] = value
        found.rows.append(
            (
                "reconstruction PSNR",
                f"{value:.2f} dB",
                f"{real.shape[0]} validation images through encoder mean and decoder (higher is better)",
            )
        )
        found.method.append(
            "Reconstruction PSNR: each validation image is encoded (the mean, no sampling), "
            "decoded, and compared pixel by pixel; the table gives the mean PSNR per image."
        )
    found.grid_caption = f"{GRID}: the first {min(GRID_SAMPLES, count)} of those samples."
    return found


# --- output --------------------------------------------------------------------------------------


def format_table(model: Any, found: Evaluation, device: str, quick: bool) -> str:
    head = f"{model.id} ({model.kind}, {model.format}) on {device}" + (", quick run" if quick else "")
    width = max(len(name) for name, _, _ in found.rows)
    value_width = max(len(value) for _, value, _ in found.rows)
    lines = [head]
    lines += [f"  {name:<{width}}  {value:>{value_width}}  {note}".rstrip() for name, value, note in found.rows]
    return "\n".join(lines)


def card_markdown(model: Any, found: Evaluation, device: str, quick: bool, grid_name: Optional[str]) -> str:
    cell = lambda text: text.strip().replace("|", "\\|")  # noqa: E731
    lines = [
        f"Measured with `studio eval {model.id}` on {device}"
        + (" (quick run: fewer samples, so noisier numbers)." if quick else "."),
        "",
        "| Metric | Value | Notes |",
        "|---|---|---|",
    ]
    lines += [f"| {cell(name)} | {cell(value)} | {cell(note)} |" for name, value, note in found.rows]
    lines.append("")
    for paragraph in found.method:
        lines += [paragraph, ""]
    if grid_name:
        lines += [f"![evaluation samples]({grid_name})", "", found.grid_caption]
    return "\n".join(lines).strip()


def write_card_section(model: Any, found: Evaluation, device: str, quick: bool) -> Path:
    """Write eval-grid.png (image and latent models) and the card's eval section; the card is made
    (a title only) when the folder has none. Returns the card's path."""
    folder = Path(model.path)
    card = folder / CARD
    grid_name = None
    try:
        if found.grid is not None:
            save_grid(folder / GRID, found.grid, columns=found.grid_columns)
            grid_name = GRID
        if not card.is_file():
            write_text_atomic(card, f"# {model.id}\n")
        update_eval_section(card, card_markdown(model, found, device, quick, grid_name))
    except OSError as exc:
        raise StudioError(f"Cannot write the evaluation into {folder} ({exc.strerror or exc}).") from None
    return card
