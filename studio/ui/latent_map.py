"""LatentMap: a grid of decodes around the current point, over two chosen directions.

Cell (row, col) of an N×N map is the current point moved by `reach`·(2·col/(N−1) − 1) σ along the
"across" direction and by `reach`·(1 − 2·row/(N−1)) σ along the "down" one (up is +), so the middle
cell is the current point itself. The map only draws and asks: the workspace decodes the cells
(one LatentBatchJob) and hands the pictures over; clicking a cell emits `cell_chosen` with its
index, and the workspace moves to the point that cell shows (the map then re-centres on it)."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from studio.ui.canvas import BACKGROUND, HINT_COLOR

SIZES = (3, 5, 7, 9)
DEFAULT_SIZE = 5
GAP = 4  # px between cells
CENTRE_COLOR = QColor(0xF0, 0xC0, 0x40)
HOVER_COLOR = QColor(0xFF, 0xFF, 0xFF)


class MapGrid(QWidget):
    """Paints the cells; a click on one emits `clicked(row, col)`."""

    clicked = Signal(int, int)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.size_n = DEFAULT_SIZE
        self.images: list[QImage] = []
        self.hint = ""
        self.hover: Optional[tuple[int, int]] = None
        self.setMouseTracking(True)
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(480, 480)

    def cell_rect(self, row: int, col: int) -> QRect:
        side = self._cell_side()
        grid = self.size_n * side + (self.size_n - 1) * GAP
        left = (self.width() - grid) // 2
        top = (self.height() - grid) // 2
        return QRect(left + col * (side + GAP), top + row * (side + GAP), side, side)

    def cell_at(self, x: float, y: float) -> Optional[tuple[int, int]]:
        for row in range(self.size_n):
            for col in range(self.size_n):
                if self.cell_rect(row, col).contains(int(x), int(y)):
                    return row, col
        return None

    def _cell_side(self) -> int:
        space = min(self.width(), self.height()) - 2 * GAP
        return max(8, (space - (self.size_n - 1) * GAP) // self.size_n)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)  # small decodes stay crisp
        middle = self.size_n // 2
        for row in range(self.size_n):
            for col in range(self.size_n):
                rect = self.cell_rect(row, col)
                index = row * self.size_n + col
                if index < len(self.images):
                    painter.drawImage(rect, self.images[index])
                else:
                    painter.fillRect(rect, BACKGROUND.lighter(120))
                if (row, col) == (middle, middle) or (row, col) == self.hover:
                    color = CENTRE_COLOR if (row, col) == (middle, middle) else HOVER_COLOR
                    painter.setPen(QPen(color, 2))
                    painter.drawRect(rect.adjusted(1, 1, -1, -1))
        if self.hint:
            painter.setPen(HINT_COLOR)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.hint)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        cell = self.cell_at(event.position().x(), event.position().y())
        if cell != self.hover:
            self.hover = cell
            self.update()

    def leaveEvent(self, event) -> None:  # noqa: N802
        self.hover = None
        self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        cell = self.cell_at(event.position().x(), event.position().y())
        if event.button() == Qt.MouseButton.LeftButton and cell is not None:
            self.clicked.emit(*cell)


class LatentMap(QWidget):
    """The map's controls (which two directions, how far, how many cells) over the grid."""

    settings_changed = Signal()
    cell_chosen = Signal(int)  # the clicked cell's index, row by row from the top left

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.across = QComboBox()
        self.across.setToolTip("The direction that changes from left to right")
        self.down = QComboBox()
        self.down.setToolTip("The direction that changes from bottom to top")
        self.reach = QDoubleSpinBox()
        self.reach.setRange(0.1, 10.0)
        self.reach.setSingleStep(0.5)
        self.reach.setValue(2.0)
        self.reach.setSuffix(" σ")
        self.reach.setToolTip("How far the outer cells are from the current point")
        self.cells = QComboBox()
        for n in SIZES:
            self.cells.addItem(f"{n}×{n}", n)
        self.cells.setCurrentIndex(SIZES.index(DEFAULT_SIZE))
        # Two rows of two: the map shares the window with the side panel, so it must stay narrow.
        row = QGridLayout()
        row.setContentsMargins(8, 6, 8, 0)
        row.setHorizontalSpacing(6)
        controls = (("Across", self.across), ("Up", self.down), ("Reach ±", self.reach), ("Cells", self.cells))
        for i, (label, widget) in enumerate(controls):
            if isinstance(widget, QComboBox):
                widget.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
                widget.setMinimumContentsLength(3)
            row.addWidget(QLabel(label), i % 2, 2 * (i // 2))
            row.addWidget(widget, i % 2, 2 * (i // 2) + 1)
        row.setColumnStretch(4, 1)
        self.grid = MapGrid()
        self.grid.clicked.connect(self._on_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        # As narrow as the canvas it shares a tab with: the window's smallest width is not raised
        # by the map's controls (squeezed below ~260 px they are clipped, not the window refused).
        self.setMinimumWidth(160)
        layout.addWidget(self.grid, 1)
        for signal in (
            self.across.currentIndexChanged,
            self.down.currentIndexChanged,
            self.reach.valueChanged,
            self.cells.currentIndexChanged,
        ):
            signal.connect(self._on_settings)

    def set_directions(self, names: list[str]) -> None:
        """The directions on offer (the sliders'); across starts on the first, up on the second."""
        for combo, default in ((self.across, 0), (self.down, 1)):
            combo.blockSignals(True)
            combo.clear()
            for i, name in enumerate(names):
                combo.addItem(name, i)
            combo.setCurrentIndex(min(default, len(names) - 1))
            combo.blockSignals(False)
        self.clear()
        enabled = len(names) >= 2
        for widget in (self.across, self.down, self.reach, self.cells):
            widget.setEnabled(enabled)
        self.grid.hint = "" if enabled else "The map needs a model with two or more directions."

    def size_n(self) -> int:
        return int(self.cells.currentData())

    def axes(self) -> tuple[int, int]:
        return int(self.across.currentData() or 0), int(self.down.currentData() or 0)

    def ready(self) -> bool:
        return self.across.count() >= 2

    def cell_steps(self) -> list[dict[int, float]]:
        """Each cell's steps from the current point, row by row from the top."""
        n, reach = self.size_n(), self.reach.value()
        x, y = self.axes()
        steps = []
        for row in range(n):
            for col in range(n):
                dx = reach * (2 * col / (n - 1) - 1)
                dy = reach * (1 - 2 * row / (n - 1))
                steps.append({x: dx, y: dy} if x != y else {x: dx + dy})
        return steps

    def settings(self) -> tuple:
        """What the map's cells depend on, besides the current point."""
        return (*self.axes(), self.size_n(), round(self.reach.value(), 6))

    def set_images(self, images: list[QImage]) -> None:
        self.grid.images = list(images)
        self.grid.hint = ""
        self.grid.update()

    def clear(self) -> None:
        self.grid.images = []
        self.grid.update()

    def _on_settings(self, *_args) -> None:
        self.grid.size_n = self.size_n()
        self.clear()
        self.settings_changed.emit()

    def _on_clicked(self, row: int, col: int) -> None:
        if self.grid.images:  # a cell with a picture: it says where it is
            self.cell_chosen.emit(row * self.size_n() + col)
