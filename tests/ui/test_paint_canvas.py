"""PaintCanvas: mask strokes land on the right image pixels at any zoom; tools, mask edits, drops."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from studio.ui.paint_canvas import PaintCanvas


def grey(width: int, height: int) -> QImage:
    image = QImage(width, height, QImage.Format.Format_RGB888)
    image.fill(QColor(128, 128, 128))
    return image


def mask_at(canvas: PaintCanvas, x: int, y: int) -> int:
    return canvas.mask_image().pixelColor(x, y).red()


def on_screen(canvas: PaintCanvas, x: float, y: float) -> QPoint:
    """The viewport point over the centre of image pixel (x, y)."""
    return canvas.mapFromScene(QPointF(x + 0.5, y + 0.5))


def drag(canvas: PaintCanvas, pixels: list[tuple[int, int]], button=Qt.MouseButton.LeftButton) -> None:
    """Press over the first image pixel, move over the others, release over the last."""
    viewport = canvas.viewport()
    points = [on_screen(canvas, x, y) for x, y in pixels]
    QTest.mousePress(viewport, button, Qt.KeyboardModifier.NoModifier, points[0])
    for point in points[1:]:
        QTest.mouseMove(viewport, point)
    QTest.mouseRelease(viewport, button, Qt.KeyboardModifier.NoModifier, points[-1])


@pytest.fixture
def canvas(qtbot) -> PaintCanvas:
    canvas = PaintCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 400)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_image(grey(100, 100))
    return canvas


@pytest.mark.parametrize("zoom", ["fitted", "actual size"])
def test_brush_stroke_paints_a_continuous_line_in_image_pixels(canvas, qtbot, zoom):
    if zoom == "actual size":
        canvas.actual_size()
        assert canvas.zoom() == 1.0
    else:
        assert 3.0 < canvas.zoom() < 4.0  # (400 - 2 * margin) / 100
    canvas.set_tool("brush")
    canvas.set_brush_size(5)
    assert not canvas.has_mask()
    with qtbot.waitSignal(canvas.mask_changed, timeout=1000):
        drag(canvas, [(20, 30), (60, 30)])  # two samples far apart: the stroke joins them

    mask = canvas.mask_image()
    assert mask.format() == QImage.Format.Format_Grayscale8
    assert (mask.width(), mask.height()) == (100, 100)
    assert all(mask_at(canvas, x, 30) == 255 for x in range(20, 61))
    assert mask_at(canvas, 40, 32) == 255  # a round brush 5 px across: 2 px either side
    assert mask_at(canvas, 40, 34) == 0
    assert mask_at(canvas, 40, 26) == 0
    assert mask_at(canvas, 14, 30) == 0  # the round cap does not reach 6 px past the ends
    assert mask_at(canvas, 66, 30) == 0
    assert canvas.has_mask()


def test_eraser_clears_what_the_brush_painted(canvas):
    canvas.set_tool("brush")
    canvas.set_brush_size(9)
    drag(canvas, [(10, 50), (50, 50), (50, 90)])
    assert mask_at(canvas, 50, 70) == 255
    canvas.set_tool("eraser")
    canvas.set_brush_size(15)
    drag(canvas, [(50, 70), (50, 95)])
    assert mask_at(canvas, 50, 70) == 0
    assert mask_at(canvas, 30, 50) == 255  # only under the eraser
    drag(canvas, [(5, 50), (50, 50), (50, 70)])  # the rest, corner included
    assert not canvas.has_mask()


def test_pan_tool_and_middle_drag_do_not_paint_and_middle_drag_pans(canvas):
    canvas.set_tool("pan")
    drag(canvas, [(20, 20), (60, 60)])
    assert not canvas.has_mask()

    canvas.set_tool("brush")
    canvas.zoom_by(4)  # larger than the view, so there is somewhere to pan to
    bar = canvas.horizontalScrollBar()
    assert bar.maximum() > 0
    bar.setValue(bar.maximum() // 2)
    before = bar.value()
    viewport = canvas.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(200, 200))
    QTest.mouseMove(viewport, QPoint(150, 200))
    QTest.mouseRelease(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(150, 200))
    assert bar.value() == before + 50  # the picture follows the hand
    assert not canvas.has_mask()

    QTest.keyPress(canvas, Qt.Key.Key_Space)  # space + left drag pans too
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(150, 200))
    QTest.mouseMove(viewport, QPoint(180, 200))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(180, 200))
    QTest.keyRelease(canvas, Qt.Key.Key_Space)
    assert bar.value() == before + 50 - 30
    assert not canvas.has_mask()


def test_wheel_still_zooms_with_a_brush(canvas):
    canvas.set_tool("brush")
    fitted = canvas.zoom()
    pos = QPointF(canvas.viewport().rect().center())
    event = QWheelEvent(
        pos,
        canvas.mapToGlobal(pos.toPoint()),
        QPoint(),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas.viewport(), event)
    assert abs(canvas.zoom() - fitted * 1.25) < 1e-6


def test_invert_clear_and_undo(canvas, qtbot):
    with qtbot.waitSignal(canvas.mask_changed, timeout=1000):
        canvas.invert_mask()
    assert mask_at(canvas, 0, 0) == 255 and mask_at(canvas, 99, 99) == 255
    canvas.set_tool("brush")
    canvas.set_brush_size(1)
    canvas.set_tool("eraser")
    drag(canvas, [(10, 10)])
    assert mask_at(canvas, 10, 10) == 0 and mask_at(canvas, 11, 10) == 255  # a 1 px eraser: one pixel
    canvas.invert_mask()
    assert mask_at(canvas, 10, 10) == 255 and mask_at(canvas, 11, 10) == 0
    canvas.clear_mask()
    assert not canvas.has_mask()

    assert canvas.undo()  # the clear
    assert mask_at(canvas, 10, 10) == 255 and mask_at(canvas, 11, 10) == 0
    assert canvas.undo()  # the second invert
    assert canvas.undo()  # the stroke
    assert mask_at(canvas, 10, 10) == 255
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the first invert
    assert not canvas.has_mask()
    assert not canvas.undo()


def test_mask_survives_same_size_images_and_not_other_sizes(canvas):
    canvas.set_tool("brush")
    drag(canvas, [(40, 40)])
    assert canvas.has_mask()
    canvas.set_image(grey(100, 100))  # a preview of the inpaint job
    assert canvas.has_mask()
    canvas.set_image(grey(64, 80))
    assert not canvas.has_mask()
    assert (canvas.mask_image().width(), canvas.mask_image().height()) == (64, 80)
    canvas.clear()
    assert canvas.mask_image().isNull() and not canvas.has_mask()


def test_set_mask_and_mask_image_round_trip(canvas):
    mask = QImage(50, 50, QImage.Format.Format_RGB32)  # another format and size: converted, scaled
    mask.fill(QColor("black"))
    for y in range(25):
        for x in range(50):
            mask.setPixelColor(x, y, QColor("white"))
    canvas.set_mask(mask)
    assert mask_at(canvas, 50, 10) == 255 and mask_at(canvas, 50, 90) == 0
    copy = canvas.mask_image()
    copy.fill(0)  # the caller's copy: the canvas's own mask is untouched
    assert canvas.has_mask()


def test_overlay_tints_the_painted_pixels_and_can_be_hidden(canvas):
    canvas.set_mask(canvas.mask_image().copy())
    canvas.invert_mask()  # everything
    centre = on_screen(canvas, 50, 50)
    tinted = canvas.viewport().grab().toImage().pixelColor(centre)
    assert tinted.red() > tinted.green() + 40  # 45 % magenta over grey
    canvas.show_mask(False)
    plain = canvas.viewport().grab().toImage().pixelColor(centre)
    assert (plain.red(), plain.green(), plain.blue()) == (128, 128, 128)
    assert canvas.has_mask()  # hidden, not lost


def test_tool_and_brush_size_are_checked(canvas):
    with pytest.raises(ValueError, match="tool"):
        canvas.set_tool("lasso")
    canvas.set_brush_size(0)
    assert canvas.brush_size() == 1
    canvas.set_brush_size(5000)
    assert canvas.brush_size() == 512


# -- drop and paste -------------------------------------------------------------------------------


def file_mime(path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    return mime


def drop(canvas: PaintCanvas, mime: QMimeData) -> tuple[bool, bool]:
    """Drag `mime` over the canvas and drop it; (drag accepted, drop accepted)."""
    point = QPointF(canvas.viewport().rect().center())
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(point.toPoint(), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter.setAccepted(False)
    canvas.dragEnterEvent(enter)
    event = QDropEvent(point, actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    event.setAccepted(False)
    canvas.dropEvent(event)
    return enter.isAccepted(), event.isAccepted()


def test_dropping_an_image_file_offers_it_with_its_path(canvas, qtbot, tmp_path):
    path = tmp_path / "dropped.png"
    assert grey(30, 20).save(str(path))
    with qtbot.waitSignal(canvas.image_dropped, timeout=1000) as blocker:
        assert drop(canvas, file_mime(path)) == (True, True)
    image, where = blocker.args
    assert (image.width(), image.height()) == (30, 20)
    assert where == str(path)
    assert canvas.image().width() == 100  # the workspace decides whether to show it


def test_non_image_drops_are_ignored(canvas, qtbot, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    plain = QMimeData()
    plain.setText("just words")
    with qtbot.assertNotEmitted(canvas.image_dropped), qtbot.assertNotEmitted(canvas.drop_refused):
        assert drop(canvas, file_mime(text)) == (False, False)
        assert drop(canvas, plain) == (False, False)


def test_unreadable_and_huge_image_files_are_refused_with_a_reason(canvas, qtbot, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with qtbot.assertNotEmitted(canvas.image_dropped):
        with qtbot.waitSignal(canvas.drop_refused, timeout=1000) as blocker:
            drop(canvas, file_mime(broken))
        assert "broken.png" in blocker.args[0]
        huge = tmp_path / "huge.png"
        with open(huge, "wb") as f:
            f.truncate(65 * 2**20)  # sparse: costs no disk
        with qtbot.waitSignal(canvas.drop_refused, timeout=1000) as blocker:
            drop(canvas, file_mime(huge))
        assert "64 MB" in blocker.args[0]


def test_dropped_and_pasted_image_data_come_without_a_path(canvas, qtbot):
    mime = QMimeData()
    mime.setImageData(grey(12, 12))
    with qtbot.waitSignal(canvas.image_dropped, timeout=1000) as blocker:
        drop(canvas, mime)
    assert blocker.args[1] == "" and blocker.args[0].width() == 12

    QGuiApplication.clipboard().setImage(grey(7, 9))
    canvas.setFocus()
    with qtbot.waitSignal(canvas.image_dropped, timeout=1000) as blocker:
        QTest.keyClick(canvas, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args[1] == "" and (blocker.args[0].width(), blocker.args[0].height()) == (7, 9)
