"""PaintCanvas: the Canvas an artist paints an inpainting mask on, and drops or pastes images onto."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QPen, QPixmap, QShortcut
from PySide6.QtWidgets import QGraphicsItem, QGraphicsView, QWidget

from studio.ui.canvas import Canvas

MASK_COLOR = QColor(255, 0, 200)  # magenta: it stands out on skin, skies and red apples alike
MASK_OPACITY = 0.45
MIN_BRUSH, MAX_BRUSH = 1, 512  # px in image space
UNDO_DEPTH = 20  # masks kept for Ctrl+Z: 20 MB at 1024 x 1024, since a mask is 1 byte a pixel
TOOLS = ("pan", "brush", "eraser")


class MaskOverlay(QGraphicsItem):
    """The mask drawn as translucent colour over the image. Its coloured pixmap is rebuilt when the
    item is next painted, not per brush sample, so a fast stroke costs one rebuild per frame."""

    def __init__(self) -> None:
        super().__init__()
        self._mask = QImage()
        self._pixmap = QPixmap()
        self._stale = False
        self.setOpacity(MASK_OPACITY)
        self.setZValue(1)

    def set_mask(self, mask: QImage) -> None:
        self.prepareGeometryChange()
        self._mask = mask  # the canvas paints into this very object; mark_changed says when
        self.mark_changed()

    def mark_changed(self, rect: Optional[QRectF] = None) -> None:
        self._stale = True
        self.update(rect if rect is not None else self.boundingRect())

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return QRectF(self._mask.rect())

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self._mask.isNull():
            return
        if self._stale:
            overlay = QImage(self._mask.size(), QImage.Format.Format_ARGB32_Premultiplied)
            overlay.fill(MASK_COLOR)
            overlay.setAlphaChannel(self._mask)  # grey levels become alpha: 255 is full colour
            self._pixmap = QPixmap.fromImage(overlay)
            self._stale = False
        painter.drawPixmap(0, 0, self._pixmap)


class PaintCanvas(Canvas):
    """A Canvas with a mask layer (Grayscale8, 255 = repaint) painted with a round brush.

    Tools: "pan" drags the view; "brush" and "eraser" paint with the left button. The middle button,
    or space held with the left one, pans in any tool; the wheel always zooms. Ctrl+Z undoes the last
    mask edit. Dropped or pasted images are offered through `image_dropped`: the workspace decides
    what to do with them (a PNG may carry generation settings), the canvas keeps its image."""

    mask_changed = Signal()  # once per finished stroke, and on clear, invert, set_mask and undo

    def __init__(self, placeholder: str = "", parent: Optional[QWidget] = None):
        super().__init__(placeholder, parent)
        self._mask = QImage()
        self._overlay = MaskOverlay()
        self._scene.addItem(self._overlay)
        self._tool = "pan"
        self._brush_size = 32
        self._history: list[QImage] = []
        self._last: Optional[QPointF] = None  # image point of the stroke under way
        self._pan_from: Optional[QPointF] = None  # viewport point of the middle/space drag under way
        self._space_held = False
        self._hover: Optional[QPointF] = None  # viewport point the brush outline is drawn at
        self.viewport().setMouseTracking(True)  # the brush outline follows the mouse without a button
        self.accept_images()
        QShortcut(QKeySequence.StandardKey.Undo, self, self.undo, context=Qt.ShortcutContext.WidgetShortcut)

    # -- image and mask ---------------------------------------------------------------------------

    @Slot(QImage)
    def set_image(self, image: QImage) -> None:
        """Show `image`. The mask is kept when the size is the same (previews of an inpaint job), and
        cleared otherwise, since it would no longer line up."""
        cleared = False
        if image.size() != self._image.size():
            cleared = self.has_mask()
            self._history.clear()  # older masks would not line up either
            self._replace_mask(self._blank_mask(image))
        super().set_image(image)
        if cleared:
            self.mask_changed.emit()  # after the new image is in place, for listeners that read both

    def mask_image(self) -> QImage:
        return QImage(self._mask)  # implicitly shared: the caller's edits detach it from ours

    def set_mask(self, mask: QImage) -> None:
        """Use `mask` (any format; grey level 255 = repaint), scaled to the image if its size differs."""
        if self._image.isNull():
            return
        mask = mask.convertToFormat(QImage.Format.Format_Grayscale8)
        if mask.size() != self._image.size():
            mask = mask.scaled(self._image.size(), Qt.AspectRatioMode.IgnoreAspectRatio)
        self._remember()
        self._replace_mask(mask)
        self.mask_changed.emit()

    def has_mask(self) -> bool:
        """Whether any pixel is marked for repainting."""
        if self._mask.isNull():
            return False
        rows = np.frombuffer(self._mask.constBits(), np.uint8).reshape(self._mask.height(), -1)
        return bool(rows[:, : self._mask.width()].any())  # rows are padded to 4 bytes: skip the padding

    @Slot()
    def clear_mask(self) -> None:
        if self.has_mask():
            self._remember()
            self._mask.fill(0)
            self._overlay.mark_changed()
            self.mask_changed.emit()

    @Slot()
    def invert_mask(self) -> None:
        if not self._mask.isNull():
            self._remember()
            self._mask.invertPixels()
            self._overlay.mark_changed()
            self.mask_changed.emit()

    @Slot(bool)
    def show_mask(self, visible: bool) -> None:
        self._overlay.setVisible(visible)

    @Slot()
    def undo(self) -> bool:
        """Put back the mask as it was before the last edit; False when there is nothing to undo."""
        if not self._history:
            return False
        self._replace_mask(self._history.pop())
        self.mask_changed.emit()
        return True

    def _blank_mask(self, image: QImage) -> QImage:
        if image.isNull():
            return QImage()
        mask = QImage(image.size(), QImage.Format.Format_Grayscale8)
        mask.fill(0)
        return mask

    def _replace_mask(self, mask: QImage) -> None:
        self._mask = mask
        self._overlay.set_mask(mask)

    def _remember(self) -> None:
        self._history.append(QImage(self._mask))  # a shared copy: the next edit detaches ours from it
        del self._history[:-UNDO_DEPTH]

    # -- tools ------------------------------------------------------------------------------------

    def tool(self) -> str:
        return self._tool

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"`tool` must be one of {', '.join(TOOLS)}, not {tool!r}.")
        self._tool = tool
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag if tool == "pan" else QGraphicsView.DragMode.NoDrag)
        self._update_cursor()
        self.viewport().update()

    def brush_size(self) -> int:
        return self._brush_size

    def set_brush_size(self, size: int) -> None:
        self._brush_size = max(MIN_BRUSH, min(MAX_BRUSH, int(size)))
        self.viewport().update()

    def _painting(self) -> bool:
        return self._tool != "pan" and not self._mask.isNull()

    def _update_cursor(self) -> None:
        if self._pan_from is not None:
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        elif self._space_held or self._tool == "pan":
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        else:
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)  # the brush outline is drawn around it

    def _to_image(self, viewport_point: QPointF) -> QPointF:
        # Not mapToScene(QPoint): it rounds, and at high zoom a viewport pixel is a fraction of one.
        return self.viewportTransform().inverted()[0].map(viewport_point)

    def _stroke_to(self, point: QPointF) -> None:
        start = self._last if self._last is not None else point
        painter = QPainter(self._mask)
        # Aliased on purpose: the mask stays strictly 0 or 255, so what shows red is what is repainted.
        colour = QColor(255, 255, 255) if self._tool == "brush" else QColor(0, 0, 0)
        painter.setPen(
            QPen(colour, self._brush_size, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
        )
        if start == point:
            painter.drawPoint(point)  # a zero-length line draws nothing, even with round caps
        else:
            painter.drawLine(start, point)
        painter.end()
        reach = self._brush_size / 2 + 2
        self._overlay.mark_changed(QRectF(start, point).normalized().adjusted(-reach, -reach, reach, reach))
        self._last = point

    # -- mouse and keys ---------------------------------------------------------------------------

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space_held):
            self._pan_from = event.position()
            self._update_cursor()
        elif button == Qt.MouseButton.LeftButton and self._painting():
            self._remember()
            self._last = None
            self._stroke_to(self._to_image(event.position()))
        else:
            super().mousePressEvent(event)
            return
        event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        self._move_outline(event.position())
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
        elif self._last is not None:
            self._stroke_to(self._to_image(event.position()))
        else:
            super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._update_cursor()
        elif self._last is not None and event.button() == Qt.MouseButton.LeftButton:
            self._last = None
            self.mask_changed.emit()
        else:
            super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        # Quick dabs arrive as double-clicks: with a brush they paint, rather than fitting the view.
        if event.button() == Qt.MouseButton.LeftButton and self._painting() and not self._space_held:
            self.mousePressEvent(event)
        else:
            super().mouseDoubleClickEvent(event)

    def wheelEvent(self, event) -> None:  # noqa: N802
        super().wheelEvent(event)
        self.viewport().update()  # the brush outline's size follows the zoom

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_held = True
                self._update_cursor()
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_held = False
                self._update_cursor()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:  # noqa: N802
        self._space_held = False  # its release goes to whichever widget has focus by then
        self._update_cursor()
        super().focusOutEvent(event)

    def viewportEvent(self, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Leave:
            self._move_outline(None)
        return super().viewportEvent(event)

    def _outline_rect(self, centre: QPointF) -> QRectF:
        """The brush outline around `centre`, a viewport point."""
        radius = self._brush_size * self.zoom() / 2
        return QRectF(centre.x() - radius, centre.y() - radius, 2 * radius, 2 * radius)

    def _move_outline(self, point: Optional[QPointF]) -> None:
        if self._hover is not None:
            self.viewport().update(self._outline_rect(self._hover).toAlignedRect().adjusted(-2, -2, 2, 2))
        self._hover = point
        if point is not None and self._painting():
            self.viewport().update(self._outline_rect(point).toAlignedRect().adjusted(-2, -2, 2, 2))

    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802
        super().drawForeground(painter, rect)
        if self._hover is None or not self._painting():
            return
        painter.save()
        painter.resetTransform()  # the outline is drawn in viewport pixels
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        outline = self._outline_rect(self._hover)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 1))  # dark then light: visible on any picture
        painter.drawEllipse(outline.adjusted(-1, -1, 1, 1))
        painter.setPen(QPen(QColor(255, 255, 255, 220), 1))
        painter.drawEllipse(outline)
        painter.restore()

    # -- drop and paste ---------------------------------------------------------------------------
