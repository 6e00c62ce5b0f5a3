"""The editor widget over a studio.writing.Document: the Document is the model of record, the
QPlainTextEdit shows it. Every edit the writer makes is replayed into the Document as typed text;
the model's text goes into the Document first and is then shown; undo and redo restore Document
checkpoints, so origins and alternatives come back exactly (Qt's own undo would re-insert the
model's text as if the writer typed it). Which job writes where is the WriteSession's business
(studio/state/write_session.py): it makes its generation edits through the bridge."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Optional

from PySide6.QtCore import QEvent, QObject, Signal
from PySide6.QtGui import QColor, QKeySequence, QSyntaxHighlighter, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QMenu, QPlainTextEdit, QToolTip

from studio.writing.document import EDITED, GENERATED, Document, GenerationId

MAX_UNDO = 200  # steps; each holds a checkpoint (the text is shared between unchanged steps)


class DraftEditor(QPlainTextEdit):
    """A QPlainTextEdit whose Undo / Redo (keys and the slots) go to the DocumentBridge.

    Qt's own undo stack is turned off, so nothing (the context menu included) can undo behind
    the Document's back."""

    undo_requested = Signal()
    redo_requested = Signal()
    focus_lost = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setUndoRedoEnabled(False)
        # Set by the workspace: what to show when hovering a Qt text position (HTML, or ""), and
        # what to add to the context menu at one (the model's alternatives for a token).
        self.hover_text: Optional[Callable[[int], str]] = None
        self.extend_menu: Optional[Callable[[int, QMenu], None]] = None

    def viewportEvent(self, event) -> bool:  # noqa: N802 - tooltips arrive at the viewport
        if event.type() == QEvent.Type.ToolTip and self.hover_text is not None:
            text = self.hover_text(self.cursorForPosition(event.pos()).position())
            if text:
                QToolTip.showText(event.globalPos(), text, self.viewport())
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().viewportEvent(event)

    def context_menu(self, pos) -> QMenu:
        """The editor's menu at viewport point `pos`, with the workspace's additions first."""
        menu = self.createStandardContextMenu(pos)
        if self.extend_menu is not None:
            self.extend_menu(self.cursorForPosition(pos).position(), menu)
        return menu

    def contextMenuEvent(self, event) -> None:  # noqa: N802
        menu = self.context_menu(event.pos())
        menu.exec(event.globalPos())
        menu.deleteLater()

    def undo(self) -> None:  # Python callers (and the tests) use these names
        self.undo_requested.emit()

    def redo(self) -> None:
        self.redo_requested.emit()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.matches(QKeySequence.StandardKey.Undo):
            self.undo_requested.emit()
        elif event.matches(QKeySequence.StandardKey.Redo):
            self.redo_requested.emit()
        else:
            super().keyPressEvent(event)

    def focusOutEvent(self, event) -> None:  # noqa: N802
        super().focusOutEvent(event)
        self.focus_lost.emit()


class OriginHighlighter(QSyntaxHighlighter):
    """Tints the model's text and the writer's edits of it (NovelAI's colours, subtler); the
    writer's own text stays plain. Reads spans from the bridge's Document."""

    FORMATS = {GENERATED: QColor(90, 140, 255, 34), EDITED: QColor(255, 110, 170, 40)}

    def __init__(self, bridge: "DocumentBridge"):
        super().__init__(bridge.editor.document())
        self._bridge = bridge
        self.enabled = True
        self._formats = {}
        for origin, colour in self.FORMATS.items():
            fmt = QTextCharFormat()
            fmt.setBackground(colour)
            self._formats[origin] = fmt

    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        self.rehighlight()

    def highlightBlock(self, text: str) -> None:  # noqa: N802
        if not self.enabled:
            return
        # Qt counts UTF-16 units, the Document code points: with characters outside the BMP
        # (emoji) later tints may sit a character off. Cosmetic only; the Document is exact.
        start = self.currentBlock().position()
        end = start + len(text)
        spans = self._bridge.spans()
        i = max(0, bisect.bisect_right(spans.starts, start) - 1)
        while i < len(spans.items) and spans.items[i][0] < end:
            s, e, origin = spans.items[i]
            fmt = self._formats.get(origin)
            if fmt is not None and e > start:
                lo, hi = max(s, start), min(e, end)
                self.setFormat(lo - start, hi - lo, fmt)
            i += 1


@dataclass
class _Spans:
    starts: list[int]
    items: list[tuple[int, int, str]]


@dataclass
class _Step:
    """One undo step: the Document before it, and what kind of edit it was (to merge typing)."""

    before: object
    kind: str  # "insert", "delete", "other"
    end: int  # where the next keystroke must land to join this step


class DocumentBridge(QObject):
    """Keeps a Document and a DraftEditor in step, and owns the undo history. Its generation edits
    (add_generation, append_generation, retry, show_alternative) are the WriteSession's
    GenerationEdits: each one is shown at once, and each but a streamed append is one undo step."""

    changed = Signal()  # the Document changed (text, spans or generations)

    def __init__(self, editor: DraftEditor, document: Optional[Document] = None):
        super().__init__(editor)
        self.editor = editor
        self.document = document or Document()
        self._applying = False
        self._spans: Optional[_Spans] = None
        self._undo: list[_Step] = []
        self._redo: list[object] = []
        # Connected before the highlighter is made, so it re-reads spans already updated.
        editor.document().contentsChange.connect(self._on_contents_change)
        editor.undo_requested.connect(self.undo)
        editor.redo_requested.connect(self.redo)
        self.highlighter = OriginHighlighter(self)
        self.set_document(self.document)

    # -- the whole document -----------------------------------------------------------------------

    def set_document(self, document: Document) -> None:
        self.document = document
        self._undo.clear()
        self._redo.clear()
        self._show_text(document.text)
        self.editor.moveCursor(QTextCursor.MoveOperation.End)
        self._touched()

    def spans(self) -> _Spans:
        if self._spans is None:
            items = self.document.spans()
            self._spans = _Spans([s for s, _, _ in items], items)
        return self._spans

    # -- the writer's edits -----------------------------------------------------------------------

    def _on_contents_change(self, position: int, removed: int, added: int) -> None:
        if self._applying:
            return
        new = self.editor.toPlainText()
        old = self.document.text
        if new == old:
            return  # a format-only change
        start, end, text = _changed_range(old, new, self._to_py(old, position), removed)
        kind = "insert" if start == end else "delete" if not text else "other"
        self._push(kind, start, end, text)
        self.document.replace(start, end, text)
        self._touched()

    def _push(self, kind: str, start: int, end: int, text: str) -> None:
        last = self._undo[-1] if self._undo else None
        self._redo.clear()
        # Typing (or deleting) on from where the last keystroke left off joins its step, as in Qt.
        if last is not None and kind == last.kind == "insert" and start == last.end and "\n" not in text:
            last.end = start + len(text)
            return
        if last is not None and kind == last.kind == "delete" and end == last.end:
            last.end = start
            return
        self.push_step(kind, end=start + len(text) if kind == "insert" else start)

    def push_step(self, kind: str = "other", end: int = -1) -> None:
        """Start a new undo step from the Document as it is now (a generation, a retry, ...)."""
        self._redo.clear()
        self._undo.append(_Step(self.document.checkpoint(), kind, end))
        del self._undo[:-MAX_UNDO]

    def undo(self) -> None:
        if not self._undo or self.editor.isReadOnly():
            return
        step = self._undo.pop()
        self._redo.append(self.document.checkpoint())
        self._restore(step.before)

    def redo(self) -> None:
        if not self._redo or self.editor.isReadOnly():
            return
        self._undo.append(_Step(self.document.checkpoint(), "other", -1))
        self._restore(self._redo.pop())

    def _restore(self, checkpoint: object) -> None:
        old = self.document.text
        self.document.restore(checkpoint)
        start = self._replace_shown(old, self.document.text)
        cursor = self.editor.textCursor()
        cursor.setPosition(self._to_qt(self.document.text, start))
        self.editor.setTextCursor(cursor)
        self._touched(rehighlight=True)

    # -- the model's text -------------------------------------------------------------------------

    def add_generation(self, pos: int) -> GenerationId:
        """An empty generation at `pos` (Python offset), as its own undo step."""
        self.push_step()
        gen_id = self.document.add_generation(pos)
        self._touched()
        return gen_id

    def append_generation(self, gen_id: GenerationId, text: str) -> None:
        at = self.document.generation_range(gen_id)[1]
        self.document.append_generation(gen_id, text)
        self._insert_shown(at, text)
        self._touched()

    def retry(self, gen_id: GenerationId, text: str = "") -> int:
        """Replace the generation with a new sample starting `text` (one undo step); earlier
        samples are kept. Returns the new sample's index."""
        self.push_step()
        old = self.document.text
        sample = self.document.retry(gen_id, text)
        self._replace_shown(old, self.document.text)
        self._touched(rehighlight=True)
        return sample

    def show_alternative(self, gen_id: GenerationId, index: int) -> None:
        self.push_step()
        old = self.document.text
        self.document.show_alternative(gen_id, index)
        self._replace_shown(old, self.document.text)
        self._touched(rehighlight=True)

    # -- writing into the widget ------------------------------------------------------------------

    def _insert_shown(self, pos: int, text: str) -> None:
        cursor = QTextCursor(self.editor.document())
        cursor.setPosition(self._to_qt(self.document.text, pos))
        self._applying = True
        try:
            cursor.insertText(text)
        finally:
            self._applying = False

    def _replace_shown(self, old: str, new: str) -> int:
        """Change the widget's text from `old` to `new` by editing only what differs (the layout
        of a long novel is kept); returns where the change starts (Python offset)."""
        start = _common_prefix(old, new)
        tail = _common_suffix(old[start:], new[start:])
        cursor = QTextCursor(self.editor.document())
        cursor.setPosition(self._to_qt(old, start))
        cursor.setPosition(self._to_qt(old, len(old) - tail), QTextCursor.MoveMode.KeepAnchor)
        self._applying = True
        try:
            cursor.insertText(new[start : len(new) - tail])
        finally:
            self._applying = False
        return start

    def _show_text(self, text: str) -> None:
        self._applying = True
        try:
            self.editor.setPlainText(text)
        finally:
            self._applying = False

    def _touched(self, rehighlight: bool = False) -> None:
        self._spans = None
        if rehighlight:
            self.highlighter.rehighlight()
        self.changed.emit()

    # -- offsets: Qt counts UTF-16 units, Python code points ---------------------------------------

    @staticmethod
    def _to_qt(text: str, pos: int) -> int:
        return qt_offset(text, pos)

    def _to_py(self, old: str, pos16: int) -> int:
        if old.isascii():
            return pos16
        units = old.encode("utf-16-le")[: 2 * pos16]
        return len(units.decode("utf-16-le", "ignore"))

    def to_python(self, pos16: int) -> int:
        """A Qt position in the editor as an offset into the Document's text."""
        return min(self._to_py(self.document.text, pos16), len(self.document.text))

    def python_cursor(self) -> int:
        """The editor's cursor as an offset into the Document's text."""
        return self.to_python(self.editor.textCursor().position())


def qt_offset(text: str, pos: int) -> int:
    """A Python (code point) offset into `text` as Qt's UTF-16 one."""
    head = text[:pos]
    return pos if head.isascii() else len(head.encode("utf-16-le")) // 2


def _changed_range(old: str, new: str, start: int, removed: int) -> tuple[int, int, str]:
    """[start, end) of `old` and the text that replaced it in `new`. Qt's hint is trusted when it
    checks out; setPlainText and the final paragraph mark make it over-report, so it is clamped,
    and when it does not check out the difference is found by comparing the texts."""
    start = min(start, len(old), len(new))
    end = min(start + removed, len(old))
    added = len(new) - (len(old) - (end - start))
    if added >= 0 and old[:start] == new[:start] and old[end:] == new[start + added :]:
        # Trim what the hint over-reported, so an edit touches only what changed.
        a, b = old[start:end], new[start : start + added]
        head = _common_prefix(a, b)
        tail = _common_suffix(a[head:], b[head:])
        return start + head, end - tail, b[head : len(b) - tail]
    head = _common_prefix(old, new)
    tail = _common_suffix(old[head:], new[head:])
    return head, len(old) - tail, new[head : len(new) - tail]


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by bisection over slice compares (C speed on long texts)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo
