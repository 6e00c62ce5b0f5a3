"""The world info (lorebook) editor: entries the prompt brings in when one of their keys appears
in the recent story (studio.writing.prompt.triggered_world_info).

Like the DocumentPanel it edits a Document directly: each edit replaces the entry in
`document.world_info` with a new (frozen) WorldInfoEntry and emits `changed`; showing a document
changes nothing. It is built to sit in a side panel about 300 px wide."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.story import MAX_KEY_CHARS, MAX_KEYS
from studio.core.story import MAX_SIDE_CHARS as MAX_CONTENT_CHARS
from studio.writing.document import Document, WorldInfoEntry
from studio.writing.prompt import triggered_world_info

# The bounds a job accepts (core.story), applied as the person types; documents are checked
# against the same ones when they are opened (writing.storage).
TRIGGERED_MARK = "● "
LIST_ROWS = 6  # rows the entry list shows before it scrolls


def parse_keys(text: str) -> tuple[str, ...]:
    """Comma-separated keys, stripped, empty ones dropped, within MAX_KEYS and MAX_KEY_CHARS."""
    keys = (key.strip()[:MAX_KEY_CHARS].strip() for key in text.split(","))
    return tuple(key for key in keys if key)[:MAX_KEYS]


def keys_text(keys: tuple[str, ...]) -> str:
    return ", ".join(keys)


def _button(text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    return button


def _content_box(lines: int = 5) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setPlaceholderText("What the model should know when a key comes up: who, what, how they speak.")
    box.setFixedHeight(box.fontMetrics().lineSpacing() * lines + 12)
    return box


class WorldInfoEditor(QWidget):
    """A list of one Document's world info entries (a checkbox for enabled, the keys, ● when a
    key is in the recent story), Add / Remove, and the selected entry's keys and content."""

    changed = Signal()  # the person changed an entry (the document is modified)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.document: Optional[Document] = None
        self._story: Optional[str] = None
        self._triggered: set[int] = set()
        self._loading = False

        self.entries = QListWidget()
        self.entries.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.entries.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.entries.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.entries.setUniformItemSizes(True)
        self.entries.setFixedHeight(self.entries.fontMetrics().lineSpacing() * LIST_ROWS + 14)
        self.entries.setToolTip("Tick an entry to use it; ● marks the ones the recent story brings in")
        self.add_button = _button("Add", "A new entry")
        self.remove_button = _button("Remove", "Delete the selected entry")
        self.keys = QLineEdit()
        self.keys.setPlaceholderText("Mara, the captain")
        self.keys.setMaxLength(MAX_KEYS * (MAX_KEY_CHARS + 2))
        self.keys.setToolTip(
            "Comma-separated words or names; any one of them in the recent story "
            "brings this entry into the prompt (whole words, any case)"
        )
        self.content = _content_box()

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Keys", self.keys)
        form.addRow(QLabel("Content"))
        form.addRow(self.content)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.entries)
        layout.addLayout(buttons)
        layout.addLayout(form)

        self.entries.currentRowChanged.connect(self._row_changed)
        self.entries.itemChanged.connect(self._toggled)
        self.add_button.clicked.connect(self.add_entry)
        self.remove_button.clicked.connect(self.remove_entry)
        self.keys.textEdited.connect(self._store_keys)
        self.content.textChanged.connect(self._store_content)
        self._show_entry(-1)

    # --- public ----------------------------------------------------------------------------------

    def set_document(self, document: Document) -> None:
        """Show this document's entries, the first one selected (it is not modified by being shown)."""
        self.document = document
        with self._quiet():
            self.entries.clear()
            for _ in document.world_info:
                self.entries.addItem(QListWidgetItem())
        self._update_triggered()
        self.entries.setCurrentRow(0 if document.world_info else -1)
        self._show_entry(self.entries.currentRow())

    def set_story(self, text: Optional[str]) -> None:
        """Mark the entries the story before the cursor triggers (None: mark none)."""
        self._story = text
        self._update_triggered()

    def triggered(self) -> list[int]:
        """Indices of the entries marked as triggered by the last story given to set_story."""
        return sorted(self._triggered)

    def current_index(self) -> int:
        """The selected entry's index in document.world_info, or -1."""
        return self.entries.currentRow()

    def add_entry(self) -> None:
        """Append an empty, enabled entry, select it and put the cursor in its Keys field."""
        if self.document is None:
            return
        self.document.world_info.append(WorldInfoEntry((), ""))
        with self._quiet():
            self.entries.addItem(QListWidgetItem())
            self._refresh_row(self.entries.count() - 1)
        self.entries.setCurrentRow(self.entries.count() - 1)
        self.keys.setFocus()
        self.changed.emit()

    def remove_entry(self) -> None:
        """Delete the selected entry; the one after it (or else before it) is selected next."""
        row = self.entries.currentRow()
        if self.document is None or row < 0:
            return
        del self.document.world_info[row]
        with self._quiet():
            self.entries.takeItem(row)
        self._update_triggered()  # indices after `row` moved up
        self.entries.setCurrentRow(min(row, self.entries.count() - 1))
        self._show_entry(self.entries.currentRow())
        self.changed.emit()

    # --- the person's edits ----------------------------------------------------------------------

    def _store_keys(self, text: str) -> None:
        self._store(keys=parse_keys(text))

    def _store_content(self) -> None:
        self._store(content=self.content.toPlainText()[:MAX_CONTENT_CHARS])

    def _store(self, **change) -> None:
        """Replace the selected entry with one that has `change`. Only the field the person
        edited is read back, so a loaded entry is not reshaped by an edit to another field."""
        row = self.entries.currentRow()
        if self._loading or self.document is None or row < 0:
            return
        self._put(row, dataclasses.replace(self.document.world_info[row], **change))

    def _toggled(self, item: QListWidgetItem) -> None:
        if self._loading or self.document is None:
            return
        row = self.entries.row(item)
        enabled = item.checkState() == Qt.CheckState.Checked
        self._put(row, dataclasses.replace(self.document.world_info[row], enabled=enabled))

    def _put(self, row: int, entry: WorldInfoEntry) -> None:
        world_info = self._world_info()
        if entry == world_info[row]:  # e.g. a trailing comma after the last key
            return
        world_info[row] = entry
        self._update_triggered()
        self.changed.emit()

    # --- showing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Changes made by the editor itself, not the person: no write-back, no `changed`.
        Nests (a row change inside a list change), so the outer one stays quiet to its end."""
        before, self._loading = self._loading, True
        try:
            yield
        finally:
            self._loading = before

    def _row_changed(self, row: int) -> None:
        if not self._loading:  # while the list itself changes, the change shows the entry after
            self._show_entry(row)

    def _world_info(self) -> list[WorldInfoEntry]:
        """The document's entries, edited in place (none without a document)."""
        return self.document.world_info if self.document is not None else []

    def _show_entry(self, row: int) -> None:
        entries = self._world_info()
        entry = entries[row] if 0 <= row < len(entries) else None
        with self._quiet():
            self.keys.setText(keys_text(entry.keys) if entry else "")
            self.content.setPlainText(entry.content if entry else "")
        for widget in (self.keys, self.content, self.remove_button):
            widget.setEnabled(entry is not None)
        self.add_button.setEnabled(self.document is not None)

    def _update_triggered(self) -> None:
        """Recompute the ● marks (after the story, or an entry, changed) and redraw every row."""
        story, doc = self._story, self.document
        self._triggered = set(triggered_world_info(doc, story)) if doc is not None and story is not None else set()
        with self._quiet():
            for row in range(self.entries.count()):
                self._refresh_row(row)

    def _refresh_row(self, row: int) -> None:
        entry = self._world_info()[row]
        item = self.entries.item(row)
        hit = row in self._triggered
        label = keys_text(entry.keys) or "(no keys)"
        item.setText((TRIGGERED_MARK if hit else "") + label)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if entry.enabled else Qt.CheckState.Unchecked)
        font = item.font()
        font.setBold(hit)
        font.setItalic(not entry.keys)
        item.setFont(font)
        # A switched-off entry reads greyed, as the prompt leaves it out.
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        item.setForeground(QBrush() if entry.enabled else QBrush(grey))
        tip = entry.content.strip()[:300] or "(no content: never brought in)"
        item.setToolTip(("In the prompt now: a key is in the recent story.\n\n" if hit else "") + tip)
