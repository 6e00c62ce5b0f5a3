"""The context viewer: exactly what the language model reads, as the engine assembled it with the
model's own tokenizer (NovelAI's Context Viewer; text_anchors §5.2). Memory, world info, the
author's note and a chat template's text are tinted; a line above says how many tokens of the
model's window it takes and how much of the story did not fit. It shows what the workspace's
WriteSession measures (`follow`)."""

from __future__ import annotations

from typing import Optional

from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from studio.core.events import ContextResult
from studio.core.story import WorldInfoEntry
from studio.state.write_session import WriteSession
from studio.ui.document_bridge import qt_offset

FOR_CURSOR = "What the model will read if you continue at the cursor"
LAST_READ = "What the model read for the last generation"

TINTS = {  # role -> background; the story itself stays plain
    "memory": QColor(80, 200, 120, 60),
    "world_info": QColor(170, 110, 255, 55),
    "authors_note": QColor(255, 170, 60, 70),
    "template": QColor(150, 150, 150, 60),
}
LEGEND = (
    ("memory", "memory"),
    ("world_info", "world info"),
    ("authors_note", "author's note"),
    ("template", "chat template"),
)


def entry_names(world_info: list[WorldInfoEntry]) -> list[str]:
    """World info entries as the summary names them: by their keys."""
    return [", ".join(e.keys) or f"entry {i + 1}" for i, e in enumerate(world_info)]


def summary(context: ContextResult, entry_names: list[str]) -> str:
    """One line: tokens used of the window, what was trimmed, which world info came in."""
    budget = context.context_length - context.max_new_tokens
    line = (
        f"{context.tokens:,} of {budget:,} tokens ({context.context_length:,}-token context, "
        f"{context.max_new_tokens:,} kept for the continuation)"
    )
    if context.trimmed_chars:
        line += f" · the first {context.trimmed_chars:,} characters of the story did not fit"
    if context.world_info:
        names = [entry_names[i] for i in context.world_info if i < len(entry_names)]
        line += " · world info: " + ", ".join(names)
    return line


class ContextViewer(QDialog):
    """A window beside the editor; its Refresh button asks the workspace for a new assembly."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("Context")
        self.resize(640, 560)
        self.heading = QLabel()
        self.heading.setStyleSheet("font-weight: 600")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.refresh_button = QPushButton("Refresh")
        self.context: Optional[ContextResult] = None
        self._session: Optional[WriteSession] = None  # set by follow()

        legend = QHBoxLayout()
        for role, name in LEGEND:
            swatch = QLabel(f"  {name}  ")
            tint = TINTS[role]
            swatch.setStyleSheet(
                f"background: rgba({tint.red()},{tint.green()},{tint.blue()},{tint.alpha()});border-radius: 3px"
            )
            legend.addWidget(swatch)
        legend.addStretch(1)
        legend.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.summary)
        layout.addWidget(self.text, 1)
        layout.addLayout(legend)

    def follow(self, session: WriteSession) -> None:
        """Show the measurements `session` is asked for, and, while open, what each of its
        generations' model read."""
        self._session = session
        session.context_waiting.connect(self._measuring)
        session.context_measured.connect(self._measured)
        session.context_problem.connect(self._not_measured)
        session.context_used.connect(self._read)

    def _measuring(self) -> None:
        self.show_waiting(FOR_CURSOR)

    def _measured(self, context: ContextResult) -> None:
        self.show_context(context, FOR_CURSOR, self._entry_names())

    def _not_measured(self, message: str) -> None:
        self.show_problem(FOR_CURSOR, message)

    def _read(self, context: ContextResult) -> None:
        if self.isVisible():
            self.show_context(context, LAST_READ, self._entry_names())

    def _entry_names(self) -> list[str]:
        return entry_names(self._session.document.world_info) if self._session is not None else []

    def show_waiting(self, heading: str) -> None:
        self.heading.setText(heading)
        self.summary.setText("Measuring with the model's tokenizer…")

    def show_context(self, context: ContextResult, heading: str, entry_names: list[str]) -> None:
        self.context = context
        self.heading.setText(heading)
        self.summary.setText(summary(context, entry_names))
        self.text.setPlainText(context.prompt)
        document = self.text.document()
        for role, start, end in context.parts:
            tint = TINTS.get(role)
            if tint is None:
                continue
            fmt = QTextCharFormat()
            fmt.setBackground(tint)
            cursor = QTextCursor(document)
            cursor.setPosition(qt_offset(context.prompt, start))
            cursor.setPosition(qt_offset(context.prompt, end), QTextCursor.MoveMode.KeepAnchor)
            cursor.mergeCharFormat(fmt)
        self.text.moveCursor(QTextCursor.MoveOperation.End)  # the end is where the model carries on

    def show_problem(self, heading: str, message: str) -> None:
        self.context = None
        self.heading.setText(heading)
        self.summary.setText(message)
        self.text.clear()
