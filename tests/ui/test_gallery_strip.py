"""GalleryStrip: newest first, no duplicates, lazy thumbnails, broken files shown as grey."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage
from PySide6.QtTest import QTest

from studio.ui import gallery_strip
from studio.ui.gallery_strip import BROKEN_GREY, GalleryStrip

BASE = 1_700_000_000  # an mtime, s


def write_png(path: Path, colour: str = "teal", age: int = 0, size: int = 40) -> Path:
    image = QImage(size, size, QImage.Format.Format_RGB888)
    image.fill(QColor(colour))
    assert image.save(str(path))
    os.utime(path, (BASE - age, BASE - age))
    return path


def icon_colour(strip: GalleryStrip, row: int) -> QColor:
    pixmap = strip.item(row).icon().pixmap(gallery_strip.ICON)
    return pixmap.toImage().pixelColor(pixmap.width() // 2, pixmap.height() // 2)


@pytest.fixture
def strip(qtbot) -> GalleryStrip:
    strip = GalleryStrip()
    qtbot.addWidget(strip)
    strip.resize(600, strip.height())
    return strip


def test_load_folder_lists_newest_first_within_the_limit(strip, tmp_path):
    # Names in the opposite order to their ages, so only the mtime can give the right order.
    for name, age in (("a.png", 10), ("b.png", 30), ("c.png", 20), ("d.png", 0)):
        write_png(tmp_path / name, age=age)
    (tmp_path / "notes.txt").write_text("not an image")
    strip.load_folder(tmp_path)
    assert [Path(p).name for p in strip.paths()] == ["d.png", "a.png", "c.png", "b.png"]
    strip.load_folder(tmp_path, limit=2)
    assert [Path(p).name for p in strip.paths()] == ["d.png", "a.png"]
    strip.load_folder(tmp_path / "not yet made")
    assert strip.count() == 0


def test_add_image_goes_first_and_is_never_duplicated(strip, qtbot, tmp_path):
    for name, age in (("old.png", 20), ("mid.png", 10)):
        write_png(tmp_path / name, age=age)
    strip.load_folder(tmp_path)
    new = write_png(tmp_path / "new.png", colour="red")
    pixels = QImage(200, 100, QImage.Format.Format_RGB888)
    pixels.fill(QColor("yellow"))
    strip.add_image(new, pixels)  # not the file's red: nothing is read from disk
    assert [Path(p).name for p in strip.paths()] == ["new.png", "mid.png", "old.png"]
    assert strip.current_path() == str(new)
    assert icon_colour(strip, 0) == QColor("yellow")
    assert strip.pending_thumbnails() == 2  # hidden: nothing decoded

    strip.add_image(tmp_path / "old.png")
    assert [Path(p).name for p in strip.paths()] == ["old.png", "new.png", "mid.png"]
    strip.show()
    qtbot.waitUntil(lambda: strip.pending_thumbnails() == 0, timeout=2000)
    assert icon_colour(strip, 0) == QColor("teal")


def test_clicking_a_thumbnail_chooses_its_path(strip, qtbot, tmp_path):
    for name, age in (("one.png", 0), ("two.png", 10)):
        write_png(tmp_path / name, age=age)
    strip.load_folder(tmp_path)
    strip.show()
    qtbot.waitExposed(strip)
    centre = strip.visualItemRect(strip.item(1)).center()
    with qtbot.waitSignal(strip.image_chosen, timeout=1000) as blocker:
        QTest.mouseClick(strip.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    assert blocker.args == [str(tmp_path / "two.png")]
    assert strip.current_path() == str(tmp_path / "two.png")
    assert strip.item(1).toolTip() == "two.png"


def test_a_corrupt_png_gets_a_grey_placeholder(strip, qtbot, tmp_path):
    write_png(tmp_path / "good.png", colour="blue", age=10, size=300)  # larger than a thumbnail
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    strip.load_folder(tmp_path)
    strip.show()
    qtbot.waitUntil(lambda: strip.pending_thumbnails() == 0, timeout=2000)
    assert [Path(p).name for p in strip.paths()] == ["corrupt.png", "good.png"]
    assert icon_colour(strip, 0) == BROKEN_GREY
    assert "could not be read" in strip.item(0).toolTip()
    assert icon_colour(strip, 1) == QColor("blue")
    assert strip.item(1).icon().pixmap(gallery_strip.ICON).width() == gallery_strip.ICON


def test_only_thumbnails_in_view_are_decoded(strip, qtbot, tmp_path):
    for n in range(40):
        write_png(tmp_path / f"{n:02}.png", age=n)
    strip.load_folder(tmp_path)
    assert strip.pending_thumbnails() == 40  # load_folder itself decodes nothing
    strip.show()
    qtbot.waitExposed(strip)
    qtbot.waitUntil(lambda: strip.pending_thumbnails() < 40, timeout=2000)
    qtbot.wait(50)
    assert strip.pending_thumbnails() > 25  # about 8 fit in 600 px, plus one either side
    strip.horizontalScrollBar().setValue(strip.horizontalScrollBar().maximum())
    qtbot.waitUntil(lambda: strip.item(39).icon().pixmap(8).toImage().pixelColor(4, 4) == QColor("teal"), timeout=2000)


def test_context_menu_copies_the_path_and_opens_the_folder(strip, tmp_path, monkeypatch):
    path = write_png(tmp_path / "shown.png")
    strip.load_folder(tmp_path)
    opened = []
    monkeypatch.setattr(gallery_strip, "QDesktopServices", type("Fake", (), {"openUrl": staticmethod(opened.append)}))
    menu = strip.context_menu(strip.item(0))
    actions = {action.text(): action for action in menu.actions()}
    assert list(actions) == ["Open folder", "Copy path"]
    actions["Copy path"].trigger()
    assert QGuiApplication.clipboard().text() == str(path)
    actions["Open folder"].trigger()
    assert [url.toLocalFile() for url in opened] == [str(tmp_path)]
    empty = {action.text(): action.isEnabled() for action in strip.context_menu(None).actions()}
    assert empty == {"Open folder": True, "Copy path": False}


def test_wheel_scrolls_sideways(strip, qtbot, tmp_path):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    for n in range(20):
        write_png(tmp_path / f"{n:02}.png", age=n)
    strip.load_folder(tmp_path)
    strip.show()
    qtbot.waitExposed(strip)
    pos = QPointF(strip.viewport().rect().center())
    event = QWheelEvent(
        pos,
        strip.mapToGlobal(pos.toPoint()),
        QPoint(),
        QPoint(0, -120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(strip.viewport(), event)
    assert strip.horizontalScrollBar().value() > 0
