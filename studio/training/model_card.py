"""MODEL_CARD.md for each shipped model: what it is, its data and licence, how it was trained
(hardware, time), its measured quality, and how to reproduce it.

`studio eval` later fills the "Measured quality" section between two markers, so re-running
evaluation updates the card without touching the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from studio.core.atomic import write_atomic
from studio.training.loop import RunReport

EVAL_START, EVAL_END = "<!-- eval:start -->", "<!-- eval:end -->"

EMOJI_DATA = (
    "Noto Emoji images, 64 px, from the npm package `emoji-datasource-google` 16.0.0 (images: Apache-2.0, "
    "© Google), flags and skin-tone components left out: 3,511 images, of which 253 (7 % of base emoji, with "
    "their skin-tone variants) are held out for validation. Labels and tags: Unicode CLDR annotations from "
    "the npm package `emojibase-data` 17.0.0 (MIT; the data derives from CLDR, Unicode licence)."
)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def write_card(
    folder: Path,
    title: str,
    summary: str,
    sections: Iterable[tuple[str, str]],
    report: RunReport,
    reproduce: str,
    image: Optional[str] = None,
) -> None:
    lines = [f"# {title}", "", summary, ""]
    if image:
        lines += [f"![samples]({image})", ""]
    for heading, body in sections:
        lines += [f"## {heading}", "", body.strip(), ""]
    lines += [
        "## Training",
        "",
        f"- Hardware: {report.hardware} ({report.device})",
        f"- Training time: {_minutes(report.seconds)}, {report.steps:,} steps",
        f"- Reproduce: `{reproduce}`",
        "",
        "Metrics at the end of training:",
        "",
        *[f"- {k}: {v}" for k, v in report.metrics.items()],
        "",
        "## Measured quality (`studio eval`)",
        "",
        EVAL_START,
        "Not evaluated yet: run `studio eval " + title + " --update-card`.",
        EVAL_END,
        "",
    ]
    write_atomic(folder / "MODEL_CARD.md", "\n".join(lines).encode())


def update_eval_section(card: Path, body: str) -> None:
    """Replace what lies between the eval markers of an existing card."""
    text = card.read_text(encoding="utf-8")
    start, end = text.find(EVAL_START), text.find(EVAL_END)
    if start < 0 or end < start:
        text = text.rstrip() + f"\n\n## Measured quality (`studio eval`)\n\n{EVAL_START}\n{EVAL_END}\n"
        start, end = text.find(EVAL_START), text.find(EVAL_END)
    text = text[: start + len(EVAL_START)] + "\n" + body.strip() + "\n" + text[end:]
    write_atomic(card, text.encode())


def latent_card(
    folder: Path,
    report: RunReport,
    title: str,
    kind: str,
    architecture: str,
    basis_note: str,
    sigma,
    sigma_label: str,
    limitations: str,
) -> None:
    top = ", ".join(f"{float(s):.2f}" for s in list(sigma)[:8])
    write_card(
        folder,
        title,
        summary=f"A {kind} of emoji for Studio's latent explorer, trained from scratch by Studio's own code.",
        image="samples.png",
        sections=[
            (
                "Model",
                f"{architecture}. Output 64×64 RGB in [0, 1]. Files: fp16 safetensors, "
                "`studio.json` manifest (format `studio-latent`).",
            ),
            (
                "Latent axes",
                f"{basis_note} {sigma_label}: {top}. The raw basis is kept in "
                "`raw_basis.safetensors` for reference; the weights already use these axes.",
            ),
            ("Data and licence", EMOJI_DATA + " The weights are released under Apache-2.0, like the images."),
            ("Limitations", limitations),
        ],
        report=report,
        reproduce=f"studio train {title} --minutes {round(report.seconds / 60)} --device {report.device}",
    )
