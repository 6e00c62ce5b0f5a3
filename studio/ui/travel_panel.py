"""TravelPanel: the explorer's controls for a diffusion model, where a keyframe is a prompt and
a seed rather than a latent vector.

A morph between such keyframes is seed travel (the frames start from the slerp of the keys'
initial noises) and prompt travel (their text embeddings are blended); the engine runs it
(studio.engine.morph.diffusion_morph). The panel only holds the settings and asks for a preview."""

from __future__ import annotations

import random
from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import MAX_SEED

SEED_LIMIT = 2**31 - 1  # QSpinBox holds a C int; seeds above it are still valid in jobs


class TravelPanel(QWidget):
    preview_requested = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("What the keyframe shows, e.g. red apple")
        self.prompt.returnPressed.connect(self.preview_requested)
        self.negative = QLineEdit()
        self.negative.setPlaceholderText("Optional, the same for every frame")
        self.seed = QSpinBox()
        self.seed.setRange(0, min(MAX_SEED, SEED_LIMIT))
        self.random_button = QPushButton("Random")
        self.random_button.setToolTip("A new seed, and its preview")
        self.random_button.clicked.connect(self.random_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_button)
        self.steps = QSpinBox()
        self.steps.setRange(1, 150)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.image_size = QSpinBox()
        self.image_size.setRange(64, 2048)
        self.image_size.setSingleStep(64)
        self.image_size.setSuffix(" px")
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip("Generate this prompt and seed on the canvas (Enter in the prompt does too)")
        self.preview_button.clicked.connect(self.preview_requested)
        form = QFormLayout()
        form.addRow("Prompt", self.prompt)
        form.addRow("Negative", self.negative)
        form.addRow("Seed", seed_row)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Size", self.image_size)
        self.note = QLabel(
            "Each keyframe is a prompt and a seed. A morph starts every frame from the slerp of the "
            "keys' starting noises and blends their prompts; ancestral samplers (Euler a) would "
            "jump at every key, so a deterministic one is used."
        )
        self.note.setWordWrap(True)
        self.note.setEnabled(False)  # greyed: a remark
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.preview_button)
        layout.addWidget(self.note)
        layout.addStretch(1)

    def set_defaults(self, steps: int, guidance: float, size: int) -> None:
        """A model's own defaults (from its studio.json and its training size)."""
        self.steps.setValue(steps)
        self.guidance.setValue(guidance)
        self.image_size.setValue(max(self.image_size.minimum(), size))

    def key(self) -> dict:
        """The keyframe the fields describe."""
        return {"prompt": self.prompt.text().strip(), "seed": self.seed.value()}

    def set_key(self, key: dict) -> None:
        self.prompt.setText(key.get("prompt", ""))
        self.seed.setValue(int(key.get("seed", 0)))

    def settings(self) -> dict:
        """The fields every frame shares, as ImageJob/MorphJob fields."""
        size = self.image_size.value()
        return {
            "negative_prompt": self.negative.text().strip(),
            "steps": self.steps.value(),
            "guidance_scale": self.guidance.value(),
            "width": size,
            "height": size,
        }

    def random_seed(self) -> None:
        self.seed.setValue(random.randint(0, self.seed.maximum()))
        self.preview_requested.emit()
