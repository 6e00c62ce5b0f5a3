"""Tiny stand-ins for the npm packages the emoji data comes from, written where `npm_package`
looks for them, so the emoji recipes run in tests with no network."""

from __future__ import annotations

import json
from pathlib import Path

from studio.training.data.emoji_data import CATEGORIES, IMAGES_PACKAGE, LABELS_PACKAGE

COLOURS = [
    (220, 40, 40),
    (40, 160, 60),
    (40, 80, 220),
    (240, 200, 40),
    (150, 60, 200),
    (30, 180, 200),
    (240, 120, 20),
    (120, 120, 120),
]


def _package_dir(cache: Path, name_version: tuple[str, str]) -> Path:
    name, version = name_version
    root = cache / "npm" / f"{name}-{version}"
    (root / "package").mkdir(parents=True, exist_ok=True)
    (root / ".unpacked").touch()
    return root / "package"


def write_fake_emoji_packages(cache: Path, per_category: int = 3) -> None:
    """`per_category` emoji in each of the eight categories (one with five skin tones), plus a
    flag that must be left out; each image a coloured disc or square."""
    from PIL import Image, ImageDraw

    images = _package_dir(cache, IMAGES_PACKAGE)
    labels_root = _package_dir(cache, LABELS_PACKAGE)
    (images / "img" / "google" / "64").mkdir(parents=True, exist_ok=True)
    (labels_root / "en").mkdir(parents=True, exist_ok=True)
    entries, labels = [], []

    def draw(code: str, colour, square: bool) -> str:
        img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
        shape = ImageDraw.Draw(img).rectangle if square else ImageDraw.Draw(img).ellipse
        shape((8, 8, 56, 56), fill=colour + (255,))
        name = f"{code.lower()}.png"
        img.save(images / "img" / "google" / "64" / name)
        return name

    order = 0
    for c, category in enumerate(CATEGORIES):
        for i in range(per_category):
            code = f"1F{c:01X}{i:02X}0"
            order += 1
            entry = {
                "unified": code,
                "image": draw(code, COLOURS[c], i % 2 == 1),
                "has_img_google": True,
                "category": category,
                "subcategory": f"sub-{c}",
                "sort_order": order,
            }
            label = {"hexcode": code, "label": f"thing {c} {i}", "tags": [f"tag{c}", "thing"]}
            if c == 1 and i == 0:  # People & Body: skin tones ride with their base emoji
                entry["skin_variations"] = {}
                label["skins"] = []
                for tone in range(1, 6):
                    skin = f"{code}-1F3F{tone + 9:X}"
                    entry["skin_variations"][str(tone)] = {
                        "unified": skin,
                        "image": draw(skin, COLOURS[c], False),
                        "has_img_google": True,
                    }
                    label["skins"].append({"hexcode": skin, "label": f"thing {c} {i}: tone {tone}"})
            entries.append(entry)
            labels.append(label)
    entries.append(
        {
            "unified": "1F1EA-1F1EC",
            "image": draw("1F1EA-1F1EC", (0, 0, 0), True),
            "has_img_google": True,
            "category": "Flags",
            "subcategory": "country-flag",
            "sort_order": order + 1,
        }
    )
    labels.append({"hexcode": "1F1EA-1F1EC", "label": "flag: Egypt", "tags": ["flag"]})
    (images / "emoji.json").write_text(json.dumps(entries))
    (labels_root / "en" / "data.json").write_text(json.dumps(labels))
