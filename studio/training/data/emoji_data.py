"""The emoji image set: Noto emoji PNGs (npm `emoji-datasource-google`, Apache-2.0) with CLDR
labels and tags (npm `emojibase-data`, MIT), flags and skin-tone components left out.

Images are composited on white (the models have no alpha channel) and cached with their labels in
one .npz, so a recipe loads the whole set in well under a second after the first run. The
validation split is chosen per *base* emoji, skin-tone variants following their base, so no
near-duplicate of a validation image is ever trained on."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from studio.core.atomic import write_atomic
from studio.training.data.fetch import cache_dir, npm_package

IMAGES_PACKAGE = ("emoji-datasource-google", "16.0.0")
LABELS_PACKAGE = ("emojibase-data", "17.0.0")
LEFT_OUT = {"Flags", "Component"}
# The eight categories the classifier and the quality metrics use, in emoji.json's names.
CATEGORIES = (
    "Smileys & Emotion",
    "People & Body",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
    "Symbols",
)
VAL_PERCENT = 7
CACHE_VERSION = 1


@dataclass
class EmojiSet:
    """N images with their words. `images` is (N, size, size, 3) uint8 on a white background."""

    images: np.ndarray
    labels: list[str]  # CLDR label, e.g. "red apple", "waving hand: medium skin tone"
    tags: list[list[str]]  # CLDR keywords, e.g. ["apple", "fruit", "red"]
    category: np.ndarray  # (N,) index into CATEGORIES
    subcategory: list[str]  # e.g. "food-fruit"
    hexcode: list[str]
    val: np.ndarray  # (N,) bool: held out from training

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> "EmojiSet":
        index = np.flatnonzero(mask)
        return EmojiSet(
            images=self.images[index],
            labels=[self.labels[i] for i in index],
            tags=[self.tags[i] for i in index],
            category=self.category[index],
            subcategory=[self.subcategory[i] for i in index],
            hexcode=[self.hexcode[i] for i in index],
            val=self.val[index],
        )

    def train(self) -> "EmojiSet":
        return self.subset(~self.val)

    def validation(self) -> "EmojiSet":
        return self.subset(self.val)

    def captions(self) -> list[str]:
        """One fixed caption per image: its label and tags, for evaluation and quick looks."""
        return [
            ", ".join([label] + [t for t in tags if t not in label.split()])
            for label, tags in zip(self.labels, self.tags)
        ]


def is_validation(base_hexcode: str) -> bool:
    """A stable choice of ~7 % of base emoji, the same on every machine and every run."""
    digest = hashlib.sha256(base_hexcode.upper().encode()).digest()
    return digest[0] * 100 // 256 < VAL_PERCENT


def _labels_by_hexcode(labels_root: Path) -> dict[str, tuple[str, list[str]]]:
    entries = json.loads((labels_root / "en" / "data.json").read_text(encoding="utf-8"))
    found: dict[str, tuple[str, list[str]]] = {}
    for entry in entries:
        tags = list(entry.get("tags") or [])
        found[entry["hexcode"].upper()] = (entry["label"], tags)
        for skin in entry.get("skins") or []:
            found[skin["hexcode"].upper()] = (skin["label"], tags)
    return found


def _variants(entry: dict) -> list[tuple[str, str]]:
    """(hexcode, image file) of an emoji and each of its skin-tone variants."""
    found = [(entry["unified"], entry["image"])] if entry.get("has_img_google") else []
    for variant in (entry.get("skin_variations") or {}).values():
        if variant.get("has_img_google"):
            found.append((variant["unified"], variant["image"]))
    return found


def _strip_fe0f(hexcode: str) -> str:
    return "-".join(part for part in hexcode.upper().split("-") if part != "FE0F")


def build_emoji_set(images_root: Path, labels_root: Path, size: int = 64, limit: Optional[int] = None) -> EmojiSet:
    """Read the two unpacked npm packages into an EmojiSet (no caching; see `load_emoji`)."""
    from PIL import Image

    labels = _labels_by_hexcode(labels_root)
    labels_loose = {_strip_fe0f(k): v for k, v in labels.items()}
    entries = json.loads((images_root / "emoji.json").read_text(encoding="utf-8"))
    entries.sort(key=lambda e: e.get("sort_order", 0))
    rows: list[tuple] = []
    for entry in entries:
        if entry.get("category") in LEFT_OUT or entry.get("category") not in CATEGORIES:
            continue
        val = is_validation(entry["unified"])
        for hexcode, file_name in _variants(entry):
            words = labels.get(hexcode.upper()) or labels_loose.get(_strip_fe0f(hexcode))
            path = images_root / "img" / "google" / "64" / file_name
            if words is None or not path.is_file():
                continue
            rows.append((hexcode, path, words, entry["category"], entry.get("subcategory", ""), val))
            if limit is not None and len(rows) >= limit:
                break
        if limit is not None and len(rows) >= limit:
            break
    images = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    for i, (_, path, *_rest) in enumerate(rows):
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
        images[i] = np.asarray(rgb)
    return EmojiSet(
        images=images,
        labels=[r[2][0] for r in rows],
        tags=[r[2][1] for r in rows],
        category=np.array([CATEGORIES.index(r[3]) for r in rows], dtype=np.int64),
        subcategory=[r[4] for r in rows],
        hexcode=[r[0] for r in rows],
        val=np.array([r[5] for r in rows], dtype=bool),
    )


def _save(path: Path, data: EmojiSet) -> None:
    words = json.dumps(
        {
            "labels": data.labels,
            "tags": data.tags,
            "subcategory": data.subcategory,
            "hexcode": data.hexcode,
            "version": CACHE_VERSION,
        }
    )
    buffer = io.BytesIO()
    np.savez(buffer, images=data.images, category=data.category, val=data.val, words=np.array(words))
    write_atomic(path, buffer.getvalue())


def _load(path: Path) -> Optional[EmojiSet]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            words = json.loads(str(npz["words"]))
            if words.get("version") != CACHE_VERSION:
                return None
            return EmojiSet(
                images=npz["images"],
                labels=words["labels"],
                tags=words["tags"],
                category=npz["category"],
                subcategory=words["subcategory"],
                hexcode=words["hexcode"],
                val=npz["val"],
            )
    except (OSError, ValueError, KeyError):
        return None


def load_emoji(size: int = 64) -> EmojiSet:
    """The full emoji set at `size` pixels, fetched and prepared on first use, then cached."""
    cached = cache_dir() / f"emoji-noto-{size}.npz"
    data = _load(cached) if cached.exists() else None
    if data is None:
        data = build_emoji_set(npm_package(*IMAGES_PACKAGE), npm_package(*LABELS_PACKAGE), size=size)
        _save(cached, data)
    return data
