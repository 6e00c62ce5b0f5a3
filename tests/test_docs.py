"""docs/DESIGN.md stays true to the code: every citation of it names a section it has, every file
it names exists, and the Generate → PNG walk stays short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")


def sections() -> set[str]:
    return set(re.findall(r"^## (\d+)\. ", DESIGN, flags=re.MULTILINE))


def test_every_citation_names_a_section_the_design_has():
    cited = {}
    for path in list((ROOT / "studio").rglob("*.py")) + list((ROOT / "tests").rglob("*.py")):
        for number in re.findall(r"docs/DESIGN\.md §(\d+)", path.read_text(encoding="utf-8")):
            cited.setdefault(number, path.relative_to(ROOT).as_posix())
    assert cited, "nothing cites docs/DESIGN.md"
    missing = {number: where for number, where in cited.items() if number not in sections()}
    assert not missing, f"cited sections the design lacks: {missing}"


def test_every_file_the_design_names_exists():
    named = set(re.findall(r"`((?:studio/|tests/)?(?:[a-z_]+/)*[a-z_]+\.py)`", DESIGN))
    assert len(named) > 20
    missing = []
    for name in sorted(named):
        candidates = [
            ROOT / name,
            ROOT / "studio" / name,
            ROOT / "studio" / "engine" / name,
            ROOT / "studio" / "engine" / "backends" / "diffusion" / name,
        ]
        if not any(path.is_file() for path in candidates):
            missing.append(name)
    assert not missing, f"docs/DESIGN.md names files that do not exist: {missing}"


def test_the_generate_to_png_walk_is_at_most_twelve_steps():
    walk = DESIGN.split("## 10. Generate → PNG, step by step", 1)[1]
    steps = re.findall(r"^(\d+)\. ", walk, flags=re.MULTILINE)
    assert steps == [str(n) for n in range(1, len(steps) + 1)] and 0 < len(steps) <= 12
