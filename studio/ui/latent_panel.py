"""LatentPanel: a slider per direction of a latent model's space, and the latent they describe.

Sliders are in units of σ along the model's directions (studio.latent.directions): the shipped
models' own axes, or directions a model stores. A slider moves the latent along its direction
only, so a point that came from elsewhere (a keyframe, an encoded picture) keeps everything the
sliders do not show. A locked direction keeps its value through Randomise and Reset."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from studio.latent.directions import Directions

MAX_SLIDERS = 16  # more directions than this stay where Randomise put them
RANGES = (3, 5, 10)  # the sliders span ±RANGE σ; GANSpace offers ±10
TICKS = 100  # slider units per 1.0 σ


class LatentPanel(QWidget):
    """Sliders for the first directions of a latent space; moving one emits `latent_changed`."""

    latent_changed = Signal(object)  # tuple[float, ...], the whole vector

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.directions = Directions.axes(0)
        self._latent = np.zeros(0, np.float64)
        self._sliders: list[QSlider] = []
        self._values: list[QLabel] = []
        self._locks: list[QCheckBox] = []
        self._rng = np.random.default_rng()

        self.randomise_button = QPushButton("Randomise")
        self.randomise_button.setToolTip("A new point drawn from the model's prior; locked directions stay.")
        self.randomise_button.clicked.connect(self.randomise)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the centre of the space; locked directions stay.")
        self.reset_button.clicked.connect(self.reset)
        self.range = QComboBox()
        for sigmas in RANGES:
            self.range.addItem(f"±{sigmas}σ", sigmas)
        self.range.setToolTip("How far the sliders reach, in standard deviations of the model's latents")
        self.range.currentIndexChanged.connect(self._on_range)
        buttons = QHBoxLayout()
        buttons.addWidget(self.randomise_button)
        buttons.addWidget(self.reset_button)
        buttons.addStretch(1)
        buttons.addWidget(self.range)

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

    def locks(self) -> list[QCheckBox]:
        return list(self._locks)

    def names(self) -> list[str]:
        return list(self.directions.names[: len(self._sliders)])

    def span(self) -> int:
        """How many σ the sliders reach either side of the centre."""
        return int(self.range.currentData())

    def set_dim(self, dim: int) -> None:
        """Sliders along the latent's own axes (the shipped models' principal directions)."""
        self.set_directions(Directions.axes(dim))

    def set_directions(self, directions: Directions) -> None:
        """Rebuild the sliders for a model's directions; the latent starts at the centre."""
        for widget in self._sliders + self._values + self._locks:
            widget.deleteLater()
        while self._grid.count():
            item = self._grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.directions = directions
        self._sliders, self._values, self._locks = [], [], []
        self._latent = directions.mean.copy()
        shown = min(directions.count, MAX_SLIDERS)
        if shown:
            lock_heading = QLabel("Lock")
            lock_heading.setEnabled(False)
            self._grid.addWidget(lock_heading, 0, 3)
        for i in range(shown):
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setPageStep(TICKS // 2)
            slider.valueChanged.connect(lambda value, i=i: self._on_slider(i, value))
            value = QLabel("0.00")
            value.setMinimumWidth(value.fontMetrics().horizontalAdvance("−10.00"))
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            lock = QCheckBox()
            name = directions.names[i]
            lock.setToolTip(f"Lock {name}: Randomise and Reset leave it where it is")
            label = QLabel(name)
            label.setToolTip(f"Direction {i} · σ {directions.sigma[i]:.3g}")
            self._grid.addWidget(label, i + 1, 0)
            self._grid.addWidget(slider, i + 1, 1)
            self._grid.addWidget(value, i + 1, 2)
            self._grid.addWidget(lock, i + 1, 3, Qt.AlignmentFlag.AlignCenter)
            self._sliders.append(slider)
            self._values.append(value)
            self._locks.append(lock)
        self._grid.setRowStretch(shown + 1, 1)
        self._apply_range()
        hidden = directions.count - shown
        enabled = directions.count > 0
        for widget in (self.randomise_button, self.reset_button, self.range):
            widget.setEnabled(enabled)
        self.note.setEnabled(False)  # greyed: a remark, not a control
        self.note.setText(f"{hidden} more directions follow Randomise and Reset." if hidden > 0 else "")
        self._show()

    def set_unavailable(self, sentence: str) -> None:
        """No sliders, only a sentence saying why (a model the panel cannot describe)."""
        self.set_dim(0)
        self.note.setEnabled(True)  # the only thing in the panel: readable, not greyed
        self.note.setText(sentence)

    def set_latent(self, latent, emit: bool = True) -> None:
        """Show a whole vector on the sliders; emits one `latent_changed`, not one per slider.
        The vector is kept as it is: a slider past its end shows the end, its label the value."""
        self._latent = np.asarray(latent, np.float64).copy()
        self._show()
        if emit:
            self.latent_changed.emit(self.latent())

    def is_locked(self, index: int) -> bool:
        return index < len(self._locks) and self._locks[index].isChecked()

    @Slot()
    def randomise(self) -> None:
        """A point from the prior N(0, I); the shown coordinates are rounded to the sliders'
        resolution, so the labels tell the vector exactly."""
        fresh = self._rng.standard_normal(self._latent.shape[0])
        coords = self.directions.coords(fresh)
        now = self.directions.coords(self._latent) if self._latent.size else coords
        shown = {
            i: float(now[i]) if self.is_locked(i) else round(float(coords[i]), 2) for i in range(len(self._sliders))
        }
        self.set_latent(self.directions.with_coords(fresh, shown))

    @Slot()
    def reset(self) -> None:
        self.set_latent(self._keep_locked(self.directions.mean.copy()))

    def _keep_locked(self, latent: np.ndarray) -> np.ndarray:
        """`latent` with the locked directions' coordinates put back, all at once (one by one, a
        direction that is not orthogonal to another would move it again)."""
        if not self._latent.size:
            return latent
        now = self.directions.coords(self._latent)
        return self.directions.with_coords(
            latent, {i: float(now[i]) for i in range(len(self._sliders)) if self.is_locked(i)}
        )

    def _show(self) -> None:
        coords = self.directions.coords(self._latent) if self._latent.size else np.zeros(0)
        for i, slider in enumerate(self._sliders):
            slider.blockSignals(True)  # clipped first: a far-out point must not overflow the slider's int
            slider.setValue(round(float(np.clip(coords[i], -self.span(), self.span())) * TICKS))
            slider.blockSignals(False)
            self._values[i].setText(f"{coords[i]:.2f}")

    def _apply_range(self) -> None:
        for slider in self._sliders:
            slider.blockSignals(True)  # a narrower range clamps the handle, not the latent
            slider.setRange(-self.span() * TICKS, self.span() * TICKS)
            slider.blockSignals(False)

    @Slot(int)
    def _on_range(self, _index: int) -> None:
        self._apply_range()
        self._show()

    def _on_slider(self, index: int, value: int) -> None:
        self._latent = self.directions.moved(self._latent, index, value / TICKS)
        if self.directions.plain_axes:
            self._values[index].setText(f"{value / TICKS:.2f}")
        else:  # stored directions need not be orthogonal: the others may have moved too
            self._show()
        self.latent_changed.emit(self.latent())
