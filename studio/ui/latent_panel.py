"""LatentPanel: one slider per latent dimension, and the latent vector they describe."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSlider, QVBoxLayout, QWidget

MAX_SLIDERS = 16  # more dimensions than this stay where Randomise put them
RANGE = 3.0  # sliders span -RANGE..+RANGE standard deviations
TICKS = 100  # slider units per 1.0


class LatentPanel(QWidget):
    """Sliders for the first dimensions of a latent vector; moving one emits `latent_changed`."""

    latent_changed = Signal(object)  # tuple[float, ...], the whole vector

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._latent = np.zeros(0, np.float64)
        self._sliders: list[QSlider] = []
        self._values: list[QLabel] = []
        self._rng = np.random.default_rng()

        self.randomise_button = QPushButton("Randomise")
        self.randomise_button.clicked.connect(self.randomise)
        self.reset_button = QPushButton("Reset")
        self.reset_button.clicked.connect(self.reset)
        buttons = QHBoxLayout()
        buttons.addWidget(self.randomise_button)
        buttons.addWidget(self.reset_button)

        self._grid_host = QWidget()
        self._grid = QGridLayout(self._grid_host)
        self._grid.setContentsMargins(0, 0, 4, 0)
        self._grid.setHorizontalSpacing(8)
        self._grid.setVerticalSpacing(6)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self._grid_host)

        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setEnabled(False)  # greyed: a remark, not a control

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.note)

    # -- the vector -------------------------------------------------------------------------------

    def latent(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self._latent)

    def sliders(self) -> list[QSlider]:
        return list(self._sliders)

    def set_dim(self, dim: int) -> None:
        """Rebuild the sliders for a model whose latent has `dim` numbers (all start at zero)."""
        for widget in self._sliders + self._values:
            widget.deleteLater()
        while self._grid.count():
            item = self._grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self._sliders, self._values = [], []
        self._latent = np.zeros(dim, np.float64)
        for i in range(min(dim, MAX_SLIDERS)):
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(int(-RANGE * TICKS), int(RANGE * TICKS))
            slider.setPageStep(TICKS // 2)
            slider.valueChanged.connect(lambda value, i=i: self._on_slider(i, value))
            value = QLabel("0.00")
            value.setMinimumWidth(value.fontMetrics().horizontalAdvance("−3.00"))
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self._grid.addWidget(QLabel(f"z{i}"), i, 0)
            self._grid.addWidget(slider, i, 1)
            self._grid.addWidget(value, i, 2)
            self._sliders.append(slider)
            self._values.append(value)
        self._grid.setRowStretch(len(self._sliders), 1)
        hidden = dim - len(self._sliders)
        self.randomise_button.setEnabled(dim > 0)
        self.reset_button.setEnabled(dim > 0)
        self.note.setEnabled(False)  # greyed: a remark, not a control
        self.note.setText(f"{hidden} more dimensions follow Randomise and Reset." if hidden > 0 else "")

    def set_unavailable(self, sentence: str) -> None:
        """No sliders, only a sentence saying why (a model the panel cannot describe)."""
        self.set_dim(0)
        self.note.setEnabled(True)  # the only thing in the panel: readable, not greyed
        self.note.setText(sentence)

    def set_latent(self, latent, emit: bool = True) -> None:
        """Show a whole vector on the sliders; emits one `latent_changed`, not one per slider."""
        self._latent = np.clip(np.asarray(latent, np.float64), -RANGE, RANGE)
        for i, slider in enumerate(self._sliders):
            slider.blockSignals(True)
            slider.setValue(round(float(self._latent[i]) * TICKS))
            slider.blockSignals(False)
            self._values[i].setText(f"{self._latent[i]:.2f}")
        if emit:
            self.latent_changed.emit(self.latent())

    @Slot()
    def randomise(self) -> None:
        # Rounded to the sliders' resolution, so the vector is exactly what the sliders show.
        self.set_latent(np.round(self._rng.standard_normal(self._latent.shape[0]), 2))

    @Slot()
    def reset(self) -> None:
        self.set_latent(np.zeros_like(self._latent))

    def _on_slider(self, index: int, value: int) -> None:
        self._latent[index] = value / TICKS
        self._values[index].setText(f"{value / TICKS:.2f}")
        self.latent_changed.emit(self.latent())
