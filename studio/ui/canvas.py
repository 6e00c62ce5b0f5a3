"""Canvas: shows one image with zoom, pan and fit-to-view, on a dark neutral background."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QRectF, Qt, Slot
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QPixmap, QShortcut, QTransform
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

BACKGROUND = QColor(0x2B, 0x2B, 0x2E)
HINT_COLOR = QColor(0x8A, 0x8A, 0x90)
MIN_ZOOM, MAX_ZOOM = 0.05, 64.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch
FIT_MARGIN = 16  # px of background kept around a fitted image, so its edges read as edges


class Canvas(QGraphicsView):
    """An image viewer: wheel zooms about the cursor, drag pans, double-click or F fits, 1 is 100%.

    While the view is "fitted" it stays fitted as the window resizes and as new images arrive, so
    previews of a render do not jump about; after a manual zoom the zoom is kept."""

    def __init__(self, placeholder: str = "", parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._placeholder = placeholder
        self._image = QImage()
        self._fitted = True
        self._scene = QGraphicsScene(self)
        self._item = QGraphicsPixmapItem()
        self._scene.addItem(self._item)
        self.setScene(self._scene)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(BACKGROUND)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setMinimumSize(160, 160)
        QShortcut(QKeySequence("F"), self, self.fit_to_view, context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence("1"), self, self.actual_size, context=Qt.ShortcutContext.WidgetShortcut)

    # -- image ------------------------------------------------------------------------------------

    def image(self) -> QImage:
        return self._image

    @Slot(QImage)
    def set_image(self, image: QImage) -> None:
        resized = image.size() != self._image.size()
        self._image = image
        self._item.setPixmap(QPixmap.fromImage(image))
        self._scene.setSceneRect(QRectF(image.rect()))
        if resized and self._fitted:
            self.fit_to_view()
        self._update_sampling()
        self.viewport().update()

    def clear(self) -> None:
        self.set_image(QImage())

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.viewport().update()

    # -- zoom -------------------------------------------------------------------------------------

    def zoom(self) -> float:
        return self.transform().m11()

    @Slot()
    def fit_to_view(self) -> None:
        self._fitted = True
        if self._image.isNull():
            return
        view = self.viewport().rect().adjusted(FIT_MARGIN, FIT_MARGIN, -FIT_MARGIN, -FIT_MARGIN)
        scale = min(view.width() / self._image.width(), view.height() / self._image.height())
        self.setTransform(QTransform.fromScale(max(scale, MIN_ZOOM), max(scale, MIN_ZOOM)))
        self.centerOn(self._item)
        self._update_sampling()

    @Slot()
    def actual_size(self) -> None:
        self._fitted = False
        self.setTransform(QTransform())
        self._update_sampling()

    def zoom_by(self, factor: float) -> None:
        target = min(MAX_ZOOM, max(MIN_ZOOM, self.zoom() * factor))
        if self._image.isNull() or target == self.zoom():
            return
        self._fitted = False
        self.scale(target / self.zoom(), target / self.zoom())
        self._update_sampling()

    def _update_sampling(self) -> None:
        # Enlarged pixels stay square (a 32 px latent preview reads as pixels, not mush); reduced
        # images are filtered, or fine detail would shimmer and alias.
        smooth = self.zoom() < 1.0
        mode = Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
        self._item.setTransformationMode(mode)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)

    # -- events -----------------------------------------------------------------------------------

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        # Plain wheel and ctrl+wheel both zoom: a canvas has nothing else to scroll through.
        delta = event.angleDelta().y()
        if delta:
            self.zoom_by(WHEEL_STEP ** (delta / 120))
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.fit_to_view()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fitted:
            self.fit_to_view()

    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802
        if not self._image.isNull() or not self._placeholder:
            return
        painter.save()
        painter.resetTransform()  # draw in viewport pixels, whatever the zoom
        painter.setPen(HINT_COLOR)
        area = self.viewport().rect().adjusted(24, 24, -24, -24)
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
        painter.restore()
