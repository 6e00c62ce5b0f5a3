"""The features `studio eval` judges emoji images by: Studio's own emoji classifier (its 128-d
penultimate features and its category guess), and FD-emoji with its real-vs-real reference.

The classifier lives in studio/resources/eval/emoji-classifier (STUDIO_EVAL_CLASSIFIER overrides it).
Imported only when `studio eval` runs, so torch is imported at module top."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.errors import StudioError
from studio.models import paths
from studio.training.data.emoji_data import CATEGORIES, EmojiSet
from studio.training.fd import NAME as FD_NAME
from studio.training.fd import frechet_distance
from studio.training.images import to_tensor

CLASSIFIER_ENV = "STUDIO_EVAL_CLASSIFIER"
CLASSIFIER_FILE = "classifier.safetensors"
CLASSIFIER_SIZE = 64  # the classifier was trained on 64 px images
FEATURE_BATCH = 256
FLOOR_SEED = 0  # which real training images make the real-vs-real reference


def classifier_folder() -> Path:
    value = os.environ.get(CLASSIFIER_ENV)
    return Path(value).expanduser() if value else paths.RESOURCES_DIR / "eval" / "emoji-classifier"


def load_eval_classifier(device: torch.device):
    """The emoji classifier that judges image and latent models, on `device`, in eval mode."""
    folder = classifier_folder()
    if not (folder / CLASSIFIER_FILE).is_file():
        raise StudioError(
            f"The evaluation classifier is missing ({folder / CLASSIFIER_FILE}): run `studio train emoji-classifier` "
            f"and copy runs/emoji-classifier/model to {folder} (or point {CLASSIFIER_ENV} at it)."
        )
    manifest_path = folder / "studio.json"
    if manifest_path.is_file():
        from studio.models.formats import read_json

        categories = read_json(manifest_path).get("categories")
        if categories is not None and list(categories) != list(CATEGORIES):
            raise StudioError(
                f"The evaluation classifier in {folder} knows other categories than this studio's emoji set: "
                "train it again with `studio train emoji-classifier`."
            )
    from studio.training.recipes.emoji_classifier import load_classifier

    return load_classifier(folder).to(device)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def judge(classifier, images: torch.Tensor, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Classifier features (N, 128) float64 and predicted category (N,) of CPU images in [0, 1]."""
    features, predicted = [], []
    for i in range(0, images.shape[0], FEATURE_BATCH):
        x = resize(images[i : i + FEATURE_BATCH].float(), CLASSIFIER_SIZE).to(device)
        f = classifier.features(x)
        features.append(f.double().cpu())
        predicted.append(classifier.head(f).argmax(1).cpu())
    return torch.cat(features).numpy(), torch.cat(predicted).numpy()


def real_sets(data: EmojiSet) -> tuple[EmojiSet, EmojiSet]:
    val, train = data.validation(), data.train()
    if len(val) < 2 or len(train) < 2:
        raise StudioError("The emoji set has too few validation or training images to compute FD-emoji.")
    return val, train


def fd_with_floor(
    classifier, device: torch.device, generated: torch.Tensor, data: EmojiSet, model_size: int
) -> tuple[float, float, int, int]:
    """(FD-emoji of `generated` vs the real validation images, the real-vs-real reference: as many
    real training images vs the same, validation count, reference count). Real images are brought to the model's
    resolution first (and back up to the classifier's), so a 32 px model is not judged on detail
    it cannot draw."""
    val, train = real_sets(data)

    def real(images: np.ndarray) -> torch.Tensor:
        x = to_tensor(images, torch.device("cpu"))
        return x if model_size == x.shape[-1] else resize(x, model_size)

    val_features, _ = judge(classifier, real(val.images), device)
    gen_features, _ = judge(classifier, generated, device)
    count = min(generated.shape[0], len(train))
    pick = np.sort(np.random.default_rng(FLOOR_SEED).choice(len(train), count, replace=False))
    floor_features, _ = judge(classifier, real(train.images[pick]), device)
    return (
        frechet_distance(gen_features, val_features),
        frechet_distance(floor_features, val_features),
        len(val),
        count,
    )


FD_METHOD = (
    f"{FD_NAME} is the Fréchet distance between Gaussians fitted to the 128-d features of Studio's own emoji "
    "classifier (studio/resources/eval/emoji-classifier), not FID: it uses no Inception network and cannot be compared "
    "with published FID scores. The real-vs-real reference is the same measure for as many real *training* "
    "images (other emoji than the validation ones) against the real validation images: an unconditional "
    "generator as good as the data scores about that. A text-to-image model prompted with the validation "
    "images' own labels can score below it, as its images are about the same emoji."
)
