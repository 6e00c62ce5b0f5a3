"""ErrorBar: the strip at the top of the window that says, in one sentence, what just failed."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from studio.state.jobs import ErrorState

STYLE = """
ErrorBar { background: #5c2326; border-bottom: 1px solid #7a2e33; }
ErrorBar QLabel { color: #fbe9ea; }
ErrorBar QToolButton { color: #fbe9ea; border: none; padding: 2px 6px; font-weight: bold; }
ErrorBar QToolButton:hover { background: #7a2e33; border-radius: 3px; }
"""


class ErrorBar(QFrame):
    """Mirrors an ErrorState: visible with its message while there is one; ✕ clears it."""

    def __init__(self, error: ErrorState, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._error = error
        self.setObjectName("ErrorBar")
        self.setStyleSheet(STYLE)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # messages quote file names and prompts
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(error.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        error.error_changed.connect(self.set_message)
        self.set_message(error.message)

    def message(self) -> str:
        return self.label.text()

    @Slot(str)
    def set_message(self, message: str) -> None:
        self.label.setText(message)
        self.setVisible(bool(message))
