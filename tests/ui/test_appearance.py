"""Light or dark: View → Colour scheme switches the whole window, System gives the platform's own
palette back, and the choice is kept for the next start."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QGuiApplication, QPalette

from studio.state.settings_store import SettingsStore
from studio.ui.appearance import SETTINGS_KEY, Appearance, Scheme


def lightness(widget) -> int:
    QGuiApplication.processEvents()  # widgets take the application's new palette from a posted event
    return widget.palette().color(QPalette.ColorRole.Window).lightness()


@pytest.fixture(autouse=True)
def platform_palette_after(qapp):
    """The palette is the application's: give the platform's back, whatever a test chose."""
    yield
    if hasattr(QGuiApplication.styleHints(), "unsetColorScheme"):
        QGuiApplication.styleHints().unsetColorScheme()
    qapp.setPalette(QPalette())


def test_dark_and_light_repaint_the_window_and_system_gives_the_platforms_palette_back(make_window):
    window = make_window()
    platform = lightness(window)
    assert window.appearance.scheme is Scheme.SYSTEM and window.scheme_actions[Scheme.SYSTEM].isChecked()

    window.scheme_actions[Scheme.DARK].trigger()
    assert lightness(window) < 80 and lightness(window.tabs) < 80
    assert window.palette().color(QPalette.ColorRole.WindowText).lightness() > 180  # the text stays readable
    assert window.scheme_actions[Scheme.DARK].isChecked() and not window.scheme_actions[Scheme.SYSTEM].isChecked()

    window.scheme_actions[Scheme.LIGHT].trigger()
    assert lightness(window) > 200 and window.palette().color(QPalette.ColorRole.WindowText).lightness() < 80

    window.scheme_actions[Scheme.DARK].trigger()
    window.scheme_actions[Scheme.SYSTEM].trigger()
    assert lightness(window) == platform


def test_the_choice_is_saved_and_the_next_window_starts_with_it(make_window):
    first = make_window()
    first.scheme_actions[Scheme.DARK].trigger()
    first.close()
    assert SettingsStore().get(SETTINGS_KEY, "") == "dark"

    QGuiApplication.instance().setPalette(QPalette())  # as a fresh start would find it
    second = make_window()
    assert second.appearance.scheme is Scheme.DARK and second.scheme_actions[Scheme.DARK].isChecked()
    assert lightness(second) < 80


def test_an_unknown_stored_scheme_follows_the_system(qapp, tmp_path):
    store = SettingsStore(tmp_path / "window.ini")
    store.set(SETTINGS_KEY, "purple")
    assert Appearance(store).scheme is Scheme.SYSTEM
