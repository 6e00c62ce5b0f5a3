"""WriteWorkspace: the writer's tab. A studio.writing.Document shown in an editor, where Continue
asks the language model to carry on from the cursor and its words stream in at that spot; Retry,
◀ / ▶ between samples, the model's alternatives for any token it wrote, memory, notes and world
info, the context viewer, instruct mode and sampler settings. Files and drafts: write_files.py."""

from __future__ import annotations

import dataclasses
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

from studio.core.errors import DocumentError, StudioError
from studio.core.events import ContextResult, Token
from studio.core.jobs import ContextJob, TextJob
from studio.state.jobs import JobList, JobState
from studio.state.settings_store import SettingsStore
from studio.ui.common import Workspace
from studio.ui.context_viewer import ContextViewer
from studio.ui.document_bridge import DocumentBridge, DraftEditor, TokenSink
from studio.ui.token_view import TokenAt, TokenLog, TokenRecord, tooltip_html, visible
from studio.ui.write_files import DocumentFiles
from studio.ui.write_panel import DocumentPanel, RecoveryBar
from studio.writing.document import Document, GenerationId, sampler_problem

CONTEXT_REFRESH_MS = 600  # the open context viewer re-measures this long after the writer pauses
FOR_CURSOR = "What the model will read if you continue at the cursor"
LAST_READ = "What the model read for the last generation"


class WriteWorkspace(DocumentFiles, Workspace):
    kind = "text"
    noun = "text"

    def __init__(self, jobs: JobList, parent: Optional[QWidget] = None):
        super().__init__(jobs, parent)
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
        self.bridge = DocumentBridge(self.editor)
        self.tokens = TokenLog()
        self.panel = DocumentPanel()
        # The names the rest of the studio (and its tests) know these settings by.
        self.max_tokens, self.temperature = self.panel.max_tokens, self.panel.temperature
        self.seed, self.random_seed = self.panel.seed, self.panel.random_seed

        self.instruct = QCheckBox("Instruct mode")
        self.instruct.setToolTip("Send the text as a request in the model's chat template (rendered in a "
                                 "sandbox) instead of continuing it as it is")
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
        self.recovery_bar.restore_button.clicked.connect(self.restore_offered_draft)
        self.recovery_bar.discard_button.clicked.connect(self.discard_offered_draft)
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

        self.job_id: Optional[int] = None
        self._sink: Optional[TokenSink] = None
        self.last_generation: Optional[GenerationId] = None
        self.last_context: Optional[ContextResult] = None  # what the model read for the last job
        self.viewer: Optional[ContextViewer] = None
        self._context_job: Optional[int] = None
        self._context_timer = QTimer(self)
        self._context_timer.setSingleShot(True)
        self._context_timer.setInterval(CONTEXT_REFRESH_MS)
        self._context_timer.timeout.connect(self.refresh_context)
        self._init_files()

        self.bridge.changed.connect(self._document_changed)
        self.panel.changed.connect(self._document_changed)
        self.editor.cursorPositionChanged.connect(self._update_alternatives)
        self.models.currentIndexChanged.connect(self._update_instruct)
        jobs.token.connect(self._on_token)
        jobs.context_used.connect(self._on_context_used)
        jobs.finished.connect(self._on_finished)
        jobs.job_changed.connect(self._on_changed)
        self.panel.set_document(self.bridge.document)
        self._update_alternatives()
        self._update_instruct()
        self.offer_recovery()

    @property
    def document(self) -> Document:
        return self.bridge.document

    def _show_document(self, document: Document) -> None:
        """Show another document (files call this): editor, panel, and no stale token records."""
        self.bridge.set_document(document)
        self.panel.set_document(document)
        self.tokens.clear()
        self.last_generation = None
        self._update_alternatives()

    def _document_changed(self) -> None:
        self._mark_changed()
        self._update_alternatives()
        self.panel.world_info.set_story(self.document.text[:self.bridge.python_cursor()])
        if self.viewer is not None and self.viewer.isVisible():
            self._context_timer.start()

    # -- continue, stop, retry ------------------------------------------------------------------

    def text_job(self, cursor: int) -> TextJob:
        """The job that continues at `cursor`: the story is assembled on the engine, with the
        model's own tokenizer (DocumentError when the cursor is not in the text)."""
        return self.document.story_job(self.models.model_id(), cursor, instruct=self.instruct_on())

    def instruct_on(self) -> bool:
        return self.instruct.isChecked() and self.instruct.isEnabled()

    def _start(self, how: str, token: Optional[TokenAt] = None, choice: int = 0) -> Optional[int]:
        """Start a job: "continue" at the cursor, "retry" the current generation, or "branch":
        rewrite `token` with its alternative `choice` and carry on from there."""
        if self.job_id is not None:
            return None
        problem = sampler_problem(self.document.sampler)
        if problem:
            self.jobs.error.show(problem[0].upper() + problem[1:] + ".")
            return None
        if how == "continue":
            gen_id, cursor = None, self.bridge.python_cursor()
        else:
            gen_id = token.generation if token is not None else self.current_generation()
            if gen_id is None:
                return None
            cursor = self.document.generation_range(gen_id)[0] if how == "retry" else token.start
        try:
            spec = self.text_job(cursor)
            if how == "branch":  # the story reads on through the chosen token
                chosen = token.record.alternatives[choice][0]
                spec = dataclasses.replace(spec, story=dataclasses.replace(spec.story, text=spec.story.text + chosen))
        except DocumentError as error:
            self.jobs.error.show(str(error))
            return None
        job_id = self.jobs.submit_or_report(spec)
        if job_id is None:
            return None
        if self.document.sampler["seed"] is None:
            self.panel.show_seed(spec.seed)  # greyed, but shows which seed this text got
        keep: list[TokenRecord] = []
        if how == "continue":
            gen_id = self.bridge.add_generation(cursor)
        elif how == "retry":
            self.bridge.retry(gen_id)
        else:
            shown = self.document.alternatives(gen_id)[self.document.shown_alternative(gen_id)]
            offset = token.record.offset
            old = self.tokens.records(gen_id, self.document.shown_alternative(gen_id))
            keep = old[:token.index] + [TokenRecord(offset, chosen, token.record.alternatives)]
            self.bridge.retry(gen_id, shown[:offset] + chosen)
        records = self.tokens.start(gen_id, self.document.shown_alternative(gen_id), keep)
        self.last_generation = gen_id
        self.job_id = job_id
        self._sink = TokenSink(self.bridge, gen_id, records)
        self._set_running(True)
        return job_id

    @Slot()
    def continue_text(self) -> Optional[int]:
        return self._start("continue")

    @Slot()
    def retry(self) -> Optional[int]:
        """A new sample in place of the last generation (a new seed when the seed is random);
        the earlier samples stay reachable with ◀."""
        return self._start("retry")

    def choose_alternative(self, pos: int, choice: int) -> Optional[int]:
        """Rewrite the model's token at document offset `pos` with its alternative number
        `choice`, drop what the model wrote after it, and continue from there. The sample that
        was there stays reachable with ◀."""
        token = self.tokens.at(self.document, pos)
        if token is None or not 0 <= choice < len(token.record.alternatives):
            return None
        return self._start("branch", token, choice)

    @Slot()
    def stop(self) -> None:
        if self.job_id is not None:
            self.jobs.cancel(self.job_id)

    def current_generation(self) -> Optional[GenerationId]:
        """The generation at the cursor, else the last one while it is still in the text."""
        gen_id = self.document.generation_at(self.bridge.python_cursor())
        if gen_id is None and self.last_generation in self.document.generations():
            gen_id = self.last_generation
        return gen_id

    def step_alternative(self, step: int) -> None:
        gen_id = self.current_generation()
        if gen_id is None or self.job_id is not None:
            return
        index = self.document.shown_alternative(gen_id) + step
        if 0 <= index < len(self.document.alternatives(gen_id)):
            self.bridge.show_alternative(gen_id, index)
            self.last_generation = gen_id
            self._update_alternatives()

    def _update_alternatives(self) -> None:
        gen_id = self.current_generation()
        running = self.job_id is not None
        if gen_id is None:
            self.alternative_label.setText("")
            shown = count = 0
        else:
            shown, count = self.document.shown_alternative(gen_id), len(self.document.alternatives(gen_id))
            self.alternative_label.setText(f"{shown + 1} / {count}")
        self.previous_button.setEnabled(not running and gen_id is not None and shown > 0)
        self.next_button.setEnabled(not running and gen_id is not None and shown + 1 < count)
        self.retry_button.setEnabled(not running and gen_id is not None)

    def _update_instruct(self) -> None:
        """Instruct mode is offered only for a model that has a chat template."""
        info = self.model_info()
        has = bool(info is not None and getattr(info, "has_chat_template", False))
        self.instruct.setEnabled(has)
        self.instruct.setToolTip("Send the text as a request in the model's chat template (rendered in a "
                                 "sandbox) instead of continuing it as it is" if has else
                                 "This model has no chat template: its text is always continued as it is")

    # -- the model's tokens: hover and choose ---------------------------------------------------------

    def token_at(self, pos: int) -> Optional[TokenAt]:
        """The model's token at document offset `pos` (or just before it: the mouse sits between
        characters)."""
        return self.tokens.at(self.document, pos) or (self.tokens.at(self.document, pos - 1) if pos else None)

    def _hover_text(self, qt_pos: int) -> str:
        token = self.token_at(self.bridge.to_python(qt_pos))
        return tooltip_html(token) if token is not None else ""

    def _extend_menu(self, qt_pos: int, menu: QMenu) -> None:
        """The model's alternatives for the token under the menu, at the top of the menu."""
        token = self.token_at(self.bridge.to_python(qt_pos))
        if token is None or not token.record.alternatives or self.job_id is not None:
            return
        first = menu.actions()[0] if menu.actions() else None
        title = QAction(f"Instead of “{visible(token.record.text)}”, write and continue:", menu)
        title.setEnabled(False)
        menu.insertAction(first, title)
        for i, (text, probability) in enumerate(token.record.alternatives):
            action = QAction(f"{visible(text)}    {probability * 100:.1f} %", menu)
            action.triggered.connect(lambda _=False, p=token.start, c=i: self.choose_alternative(p, c))
            menu.insertAction(first, action)
        menu.insertSeparator(first)

    # -- job events -------------------------------------------------------------------------------

    @Slot(int, object)
    def _on_token(self, job_id: int, token: Token) -> None:
        if job_id == self.job_id and self._sink is not None and token.text:
            self._sink.add(token.text, token.alternatives)

    @Slot(int, object)
    def _on_context_used(self, job_id: int, context: ContextResult) -> None:
        if job_id == self.job_id:
            self.last_context = context
            if self.viewer is not None and self.viewer.isVisible():
                self.viewer.show_context(context, LAST_READ, self._entry_names())

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        if job_id == self._context_job and isinstance(result, ContextResult) and self.viewer is not None:
            self._context_job = None
            self.viewer.show_context(result, FOR_CURSOR, self._entry_names())

    @Slot(int)
    def _on_changed(self, job_id: int) -> None:
        record = self.jobs.get(job_id)
        if record is None or not record.state.is_terminal:
            return
        if job_id == self._context_job:
            if record.state is JobState.FAILED and self.viewer is not None:
                self._context_job = None
                self.viewer.show_problem(FOR_CURSOR, record.message)
            elif record.state is JobState.CANCELLED:  # superseded by a newer request: that one answers
                self._context_job = None
            return  # a finished one is shown by _on_finished, which comes next
        if job_id != self.job_id:
            return
        self._end_stream()
        self.job_id = None
        self._set_running(False)

    def _end_stream(self) -> None:
        if self._sink is not None:
            self._sink.close()  # tokens that arrived before the end stay: they were shown as written
            self._sink = None

    def _set_running(self, running: bool) -> None:
        self.continue_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.models.setEnabled(not running)
        # The editor waits while the model writes: undo works on whole-document checkpoints,
        # and typing into a checkpoint the stream is still growing would undo the stream too.
        self.editor.setReadOnly(running)
        self._update_alternatives()

    def is_running(self) -> bool:
        return self.job_id is not None

    # -- the context viewer -----------------------------------------------------------------------

    def show_context_viewer(self) -> ContextViewer:
        if self.viewer is None:
            self.viewer = ContextViewer(self)
            self.viewer.refresh_button.clicked.connect(self.refresh_context)
        self.viewer.show()
        self.viewer.raise_()
        self.refresh_context()
        return self.viewer

    @Slot()
    def refresh_context(self) -> None:
        """Ask the engine what continuing at the cursor would send the model (measured there)."""
        if self.viewer is None or not self.models.model_id():
            return
        try:
            spec = ContextJob.of(self.text_job(self.bridge.python_cursor()))
            spec.validate()  # a memory or world info entry past a job's limits: a SpecError
        except StudioError as error:
            self.viewer.show_problem(FOR_CURSOR, str(error))
            return
        self._context_job = self.jobs.submit_or_report(spec)
        if self._context_job is None:
            self.viewer.show_problem(FOR_CURSOR, self.jobs.error.message or "The engine is not taking jobs.")
        else:
            self.viewer.show_waiting(FOR_CURSOR)

    def _entry_names(self) -> list[str]:
        return [", ".join(e.keys) or f"entry {i + 1}" for i, e in enumerate(self.document.world_info)]

    # -- remembered settings ------------------------------------------------------------------------

    def save_settings(self, store: SettingsStore) -> None:
        super().save_settings(store)
        store.set("text/sampler", json.dumps(self.document.sampler))
        store.set("text/instruct", "1" if self.instruct.isChecked() else "0")

    def restore_settings(self, store: SettingsStore) -> None:
        """The last sampler settings become a fresh document's; an opened one keeps its own."""
        super().restore_settings(store)
        self.instruct.setChecked(store.get("text/instruct", "0") == "1")
        if self.document.text or self.modified:
            return
        try:
            sampler = {**self.document.sampler, **json.loads(store.get("text/sampler", "{}"))}
        except (TypeError, ValueError):
            return
        if sampler_problem(sampler) is None:
            self.document.sampler = sampler
            self.panel.set_document(self.document)
