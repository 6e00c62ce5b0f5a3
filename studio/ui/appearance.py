"""Light or dark: the window follows the system's colour scheme, unless the View menu says otherwise.

Qt 6.8+ is asked for the scheme first (`QStyleHints.setColorScheme`), so platforms that can switch
natively (Windows, macOS, GNOME and KDE through their themes) do. Where the platform theme ignores
the request (a bare X11 or Wayland session, where Qt draws with Fusion and the platform's palette),
the application palette is set to a light or dark one of our own; a choice that matches what the
platform already shows keeps the platform's own palette."""

from __future__ import annotations

import enum
from typing import Optional

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette

from studio.state.settings_store import SettingsStore

SETTINGS_KEY = "view/colour_scheme"


class Scheme(enum.Enum):
    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


TITLES = {Scheme.SYSTEM: "&System", Scheme.LIGHT: "&Light", Scheme.DARK: "&Dark"}


def is_dark(palette: QPalette) -> bool:
    """Whether a palette is a dark one: its window colour is nearer black than white."""
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


class Appearance(QObject):
    """The person's colour-scheme choice, applied to the whole application and kept in `store`."""

    changed = Signal(object)  # the new Scheme

    def __init__(self, store: SettingsStore, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.store = store
        try:
            self.scheme = Scheme(store.get(SETTINGS_KEY, Scheme.SYSTEM.value))
        except ValueError:  # a hand-edited or newer value: follow the system
            self.scheme = Scheme.SYSTEM
        self._applying = False
        hints = QGuiApplication.styleHints()
        hints.colorSchemeChanged.connect(self._system_changed)
        self.apply()

    def choose(self, scheme: Scheme) -> None:
        """Switch to `scheme` and remember it at once (a crash later does not lose it)."""
        self.scheme = scheme
        self.store.set(SETTINGS_KEY, scheme.value)
        self.store.sync()
        self.apply()
        self.changed.emit(scheme)

    def apply(self) -> None:
        app = QGuiApplication.instance()
        if not isinstance(app, QGuiApplication) or self._applying:  # no application yet, or one without a GUI
            return
        self._applying = True  # asking Qt for a scheme can report a change, which calls back here
        try:
            hints = QGuiApplication.styleHints()
            if hasattr(hints, "setColorScheme"):  # Qt 6.8+; before, only our palette switches
                if self.scheme is Scheme.SYSTEM:
                    hints.unsetColorScheme()
                else:
                    hints.setColorScheme(Qt.ColorScheme.Dark if self.scheme is Scheme.DARK else Qt.ColorScheme.Light)
            wanted = self._wanted_dark(hints.colorScheme())
            # Back to the platform's palette, then our own only where the platform's is the wrong one.
            app.setPalette(QPalette())
            if wanted is not None and is_dark(app.palette()) != wanted:
                app.setPalette(dark_palette() if wanted else light_palette())
        finally:
            self._applying = False

    def _wanted_dark(self, reported: Qt.ColorScheme) -> Optional[bool]:
        """True for dark, False for light, None for "whatever the platform shows" (it says nothing)."""
        if self.scheme is not Scheme.SYSTEM:
            return self.scheme is Scheme.DARK
        if reported == Qt.ColorScheme.Unknown:
            return None
        return reported == Qt.ColorScheme.Dark

    def _system_changed(self, _scheme) -> None:
        self.apply()


def _palette(
    window: str,
    text: str,
    base: str,
    alternate: str,
    button: str,
    highlight: str,
    link: str,
    disabled_text: str,
    light: str,
    mid: str,
    dark: str,
) -> QPalette:
    role = QPalette.ColorRole
    palette = QPalette()
    for which, colour in (
        (role.Window, window),
        (role.WindowText, text),
        (role.Base, base),
        (role.AlternateBase, alternate),
        (role.ToolTipBase, base),
        (role.ToolTipText, text),
        (role.Text, text),
        (role.Button, button),
        (role.ButtonText, text),
        (role.BrightText, "#ff5555"),
        (role.Highlight, highlight),
        (role.HighlightedText, "#ffffff"),
        (role.Link, link),
        (role.LinkVisited, link),
        (role.PlaceholderText, disabled_text),
        (role.Light, light),
        (role.Midlight, button),
        (role.Mid, mid),
        (role.Dark, dark),
        (role.Shadow, "#000000"),
    ):
        palette.setColor(which, QColor(colour))
    disabled = QPalette.ColorGroup.Disabled
    for which in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(disabled, which, QColor(disabled_text))
    palette.setColor(disabled, role.Highlight, QColor(mid))
    return palette


def dark_palette() -> QPalette:
    return _palette(
        window="#2d2d30",
        text="#e6e6e6",
        base="#1f1f22",
        alternate="#2a2a2e",
        button="#37373b",
        highlight="#3d7fd9",
        link="#6ea8fe",
        disabled_text="#7d7d82",
        light="#4a4a4f",
        mid="#26262a",
        dark="#19191b",
    )


def light_palette() -> QPalette:
    return _palette(
        window="#efefef",
        text="#1e1e1e",
        base="#ffffff",
        alternate="#f5f5f5",
        button="#e8e8e8",
        highlight="#2f6fd0",
        link="#1a5fb4",
        disabled_text="#9a9a9a",
        light="#ffffff",
        mid="#b8b8b8",
        dark="#9f9f9f",
    )
