"""Canvas: shows one image with zoom, pan and fit-to-view, on a dark neutral background."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QMimeData, QRectF, Qt, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QGuiApplication,
    QImage,
    QImageReader,
    QKeySequence,
    QPainter,
    QPixmap,
    QShortcut,
    QTransform,
)
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

BACKGROUND = QColor(0x2B, 0x2B, 0x2E)
HINT_COLOR = QColor(0x8A, 0x8A, 0x90)
MAX_DROP_BYTES = 64 * 1024 * 1024  # 64 MB
MIN_ZOOM, MAX_ZOOM = 0.05, 64.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch
FIT_MARGIN = 16  # px of background kept around a fitted image, so its edges read as edges


class Canvas(QGraphicsView):
    """An image viewer: wheel zooms about the cursor, drag pans, double-click or F fits, 1 is 100%.

    While the view is "fitted" it stays fitted as the window resizes and as new images arrive, so
    previews of a render do not jump about; after a manual zoom the zoom is kept.

    After `accept_images()`, pictures dropped or pasted (Ctrl+V) on it are offered through
    `image_dropped`: the workspace decides what they mean; the canvas keeps its image."""

    image_dropped = Signal(QImage, str)  # the image, and its local file path ("" when not from a file)
    drop_refused = Signal(str)  # one sentence saying why

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

    # -- dropped and pasted pictures ---------------------------------------------------------------

    def accept_images(self) -> None:
        """Take pictures dropped on the canvas or pasted into it (Ctrl+V)."""
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        QShortcut(QKeySequence.StandardKey.Paste, self, self.paste, context=Qt.ShortcutContext.WidgetShortcut)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        # Not passed on to QGraphicsView: it asks the scene, which has no item that takes drops.
        if offers_image(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        if self.take_image(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    @Slot()
    def paste(self) -> None:
        self.take_image(QGuiApplication.clipboard().mimeData())

    def take_image(self, mime: Optional[QMimeData]) -> bool:
        """Emit `image_dropped` for the image `mime` holds (or `drop_refused` for one that cannot be
        used); False when it holds no image at all."""
        if mime is None or not offers_image(mime):
            return False
        path = local_image_path(mime)
        if path is None:
            image = QImage(mime.imageData())
            if image.isNull():
                return False
            self.image_dropped.emit(image, "")
            return True
        try:
            size = path.stat().st_size
        except OSError as exc:
            self.drop_refused.emit(f"Could not open {path.name} ({exc.strerror or exc}).")
            return True
        if size > MAX_DROP_BYTES:
            self.drop_refused.emit(f"{path.name} is {size / 2**20:.0f} MB; images over 64 MB are not opened.")
            return True
        reader = QImageReader(str(path))
        reader.setAutoTransform(True)  # phone photos are stored sideways with an EXIF rotation
        image = reader.read()
        if image.isNull():
            self.drop_refused.emit(f"Could not read {path.name} as an image ({reader.errorString()}).")
            return True
        self.image_dropped.emit(image, str(path))
        return True


def local_image_path(mime: QMimeData) -> Optional[Path]:
    """The first local file in `mime` whose name says it is an image Qt can read."""
    readable = {bytes(name.data()).decode().lower() for name in QImageReader.supportedImageFormats()}
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.suffix.lower().lstrip(".") in readable:
                return path
    return None


def offers_image(mime: QMimeData) -> bool:
    # Judged by file name: decoding during a drag would stall it. take_image checks the content.
    return local_image_path(mime) is not None or mime.hasImage()
