"""Render Studio's icon at every size a desktop asks for, from its one SVG source.

    .venv/bin/python packaging/render_icons.py

writes packaging/icons/hicolor/<N>x<N>/apps/<id>.png (the freedesktop layout, so the folder can be
copied into ~/.local/share/icons/ as it is) and copies the SVG to studio/resources/icons/, where the
window (and a wheel, which carries only what is inside the package) finds it. Run it after
editing the SVG and commit what it writes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

APP_ID = "io.github.studio.Studio"
SIZES = (16, 32, 48, 64, 128, 256, 512)
HERE = Path(__file__).resolve().parent
ICONS = HERE / "icons" / "hicolor"
SOURCE = ICONS / "scalable" / "apps" / f"{APP_ID}.svg"
WINDOW_ICON = HERE.parent / "studio" / "resources" / "icons" / f"{APP_ID}.svg"


def render(source: Path, size: int, out: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(source))
    if not renderer.isValid():
        raise SystemExit(f"{source} is not an SVG Qt can draw; fix it and run this again.")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise SystemExit(f"Cannot write {out}; check that the folder is writable.")


def main() -> int:
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(["render_icons", "-platform", "offscreen"])  # noqa: F841
    for size in SIZES:
        out = ICONS / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        render(SOURCE, size, out)
        print(out.relative_to(HERE.parent))
    WINDOW_ICON.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, WINDOW_ICON)
    print(WINDOW_ICON.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
