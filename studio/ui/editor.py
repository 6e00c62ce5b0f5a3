"""WriteWorkspace: the writer's tab. A plain-text editor where "Continue" asks the language model to
carry on from the cursor, and its words stream in at that spot."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QFont, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.core.events import Token
from studio.core.jobs import TextJob, resolve_seed
from studio.state.jobs import JobList
from studio.state.settings_store import SettingsStore
from studio.ui.common import Workspace

FLUSH_MS = 33  # tokens are written into the document at most ~30 times a second


class TokenSink:
    """Writes streamed text into a document at a fixed spot, as one undo step.

    Tokens are buffered and written on a timer: a fast model can send hundreds a second, and a
    document edit per token would make the editor lag behind the stream."""

    def __init__(self, editor: QPlainTextEdit, position: int):
        self._editor = editor
        self._cursor = QTextCursor(editor.document())  # a cursor of its own: moves with edits elsewhere
        self._cursor.setPosition(position)
        self._buffer: list[str] = []
        self._started = False
        self._timer = QTimer(editor)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.flush)

    def add(self, text: str) -> None:
        self._buffer.append(text)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        if not self._buffer:
            self._timer.stop()
            return
        text = "".join(self._buffer)
        self._buffer.clear()
        # The first write opens an edit block and later ones join it, so Undo removes the whole
        # generation at once rather than one token at a time.
        if self._started:
            self._cursor.joinPreviousEditBlock()
        else:
            self._cursor.beginEditBlock()
            self._started = True
        self._cursor.insertText(text)
        self._cursor.endEditBlock()

    def close(self) -> None:
        self.flush()
        self._timer.stop()
        self._timer.deleteLater()


class WriteWorkspace(Workspace):
    kind = "text"
    noun = "text"

    def __init__(self, jobs: JobList, parent: Optional[QWidget] = None):
        super().__init__(jobs, parent)
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("Start writing, then press Continue (Ctrl+Enter) to let the model carry on.")
        font = QFont("Serif")
        font.setStyleHint(QFont.StyleHint.Serif)
        font.setPointSizeF(max(12.0, self.font().pointSizeF() * 1.25))
        self.editor.setFont(font)
        self.editor.document().setDocumentMargin(28)
        self.editor.setFrameShape(QPlainTextEdit.Shape.NoFrame)

        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 4096)
        self.max_tokens.setValue(64)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(0.8)
        self.seed = QSpinBox()  # 2**31 - 1 seeds are plenty for prose
        self.seed.setRange(0, 2**31 - 1)
        self.random_seed = QCheckBox("Random")
        self.random_seed.setChecked(True)
        self.seed.setEnabled(False)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Continue from the cursor (Ctrl+Enter)")
        self.continue_button.clicked.connect(self.continue_text)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Stop (Esc)")
        self.stop_button.clicked.connect(self.stop)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.continue_text)
        QShortcut(QKeySequence("Escape"), self, self.stop)

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", self.models)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Temperature", self.temperature)
        form.addRow("Seed", seed_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.continue_button, 1)
        self.continue_button.setMinimumHeight(34)
        self.stop_button.setMinimumHeight(34)

        side = QWidget()
        side.setMinimumWidth(260)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(12, 12, 12, 12)
        side_layout.setSpacing(8)
        side_layout.addLayout(form)
        side_layout.addStretch(1)
        side_layout.addLayout(buttons)

        content = QSplitter(Qt.Orientation.Horizontal)
        content.addWidget(self.editor)
        content.addWidget(side)
        content.setStretchFactor(0, 1)
        content.setCollapsible(0, False)
        content.setSizes([740, 300])
        self.set_content(content)

        self.job_id: Optional[int] = None
        self._sink: Optional[TokenSink] = None
        jobs.token.connect(self._on_token)
        jobs.job_changed.connect(self._on_changed)

    # -- commands ---------------------------------------------------------------------------------

    def build_spec(self) -> TextJob:
        seed = resolve_seed(None if self.random_seed.isChecked() else self.seed.value(), high=self.seed.maximum())
        return TextJob(
            model=self.models.model_id(),
            prompt=self.text_before_cursor(),
            max_new_tokens=self.max_tokens.value(),
            temperature=round(self.temperature.value(), 3),
            seed=seed,
        )

    def text_before_cursor(self) -> str:
        cursor = QTextCursor(self.editor.document())
        cursor.setPosition(self.editor.textCursor().position(), QTextCursor.MoveMode.KeepAnchor)
        # selectedText() marks paragraph ends with U+2029; the model should see newlines.
        return cursor.selectedText().replace("\u2029", "\n")

    @Slot()
    def continue_text(self) -> Optional[int]:
        if self.job_id is not None:
            return None
        spec = self.build_spec()
        job_id = self.jobs.submit_or_report(spec)
        if job_id is None:
            return None
        if self.random_seed.isChecked():
            self.seed.setValue(spec.seed)  # greyed, but shows which seed this text got
        self.job_id = job_id
        self._sink = TokenSink(self.editor, self.editor.textCursor().position())
        self._set_running(True)
        return job_id

    @Slot()
    def stop(self) -> None:
        if self.job_id is not None:
            self.jobs.cancel(self.job_id)

    # -- job events -------------------------------------------------------------------------------

    @Slot(int, object)
    def _on_token(self, job_id: int, token: Token) -> None:
        if job_id == self.job_id and self._sink is not None and token.text:
            self._sink.add(token.text)

    @Slot(int)
    def _on_changed(self, job_id: int) -> None:
        record = self.jobs.get(job_id)
        if job_id != self.job_id or record is None or not record.state.is_terminal:
            return
        if self._sink is not None:
            self._sink.close()  # tokens that arrived before the end stay: they were shown as written
            self._sink = None
        self.job_id = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.continue_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.models.setEnabled(not running)

    def is_running(self) -> bool:
        return self.job_id is not None

    # -- remembered settings ----------------------------------------------------------------------

    def save_settings(self, store: SettingsStore) -> None:
        super().save_settings(store)
        store.set("text/max_tokens", self.max_tokens.value())
        store.set("text/temperature", self.temperature.value())
        store.set("text/seed", self.seed.value())
        store.set("text/random_seed", self.random_seed.isChecked())

    def restore_settings(self, store: SettingsStore) -> None:
        super().restore_settings(store)
        self.max_tokens.setValue(store.get("text/max_tokens", self.max_tokens.value()))
        self.temperature.setValue(store.get("text/temperature", self.temperature.value()))
        self.seed.setValue(store.get("text/seed", self.seed.value()))
        self.random_seed.setChecked(store.get("text/random_seed", True))
