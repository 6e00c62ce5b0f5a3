"""GalleryStrip: one row of thumbnails of the saved images, newest on the left; a click shows one."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QIcon, QImage, QImageReader, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QMenu, QStyle, QWidget

ICON = 96  # px, a thumbnail's longer side
CELL = ICON + 8  # px, room for the selection frame around a thumbnail
DECODE_BUDGET = 0.015  # s of decoding per event-loop turn, so scrolling stays smooth meanwhile
PENDING_GREY = QColor(0x3A, 0x3A, 0x3E)  # not decoded yet
BROKEN_GREY = QColor(0x6E, 0x6E, 0x74)  # could not be decoded
PATH_ROLE = Qt.ItemDataRole.UserRole


class GalleryStrip(QListWidget):
    """Thumbnails of PNGs, newest first. Only the thumbnails scrolled into view (and one either side)
    are decoded, a few per event-loop turn, so a folder of hundreds of images costs a directory
    listing at start-up, not hundreds of decodes."""

    image_chosen = Signal(str)  # the image's path

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._items: dict[str, QListWidgetItem] = {}  # by absolute path
        self._pending: dict[str, None] = {}  # paths still showing the pending grey, newest first
        self._folder: Optional[Path] = None
        self._limit = 300
        self._pending_icon = QIcon(solid(PENDING_GREY))
        self._broken_icon = QIcon(solid(BROKEN_GREY))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)  # icon mode wraps into rows by default
        self.setMovement(QListView.Movement.Static)  # and lets items be dragged about
        self.setIconSize(QSize(ICON, ICON))
        self.setGridSize(QSize(CELL, CELL))
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        # Tall enough for the row with the scroll bar under it, so the bar's arrival moves nothing.
        self.setFixedHeight(CELL + self.horizontalScrollBar().sizeHint().height() + 2 * self.frameWidth() + 4)
        self._decoder = QTimer(self)
        self._decoder.setSingleShot(True)
        self._decoder.setInterval(0)
        self._decoder.timeout.connect(self._decode_visible)
        # Not valueChanged -> start directly: its int would become start(msec), the timer's interval.
        self.horizontalScrollBar().valueChanged.connect(lambda _value: self._decoder.start())
        self.itemActivated.connect(self._choose)
        # Styles that activate on a single click would otherwise report one click twice.
        if not self.style().styleHint(QStyle.StyleHint.SH_ItemView_ActivateItemOnSingleClick):
            self.itemClicked.connect(self._choose)

    # -- content ----------------------------------------------------------------------------------

    def load_folder(self, folder: Path, limit: int = 300) -> None:
        """Show the newest `limit` PNGs of `folder` (none if it does not exist yet)."""
        self.clear()
        self._folder = Path(folder)
        self._limit = limit
        for path in newest_pngs(self._folder, limit):
            self.addItem(self._new_item(path))
        self._decoder.start()

    def add_image(self, path: Path, image: Optional[QImage] = None) -> None:
        """Put `path` first and select it; its thumbnail comes from `image` when given (nothing is
        read from disk). A path already shown is moved, and its thumbnail refreshed."""
        old = self._items.get(key(path))
        if old is not None:
            self._drop_item(old)
        item = self._new_item(Path(path))
        self.insertItem(0, item)
        if image is not None and not image.isNull():
            self._pending.pop(key(path), None)
            item.setIcon(QIcon(thumbnail(image)))
        while self.count() > self._limit:
            self._drop_item(self.item(self.count() - 1))
        self.setCurrentItem(item)
        self.scrollToItem(item)
        self._decoder.start()

    def clear(self) -> None:
        super().clear()
        self._items.clear()
        self._pending.clear()

    def current_path(self) -> str:
        item = self.currentItem()
        return item.data(PATH_ROLE) if item is not None else ""

    def paths(self) -> list[str]:
        """The paths shown, left to right."""
        return [self.item(row).data(PATH_ROLE) for row in range(self.count())]

    def pending_thumbnails(self) -> int:
        """How many thumbnails are still waiting to be decoded (until scrolled into view)."""
        return len(self._pending)

    def _new_item(self, path: Path) -> QListWidgetItem:
        item = QListWidgetItem(self._pending_icon, "")
        item.setData(PATH_ROLE, key(path))
        item.setToolTip(path.name)
        item.setSizeHint(QSize(CELL, CELL))
        self._items[key(path)] = item
        self._pending[key(path)] = None
        return item

    def _drop_item(self, item: QListWidgetItem) -> None:
        path = item.data(PATH_ROLE)
        self._items.pop(path, None)
        self._pending.pop(path, None)
        self.takeItem(self.row(item))

    # -- lazy thumbnails --------------------------------------------------------------------------

    @Slot()
    def _decode_visible(self) -> None:
        if not self._pending or not self.isVisible():
            return  # showEvent starts again
        view = self.viewport().rect().adjusted(-CELL, 0, CELL, 0)
        deadline = time.monotonic() + DECODE_BUDGET
        for path in list(self._pending):
            item = self._items[path]
            if not self.visualItemRect(item).intersects(view):
                continue
            del self._pending[path]
            image, error = read_thumbnail(Path(path))
            if image.isNull():
                item.setIcon(self._broken_icon)
                item.setToolTip(f"{Path(path).name}: could not be read ({error})")
            else:
                item.setIcon(QIcon(thumbnail(image)))
            if time.monotonic() > deadline:
                self._decoder.start()  # the rest on the next turn, after pending input and paints
                return

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._decoder.start()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._decoder.start()

    # -- choosing and the menu --------------------------------------------------------------------

    @Slot(QListWidgetItem)
    def _choose(self, item: QListWidgetItem) -> None:
        self.image_chosen.emit(item.data(PATH_ROLE))

    def wheelEvent(self, event) -> None:  # noqa: N802
        # A plain wheel scrolls the strip sideways: it has nothing to scroll vertically.
        delta = event.angleDelta()
        if abs(delta.y()) > abs(delta.x()):
            bar = self.horizontalScrollBar()
            bar.setValue(bar.value() - delta.y() * CELL // 120)
            event.accept()
        else:
            super().wheelEvent(event)

    def context_menu(self, item: Optional[QListWidgetItem]) -> QMenu:
        """The menu for `item` (None: the empty part of the strip)."""
        path = item.data(PATH_ROLE) if item is not None else ""
        folder = Path(path).parent if path else self._folder
        menu = QMenu(self)
        open_folder = menu.addAction("Open folder")
        open_folder.setEnabled(folder is not None)
        open_folder.triggered.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))))
        copy_path = menu.addAction("Copy path")
        copy_path.setEnabled(bool(path))
        copy_path.triggered.connect(lambda: QGuiApplication.clipboard().setText(path))
        return menu

    def contextMenuEvent(self, event) -> None:  # noqa: N802
        menu = self.context_menu(self.itemAt(event.pos()))
        menu.exec(event.globalPos())
        menu.deleteLater()


def key(path) -> str:
    """How a path is recorded: absolute, so a relative and an absolute spelling are one image."""
    return str(Path(path).absolute())


def newest_pngs(folder: Path, limit: int) -> list[Path]:
    """The `limit` newest *.png files in `folder` by modification time (ties: by name, last first)."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower().endswith(".png") and entry.is_file():
                    try:
                        found.append((entry.stat().st_mtime_ns, entry.name, Path(entry.path)))
                    except OSError:
                        continue  # deleted while we listed
    except OSError:
        return []  # no folder yet: nothing saved
    found.sort(reverse=True)
    return [path for _, _, path in found[:limit]]


def read_thumbnail(path: Path) -> tuple[QImage, str]:
    """A thumbnail-sized image of `path`, and the reader's error (the image is null on failure).
    The reader scales while decoding, so a large PNG is never held in memory at full size."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and (size.width() > ICON or size.height() > ICON):
        reader.setScaledSize(size.scaled(ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return image, reader.errorString()


def thumbnail(image: QImage) -> QPixmap:
    # Large images are filtered down; small ones (32 px emoji) are enlarged with square pixels, as
    # the canvas shows them.
    large = image.width() > ICON or image.height() > ICON
    mode = Qt.TransformationMode.SmoothTransformation if large else Qt.TransformationMode.FastTransformation
    return QPixmap.fromImage(image.scaled(ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio, mode))


def solid(colour: QColor) -> QPixmap:
    pixmap = QPixmap(ICON, ICON)
    pixmap.fill(colour)
    return pixmap
