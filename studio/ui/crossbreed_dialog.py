"""CrossbreedDialog: a child of two or more keyframes, mixed with a weight per parent.

The mix is norm-preserving (studio.latent.blend: Σ wᵢzᵢ / √Σwᵢ²), so a child of Gaussian parents
is again a typical point of the space rather than a washed-out average. Every weight change emits
`child_changed`, and the explorer decodes it at once through the interactive lane, so the weights
are tuned by eye; "Add as keyframe" keeps the child, Cancel goes back to where the sliders were."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QGridLayout, QLabel, QScrollArea, QSlider, QVBoxLayout, QWidget

from studio.latent import blend

WEIGHT_TICKS = 100  # a slider's full scale is weight 1.0
MAX_CHILD_NAME = 60


class CrossbreedDialog(QDialog):
    child_changed = Signal(object)  # tuple[float, ...]: the child with the current weights

    def __init__(self, names: list[str], latents, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("Crossbreed")
        self._names = list(names)
        self._latents = [np.asarray(z, np.float64) for z in latents]
        self.weights: list[QSlider] = []
        grid_host = QWidget()
        grid = QGridLayout(grid_host)
        grid.setContentsMargins(0, 0, 0, 0)
        for row, name in enumerate(self._names):
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, WEIGHT_TICKS)
            slider.setValue(WEIGHT_TICKS // 2)
            slider.setMinimumWidth(180)
            slider.valueChanged.connect(self._on_weight)
            grid.addWidget(QLabel(name), row, 0)
            grid.addWidget(slider, row, 1)
            self.weights.append(slider)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(grid_host)
        scroll.setMaximumHeight(40 * min(len(names), 8) + 10)

        self.note = QLabel(
            "Weights are relative: only their ratios matter. The mix keeps the latent's "
            "length, so the child looks like a sample of the model, not a blur."
        )
        self.note.setWordWrap(True)
        self.note.setEnabled(False)  # greyed: a remark
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_button = self.buttons.addButton("Add as keyframe", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("How much of each parent:"))
        layout.addWidget(scroll)
        layout.addWidget(self.note)
        layout.addWidget(self.buttons)

    def weight_values(self) -> list[float]:
        return [s.value() / WEIGHT_TICKS for s in self.weights]

    def child(self) -> Optional[tuple[float, ...]]:
        """The mix with the current weights (None while every weight is zero)."""
        weights = self.weight_values()
        if not any(weights):
            return None
        return tuple(float(v) for v in blend(self._latents, weights))

    def child_name(self) -> str:
        parents = [n for n, w in zip(self._names, self.weight_values()) if w > 0]
        name = " × ".join(parents)
        return name if len(name) <= MAX_CHILD_NAME else name[: MAX_CHILD_NAME - 1] + "…"

    def start(self) -> None:
        """Show the dialog and the child of equal weights."""
        self.open()
        self._on_weight()

    @Slot()
    def _on_weight(self, _value: int = 0) -> None:
        child = self.child()
        self.add_button.setEnabled(child is not None)
        if child is not None:
            self.child_changed.emit(child)
