"""Canvas: fit-to-view, wheel zoom about the cursor, sharp pixels when enlarged."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QWheelEvent
from PySide6.QtWidgets import QApplication

from studio.ui.canvas import Canvas


def wheel(canvas: Canvas, notches: int) -> None:
    pos = QPointF(canvas.viewport().rect().center())
    event = QWheelEvent(
        pos,
        canvas.mapToGlobal(pos.toPoint()),
        QPoint(),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas.viewport(), event)


def checker(size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_RGB888)
    for y in range(size):
        for x in range(size):
            image.setPixelColor(x, y, QColor("white") if (x + y) % 2 else QColor("black"))
    return image


def test_small_image_is_fitted_enlarged_with_square_pixels(qtbot):
    canvas = Canvas("nothing yet")
    qtbot.addWidget(canvas)
    canvas.resize(400, 300)
    canvas.show()
    qtbot.waitExposed(canvas)
    assert canvas.image().isNull()
    canvas.set_image(checker(32))
    assert canvas.image().size().width() == 32
    assert 7.0 < canvas.zoom() < 9.0  # (300 - 2 * margin) / 32
    assert canvas.items()[0].transformationMode() == Qt.TransformationMode.FastTransformation
    shot = canvas.viewport().grab().toImage()
    centre = shot.rect().center()
    colours = {shot.pixelColor(centre.x() + dx, centre.y()).name() for dx in range(-12, 12)}
    assert colours <= {"#000000", "#ffffff"}  # no grey blur between enlarged pixels


def test_wheel_zooms_and_fit_returns(qtbot):
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 400)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_image(checker(512))
    fitted = canvas.zoom()
    assert fitted < 1.0
    assert canvas.items()[0].transformationMode() == Qt.TransformationMode.SmoothTransformation
    wheel(canvas, 2)
    assert abs(canvas.zoom() - fitted * 1.25**2) < 1e-6
    canvas.set_image(checker(512))  # a new image of the same size keeps the zoom (previews do not jump)
    assert abs(canvas.zoom() - fitted * 1.25**2) < 1e-6
    canvas.fit_to_view()
    assert canvas.zoom() == fitted
    canvas.actual_size()
    assert canvas.zoom() == 1.0
