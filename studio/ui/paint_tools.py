"""PaintTools: the row above the canvas: pan, brush and eraser for the inpainting mask, brush
size, clear, invert, show/hide the mask, fit."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QButtonGroup, QLabel, QSpinBox, QToolBar, QToolButton, QWidget

from studio.state.settings_store import SettingsStore
from studio.ui.paint_canvas import PaintCanvas

TOOLS = (
    ("pan", "Pan", "Drag to move around the picture (H)"),
    ("brush", "Brush", "Paint the area inpainting repaints (B)"),
    ("eraser", "Eraser", "Take area out of the mask (E)"),
)


class PaintTools(QToolBar):
    """A tool bar, so a narrow window folds the last tools into its overflow menu."""

    def __init__(self, canvas: PaintCanvas, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setMovable(False)
        self.setIconSize(QSize(16, 16))
        self.canvas = canvas
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QToolButton] = {}
        layout = self  # QToolBar.addWidget places each control
        for key, text, tip in TOOLS:
            button = QToolButton()
            button.setText(text)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.setShortcut(tip[-2])
            button.clicked.connect(lambda _=False, key=key: self.set_tool(key))
            self.group.addButton(button)
            self.buttons[key] = button
            layout.addWidget(button)
        self.brush_size = QSpinBox()
        self.brush_size.setRange(1, 512)
        self.brush_size.setSuffix(" px")
        self.brush_size.setToolTip("Brush size, in picture pixels")
        self.brush_size.valueChanged.connect(canvas.set_brush_size)
        layout.addSeparator()
        layout.addWidget(QLabel(" Size "))
        layout.addWidget(self.brush_size)
        layout.addSeparator()
        self.clear_mask = self._action("Clear mask", "Remove the whole mask", canvas.clear_mask)
        self.invert = self._action("Invert", "Repaint what is outside the mask instead", canvas.invert_mask)
        self.show_mask = self._action("Show mask", "Show or hide the mask (it is kept either way)", None)
        self.show_mask.setCheckable(True)
        self.show_mask.setChecked(True)
        self.show_mask.toggled.connect(canvas.show_mask)
        for button in (self.clear_mask, self.invert, self.show_mask):
            layout.addWidget(button)
        layout.addSeparator()
        layout.addWidget(self._action("Fit", "Fit the picture in the view (F)", canvas.fit_to_view))
        self.brush_size.setValue(canvas.brush_size())
        self.set_tool("pan")

    def _action(self, text: str, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        if slot is not None:
            button.clicked.connect(lambda _=False: slot())
        return button

    def set_tool(self, key: str) -> None:
        self.canvas.set_tool(key)
        self.buttons[key].setChecked(True)
        self.brush_size.setEnabled(key != "pan")

    def save_settings(self, store: SettingsStore) -> None:
        store.set("image/tool", self.canvas.tool())
        store.set("image/brush_size", self.canvas.brush_size())

    def restore_settings(self, store: SettingsStore) -> None:
        tool = store.get("image/tool", "pan")
        self.set_tool(tool if tool in self.buttons else "pan")
        self.brush_size.setValue(store.get("image/brush_size", self.canvas.brush_size()))
