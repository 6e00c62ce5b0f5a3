"""LoraList: the LoRAs a job applies, each with a weight slider, several at once.

LoRAs come from the models folders (the registry lists `.safetensors` LoRA files as kind "lora");
a LoRA restored from an image's settings stays listed by its path even if it is not there now,
so the job says what it needs and the engine names the missing file."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

SLIDER_SCALE = 100  # slider units per weight unit: weights move in steps of 0.01
SLIDER_RANGE = (-1.0, 2.0)  # what people use; the spin box takes anything the spec allows


class LoraRow(QWidget):
    removed = Signal(object)  # this row
    changed = Signal()

    def __init__(self, path: str, weight: float, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.path = path
        self.name = QLabel(Path(path).stem)
        self.name.setTextFormat(Qt.TextFormat.PlainText)  # a path from an image's settings is untrusted
        self.name.setToolTip(html.escape(path))
        self.name.setMinimumWidth(60)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(int(SLIDER_RANGE[0] * SLIDER_SCALE), int(SLIDER_RANGE[1] * SLIDER_SCALE))
        self.weight = QDoubleSpinBox()
        self.weight.setRange(-10.0, 10.0)
        self.weight.setSingleStep(0.05)
        self.weight.setDecimals(2)
        self.remove = QToolButton()
        self.remove.setText("✕")
        self.remove.setToolTip(html.escape(f"Remove {Path(path).stem}"))
        self.remove.clicked.connect(lambda: self.removed.emit(self))
        # The slider and the box show one value; each follows the other without echoing back.
        self.slider.valueChanged.connect(lambda v: self._set(v / SLIDER_SCALE, from_slider=True))
        self.weight.valueChanged.connect(lambda v: self._set(v, from_slider=False))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.name, 2)
        layout.addWidget(self.slider, 3)
        layout.addWidget(self.weight)
        layout.addWidget(self.remove)
        self._set(weight, from_slider=False)

    def _set(self, value: float, from_slider: bool) -> None:
        if from_slider:
            self.weight.blockSignals(True)
            self.weight.setValue(value)
            self.weight.blockSignals(False)
        else:
            self.slider.blockSignals(True)
            self.slider.setValue(round(value * SLIDER_SCALE))
            self.slider.blockSignals(False)
            if self.weight.value() != value:
                self.weight.blockSignals(True)
                self.weight.setValue(value)
                self.weight.blockSignals(False)
        self.changed.emit()

    def value(self) -> tuple[str, float]:
        return self.path, round(self.weight.value(), 2)


class LoraList(QWidget):
    changed = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.rows: list[LoraRow] = []
        self.available = QComboBox()
        self.available.setToolTip("LoRA files found in the models folders")
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(self._add_selected)
        picker = QHBoxLayout()
        picker.addWidget(self.available, 1)
        picker.addWidget(self.add_button)
        self._rows_layout = QVBoxLayout()
        self._rows_layout.setSpacing(2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(picker)
        layout.addLayout(self._rows_layout)
        self.set_available([])

    def set_available(self, loras: list[tuple[str, str]]) -> None:
        """Offer these (title, path) LoRAs in the picker."""
        self.available.clear()
        for title, path in loras:
            self.available.addItem(title, path)
        has_any = bool(loras)
        if not has_any:
            self.available.addItem("No LoRA files in the models folders", "")
        self.available.setEnabled(has_any)
        self.add_button.setEnabled(has_any)

    def available_paths(self) -> list[str]:
        return [p for p in (self.available.itemData(i) for i in range(self.available.count())) if p]

    @Slot()
    def _add_selected(self) -> None:
        path = self.available.currentData()
        if path and path not in {row.path for row in self.rows}:
            self.add(path, 1.0)

    def add(self, path: str, weight: float) -> LoraRow:
        row = LoraRow(path, weight)
        row.removed.connect(self._remove)
        row.changed.connect(self.changed)
        self.rows.append(row)
        self._rows_layout.addWidget(row)
        self.changed.emit()
        return row

    @Slot(object)
    def _remove(self, row: LoraRow) -> None:
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.changed.emit()

    def value(self) -> tuple[tuple[str, float], ...]:
        return tuple(row.value() for row in self.rows)

    def set_value(self, loras: tuple[tuple[str, float], ...]) -> None:
        for row in list(self.rows):
            self._remove(row)
        for path, weight in loras:
            self.add(path, weight)
