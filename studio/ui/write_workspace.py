"""WriteWorkspace: the writer's tab. A studio.writing.Document shown in an editor, where Continue
asks the language model to carry on from the cursor and its words stream in at that spot; Retry,
◀ / ▶ between samples, the model's alternatives for any token it wrote, memory, notes and world
info, the context viewer, instruct mode and sampler settings.

The widgets here keep to showing and editing text; what is done with jobs (building the TextJob,
which job writes where, the token log, the context measurement) is the WriteSession's
(studio/state/write_session.py), and files and drafts are a DocumentFiles helper (write_files.py)."""

from __future__ import annotations

import json
from typing import Optional

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QAction, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.state.jobs import JobHandle, JobList
from studio.state.settings_store import SettingsStore
from studio.state.write_session import WriteSession
from studio.ui.common import Workspace
from studio.ui.context_viewer import ContextViewer
from studio.ui.document_bridge import DocumentBridge, DraftEditor
from studio.ui.token_view import tooltip_html, visible
from studio.ui.write_files import DocumentFiles
from studio.ui.write_panel import DocumentPanel, RecoveryBar
from studio.writing.document import Document, sampler_problem

CONTEXT_REFRESH_MS = 600  # the open context viewer re-measures this long after the writer pauses


class WriteWorkspace(Workspace):
    kind = "text"
    noun = "text"
    runtime_choices = ("auto", "torch", "onnx", "llama.cpp")  # GGUF models run on llama.cpp

    def __init__(self, jobs: JobList, parent: Optional[QWidget] = None):
        super().__init__(jobs, parent)
        self.session = WriteSession(jobs, parent=self)
        self.editor = DraftEditor()
        self.editor.setPlaceholderText("Start writing, then press Continue (Ctrl+Enter) to let the model carry on.")
        font = QFont("Serif")
        font.setStyleHint(QFont.StyleHint.Serif)
        font.setPointSizeF(max(12.0, self.font().pointSizeF() * 1.25))
        self.editor.setFont(font)
        self.editor.document().setDocumentMargin(28)
        self.editor.setFrameShape(DraftEditor.Shape.NoFrame)
        self.editor.hover_text = self._hover_text
        self.editor.extend_menu = self._extend_menu
        self.bridge = DocumentBridge(self.editor, self.session.document)
        self.session.edits = self.bridge  # the model's text is shown, one undo step a generation
        self.panel = DocumentPanel()
        # The names the rest of the studio (and its tests) know these settings by.
        self.max_tokens, self.temperature = self.panel.max_tokens, self.panel.temperature
        self.seed, self.random_seed = self.panel.seed, self.panel.random_seed

        self.instruct = QCheckBox("Instruct mode")
        self.instruct.setToolTip(
            "Send the text as a request in the model's chat template (rendered in a "
            "sandbox) instead of continuing it as it is"
        )
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Continue from the cursor (Ctrl+Enter)")
        self.continue_button.clicked.connect(self.continue_text)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Stop (Esc)")
        self.stop_button.clicked.connect(self.stop)
        self.retry_button = QPushButton("Retry")
        self.retry_button.setToolTip("Replace the last generation with a new sample (Ctrl+R)")
        self.retry_button.clicked.connect(self.retry)
        self.previous_button = QPushButton("◀")
        self.previous_button.setToolTip("The previous sample here")
        self.previous_button.clicked.connect(lambda: self.step_alternative(-1))
        self.next_button = QPushButton("▶")
        self.next_button.setToolTip("The next sample here")
        self.next_button.clicked.connect(lambda: self.step_alternative(+1))
        self.alternative_label = QLabel("")
        self.show_origins = QCheckBox("Show who wrote what")
        self.show_origins.setChecked(True)
        self.show_origins.toggled.connect(self.bridge.highlighter.set_enabled)
        self.context_button = QPushButton("Context…")
        self.context_button.setToolTip("Show exactly what the model reads, measured with its own tokenizer")
        self.context_button.clicked.connect(self.show_context_viewer)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.continue_text)
        QShortcut(QKeySequence("Ctrl+R"), self, self.retry)
        QShortcut(QKeySequence("Escape"), self, self.stop)

        form = QFormLayout()
        form.addRow("Model", self.models)
        form.addRow("Runtime", self.runtimes)
        form.addRow("", self.instruct)
        samples = QHBoxLayout()
        samples.addWidget(self.previous_button)
        samples.addWidget(self.alternative_label, 1, Qt.AlignmentFlag.AlignCenter)
        samples.addWidget(self.next_button)
        view_row = QHBoxLayout()
        view_row.addWidget(self.show_origins, 1)
        view_row.addWidget(self.context_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.retry_button)
        buttons.addWidget(self.continue_button, 1)
        for button in (self.continue_button, self.stop_button, self.retry_button):
            button.setMinimumHeight(34)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.panel)
        # Wide enough for the panel's fields, so it scrolls only up and down.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.panel.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(12, 12, 12, 12)
        # Never narrower than the panel's fields, or the splitter would clip their right edge.
        side.setMinimumWidth(max(280, scroll.minimumWidth() + 24))
        side_layout.setSpacing(8)
        side_layout.addLayout(form)
        side_layout.addWidget(scroll, 1)
        side_layout.addLayout(view_row)
        side_layout.addLayout(samples)
        side_layout.addLayout(buttons)

        self.recovery_bar = RecoveryBar()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(0)
        left_layout.addWidget(self.recovery_bar)
        left_layout.addWidget(self.editor, 1)

        content = QSplitter(Qt.Orientation.Horizontal)
        content.addWidget(left)
        content.addWidget(side)
        content.setStretchFactor(0, 1)
        content.setCollapsible(0, False)
        content.setSizes([720, side.minimumWidth()])
        self.set_content(content)

        self.files = DocumentFiles(self.session, self, self.recovery_bar)
        self.viewer: Optional[ContextViewer] = None
        self._context_timer = QTimer(self)
        self._context_timer.setSingleShot(True)
        self._context_timer.setInterval(CONTEXT_REFRESH_MS)
        self._context_timer.timeout.connect(self.refresh_context)

        self.session.document_replaced.connect(self._show_document)
        self.session.running_changed.connect(self._set_running)
        self.session.seed_drawn.connect(self.panel.show_seed)  # greyed, but shows which seed this text got
        self.bridge.changed.connect(self._document_changed)
        self.panel.changed.connect(self._document_changed)
        self.editor.cursorPositionChanged.connect(self._update_alternatives)
        self.editor.focus_lost.connect(self.files.autosave_now)
        self.models.currentIndexChanged.connect(self._update_instruct)
        self.panel.set_document(self.document)
        self._update_alternatives()
        self._update_instruct()
        self.files.offer_recovery()

    @property
    def document(self) -> Document:
        return self.session.document

    def _show_document(self, document: Document) -> None:
        """The session has another document (opened, new, restored): show it in editor and panel."""
        self.bridge.set_document(document)
        self.panel.set_document(document)
        self._update_alternatives()

    def _document_changed(self) -> None:
        self.files.mark_changed()
        self._update_alternatives()
        self.panel.world_info.set_story(self.document.text[: self.bridge.python_cursor()])
        if self.viewer is not None and self.viewer.isVisible():
            self._context_timer.start()

    # -- the File menu's commands (the main window calls these) ----------------------------------

    def new_document(self) -> None:
        self.files.new_document()

    def open_dialog(self) -> None:
        self.files.open_dialog()

    def save(self) -> bool:
        return self.files.save()

    def save_as_dialog(self) -> bool:
        return self.files.save_as_dialog()

    def export_dialog(self) -> None:
        self.files.export_dialog()

    def close_document(self) -> None:
        self.files.close_document()

    # -- continue, stop, retry ------------------------------------------------------------------

    def instruct_on(self) -> bool:
        return self.instruct.isChecked() and self.instruct.isEnabled()

    @Slot()
    def continue_text(self) -> Optional[JobHandle]:
        return self.session.continue_at(self.bridge.python_cursor(), self.models.model_id(), self.instruct_on())

    @Slot()
    def retry(self) -> Optional[JobHandle]:
        """A new sample in place of the last generation (a new seed when the seed is random);
        the earlier samples stay reachable with ◀."""
        return self.session.retry(self.bridge.python_cursor(), self.models.model_id(), self.instruct_on())

    def choose_alternative(self, pos: int, choice: int) -> Optional[JobHandle]:
        """Rewrite the model's token at document offset `pos` with its alternative number `choice`
        and continue from there (the sample that was there stays reachable with ◀)."""
        return self.session.choose_alternative(pos, choice, self.models.model_id(), self.instruct_on())

    @Slot()
    def stop(self) -> None:
        self.session.stop()

    def is_running(self) -> bool:
        return self.session.is_running()

    def step_alternative(self, step: int) -> None:
        if self.session.step_alternative(self.bridge.python_cursor(), step):
            self._update_alternatives()

    def _update_alternatives(self) -> None:
        samples = self.session.samples_at(self.bridge.python_cursor())
        running = self.session.is_running()
        shown, count = samples or (0, 0)
        self.alternative_label.setText("" if samples is None else f"{shown + 1} / {count}")
        self.previous_button.setEnabled(not running and samples is not None and shown > 0)
        self.next_button.setEnabled(not running and samples is not None and shown + 1 < count)
        self.retry_button.setEnabled(not running and samples is not None)

    def _update_instruct(self) -> None:
        """Instruct mode is offered only for a model that has a chat template."""
        info = self.model_info()
        has = bool(info is not None and getattr(info, "has_chat_template", False))
        self.instruct.setEnabled(has)
        self.instruct.setToolTip(
            "Send the text as a request in the model's chat template (rendered in a "
            "sandbox) instead of continuing it as it is"
            if has
            else "This model has no chat template: its text is always continued as it is"
        )

    def _set_running(self, running: bool) -> None:
        self.continue_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.models.setEnabled(not running)
        # The editor waits while the model writes: undo works on whole-document checkpoints,
        # and typing into a checkpoint the stream is still growing would undo the stream too.
        self.editor.setReadOnly(running)
        self._update_alternatives()

    # -- the model's tokens: hover and choose ---------------------------------------------------------

    def _hover_text(self, qt_pos: int) -> str:
        token = self.session.token_at(self.bridge.to_python(qt_pos))
        return tooltip_html(token) if token is not None else ""

    def _extend_menu(self, qt_pos: int, menu: QMenu) -> None:
        """The model's alternatives for the token under the menu, at the top of the menu."""
        token = self.session.token_at(self.bridge.to_python(qt_pos))
        if token is None or not token.record.alternatives or self.session.is_running():
            return
        actions = menu.actions()
        first = actions[0] if actions else menu.addSeparator()  # the alternatives go above it
        title = QAction(f"Instead of “{visible(token.record.text)}”, write and continue:", menu)
        title.setEnabled(False)
        menu.insertAction(first, title)
        for i, (text, probability) in enumerate(token.record.alternatives):
            action = QAction(f"{visible(text)}    {probability * 100:.1f} %", menu)
            action.triggered.connect(lambda _=False, p=token.start, c=i: self.choose_alternative(p, c))
            menu.insertAction(first, action)
        if actions:
            menu.insertSeparator(first)

    # -- the context viewer -----------------------------------------------------------------------

    def show_context_viewer(self) -> ContextViewer:
        if self.viewer is None:
            self.viewer = ContextViewer(self)
            self.viewer.follow(self.session)
            self.viewer.refresh_button.clicked.connect(self.refresh_context)
        self.viewer.show()
        self.viewer.raise_()
        self.refresh_context()
        return self.viewer

    @Slot()
    def refresh_context(self) -> None:
        """Ask the engine what continuing at the cursor would send the model (measured there)."""
        if self.viewer is not None:
            self.session.measure_context(self.bridge.python_cursor(), self.models.model_id(), self.instruct_on())

    # -- remembered settings ------------------------------------------------------------------------

    def save_settings(self, store: SettingsStore) -> None:
        super().save_settings(store)
        store.set("text/sampler", json.dumps(self.document.sampler))
        store.set("text/instruct", "1" if self.instruct.isChecked() else "0")

    def restore_settings(self, store: SettingsStore) -> None:
        """The last sampler settings become a fresh document's; an opened one keeps its own."""
        super().restore_settings(store)
        self.instruct.setChecked(store.get("text/instruct", "0") == "1")
        if self.document.text or self.files.modified:
            return
        try:
            sampler = {**self.document.sampler, **json.loads(store.get("text/sampler", "{}"))}
        except (TypeError, ValueError):
            return
        if sampler_problem(sampler) is None:
            self.document.sampler = sampler
            self.panel.set_document(self.document)
