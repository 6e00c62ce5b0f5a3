"""The world info editor: entries are added, edited, switched off and removed in the document,
each edit (and only an edit) emits `changed`, and the entries the story triggers are marked."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem

from studio.ui.world_info_editor import (
    MAX_CONTENT_CHARS,
    MAX_KEY_CHARS,
    MAX_KEYS,
    TRIGGERED_MARK,
    WorldInfoEditor,
    parse_keys,
)
from studio.writing.document import Document, WorldInfoEntry
from studio.writing.prompt import WORLD_INFO, assemble

MARA = WorldInfoEntry(("Mara", "the captain"), "Mara Quill captains the Heron; she never lies.")
HERON = WorldInfoEntry(("Heron",), "The Heron is a river barge with a red sail.", enabled=False)


@pytest.fixture
def editor(qtbot):
    widget = WorldInfoEditor()
    widget.resize(300, 420)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def changes(editor):
    seen = []
    editor.changed.connect(lambda: seen.append(1))
    return seen


def rows(editor) -> list[str]:
    return [editor.entries.item(i).text() for i in range(editor.entries.count())]


def checked(editor) -> list[bool]:
    return [editor.entries.item(i).checkState() == Qt.CheckState.Checked for i in range(editor.entries.count())]


def click_checkbox(qtbot, editor, row: int) -> None:
    """A real click on the row's check indicator, where the style draws it."""
    view, item = editor.entries, editor.entries.item(row)
    option = QStyleOptionViewItem()
    option.initFrom(view)
    option.rect = view.visualItemRect(item)
    option.features |= QStyleOptionViewItem.ViewItemFeature.HasCheckIndicator
    box = view.style().subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, option, view)
    point = box.center() if box.isValid() else option.rect.topLeft() + QPoint(10, option.rect.height() // 2)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point)


def test_add_type_keys_and_content(qtbot, editor, changes):
    doc = Document("Once upon a time.")
    editor.set_document(doc)
    assert editor.entries.count() == 0 and not editor.keys.isEnabled() and not editor.remove_button.isEnabled()

    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    assert doc.world_info == [WorldInfoEntry((), "")]
    assert editor.current_index() == 0 and editor.keys.isEnabled()
    qtbot.waitUntil(editor.keys.hasFocus)  # the new entry's keys are typed straight away
    assert changes

    changes.clear()
    qtbot.keyClicks(editor.keys, "Mara, captain")
    editor.content.setFocus()
    qtbot.keyClicks(editor.content, "Mara captains the Heron.")
    assert doc.world_info == [WorldInfoEntry(("Mara", "captain"), "Mara captains the Heron.", True)]
    assert changes
    assert rows(editor) == ["Mara, captain"] and checked(editor) == [True]


def test_keys_are_stripped_empty_dropped_and_limited():
    assert parse_keys(" Mara ,, the captain , ") == ("Mara", "the captain")
    assert parse_keys("") == ()
    assert len(parse_keys(",".join(f"k{i}" for i in range(MAX_KEYS + 5)))) == MAX_KEYS
    assert parse_keys("x" * (MAX_KEY_CHARS + 50)) == ("x" * MAX_KEY_CHARS,)


def test_content_beyond_the_limit_is_cut(editor):
    doc = Document()
    editor.set_document(doc)
    editor.add_entry()
    editor.content.setPlainText("a" * (MAX_CONTENT_CHARS + 10))  # as a paste would
    assert doc.world_info[0].content == "a" * MAX_CONTENT_CHARS


def test_set_document_shows_entries_without_emitting_changed(editor, changes):
    doc = Document("text")
    doc.world_info = [MARA, HERON]
    editor.set_document(doc)
    assert rows(editor) == ["Mara, the captain", "Heron"]
    assert checked(editor) == [True, False]
    assert editor.current_index() == 0
    assert editor.keys.text() == "Mara, the captain" and editor.content.toPlainText() == MARA.content
    editor.entries.setCurrentRow(1)  # selecting is not editing either
    assert editor.keys.text() == "Heron" and editor.content.toPlainText() == HERON.content
    editor.set_document(Document())
    assert editor.entries.count() == 0 and editor.keys.text() == "" and not editor.content.isEnabled()
    assert changes == [] and doc.world_info == [MARA, HERON]


def test_toggle_enabled_with_the_row_checkbox(qtbot, editor, changes):
    doc = Document()
    doc.world_info = [MARA, HERON]
    editor.set_document(doc)
    click_checkbox(qtbot, editor, 0)
    assert doc.world_info[0] == WorldInfoEntry(MARA.keys, MARA.content, False)
    assert changes == [1]
    click_checkbox(qtbot, editor, 1)
    assert doc.world_info[1].enabled and checked(editor) == [False, True]
    editor.entries.setCurrentRow(1)
    qtbot.keyClick(editor.entries, Qt.Key.Key_Space)  # the keyboard toggles it too
    assert not doc.world_info[1].enabled and len(changes) == 3
    assert doc.world_info[1].keys == HERON.keys and doc.world_info[1].content == HERON.content


def test_edit_an_existing_entry(qtbot, editor, changes):
    doc = Document()
    doc.world_info = [MARA, HERON]
    editor.set_document(doc)
    editor.entries.setCurrentRow(1)
    editor.keys.selectAll()
    qtbot.keyClicks(editor.keys, "Heron, barge, ")
    assert doc.world_info[1] == WorldInfoEntry(("Heron", "barge"), HERON.content, False)
    editor.content.selectAll()
    editor.content.setFocus()
    qtbot.keyClicks(editor.content, "A barge.")
    assert doc.world_info == [MARA, WorldInfoEntry(("Heron", "barge"), "A barge.", False)]
    assert rows(editor)[1] == "Heron, barge" and changes


def test_editing_content_keeps_the_loaded_keys(qtbot, editor):
    """A key saved with a comma in it is not split by an edit to the content."""
    doc = Document()
    doc.world_info = [WorldInfoEntry(("Quill, Mara",), "old")]
    editor.set_document(doc)
    editor.content.setFocus()
    editor.content.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClicks(editor.content, "!")
    assert doc.world_info == [WorldInfoEntry(("Quill, Mara",), "old!")]


def test_remove_keeps_a_sensible_selection(qtbot, editor, changes):
    third = WorldInfoEntry(("Ferry",), "A ferry.")
    doc = Document()
    doc.world_info = [MARA, HERON, third]
    editor.set_document(doc)
    editor.entries.setCurrentRow(1)
    qtbot.mouseClick(editor.remove_button, Qt.MouseButton.LeftButton)
    assert doc.world_info == [MARA, third] and changes == [1]
    assert editor.current_index() == 1 and editor.keys.text() == "Ferry"  # the next one
    qtbot.mouseClick(editor.remove_button, Qt.MouseButton.LeftButton)
    assert doc.world_info == [MARA] and editor.current_index() == 0 and editor.keys.text() == "Mara, the captain"
    qtbot.mouseClick(editor.remove_button, Qt.MouseButton.LeftButton)
    assert doc.world_info == [] and editor.current_index() == -1
    assert not editor.remove_button.isEnabled() and not editor.keys.isEnabled() and editor.keys.text() == ""
    assert len(changes) == 3


def test_triggered_marking_follows_the_story(qtbot, editor, changes):
    doc = Document()
    doc.world_info = [MARA, WorldInfoEntry(("Heron",), HERON.content)]
    editor.set_document(doc)
    editor.set_story("Nothing here yet.")
    assert editor.triggered() == [] and not any(r.startswith(TRIGGERED_MARK) for r in rows(editor))

    editor.set_story("At dawn the Heron sailed.")
    assert editor.triggered() == [1]
    assert rows(editor) == ["Mara, the captain", TRIGGERED_MARK + "Heron"]
    assert editor.entries.item(1).font().bold() and not editor.entries.item(0).font().bold()

    editor.set_story("Mara shouted. At dawn the Heron sailed.")
    assert editor.triggered() == [0, 1]
    click_checkbox(qtbot, editor, 1)  # switched off: no longer brought in
    assert editor.triggered() == [0] and rows(editor)[1] == "Heron"
    qtbot.mouseClick(editor.remove_button, Qt.MouseButton.LeftButton)  # Mara goes; Heron moves up
    assert editor.triggered() == [] and rows(editor) == ["Heron"]
    editor.set_story(None)
    assert editor.triggered() == []


def test_the_prompt_includes_an_entry_added_in_the_editor(qtbot, editor):
    doc = Document("The storm broke over the river. Mara reached for the tiller.")
    editor.set_document(doc)
    editor.add_entry()
    qtbot.keyClicks(editor.keys, "Mara, captain")
    editor.content.setFocus()
    qtbot.keyClicks(editor.content, "Mara Quill captains the Heron; she never lies.")
    assembled = assemble(
        doc, len(doc.text), count_tokens=lambda s: len(s) // 3 + 1, context_length=2048, max_new_tokens=64
    )
    assert "Mara Quill captains the Heron; she never lies." in assembled.prompt
    assert assembled.world_info == (0,)
    assert any(part.role == WORLD_INFO for part in assembled.parts)


def test_fits_a_narrow_side_panel(editor):
    doc = Document()
    doc.world_info = [MARA, HERON, WorldInfoEntry(("a very long key " * 6).split(), "x")]
    editor.set_document(doc)
    assert editor.minimumSizeHint().width() <= 280
    editor.resize(280, 420)
    assert editor.width() == 280
