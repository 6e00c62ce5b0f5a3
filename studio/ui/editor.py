"""WriteWorkspace: the writer's tab. A studio.writing.Document shown in an editor, where Continue
asks the language model to carry on from the cursor and its words stream in at that spot; Retry,
◀ / ▶ between samples, memory and notes, sampler settings, files and autosave."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QFont, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import DocumentError
from studio.core.events import Token
from studio.state.jobs import JobList
from studio.state.settings_store import SettingsStore
from studio.ui.common import Workspace
from studio.ui.document_bridge import DocumentBridge, DraftEditor, TokenSink
from studio.ui.write_panel import DocumentPanel, RecoveryBar
from studio.writing import autosave
from studio.writing.document import Document, GenerationId, sampler_problem
from studio.writing.prompt import assemble
from studio.writing.storage import NATIVE_SUFFIX, export_text, load_document, save_document

AUTOSAVE_MS = 4000  # a draft is written this long after the first change since the last one
CHARS_PER_TOKEN = 3.0  # conservative: English prose runs ~4 characters a token
DEFAULT_CONTEXT = 2048  # tokens, when the model folder does not say
OPEN_FILTER = "Documents (*.studio-doc.json *.txt *.md);;Studio documents (*.studio-doc.json);;Text (*.txt *.md)"


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class WriteWorkspace(Workspace):
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
        self.bridge = DocumentBridge(self.editor)
        self.panel = DocumentPanel()
        # The names the rest of the studio (and its tests) know these settings by.
        self.max_tokens, self.temperature = self.panel.max_tokens, self.panel.temperature
        self.seed, self.random_seed = self.panel.seed, self.panel.random_seed

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
        QShortcut(QKeySequence("Ctrl+Return"), self, self.continue_text)
        QShortcut(QKeySequence("Ctrl+R"), self, self.retry)
        QShortcut(QKeySequence("Escape"), self, self.stop)

        form = QFormLayout()
        form.addRow("Model", self.models)
        samples = QHBoxLayout()
        samples.addWidget(self.previous_button)
        samples.addWidget(self.alternative_label, 1, Qt.AlignmentFlag.AlignCenter)
        samples.addWidget(self.next_button)
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
        side.setMinimumWidth(280)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(12, 12, 12, 12)
        side_layout.setSpacing(8)
        side_layout.addLayout(form)
        side_layout.addWidget(scroll, 1)
        side_layout.addWidget(self.show_origins)
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
        content.setSizes([720, 320])
        self.set_content(content)

        self.job_id: Optional[int] = None
        self._sink: Optional[TokenSink] = None
        self.last_generation: Optional[GenerationId] = None
        self.path: Optional[Path] = None  # where Save writes (a native document), if anywhere
        self.modified = False  # since the last Save / Open / New
        self._unsaved_draft = False  # changed since the last autosave
        self.autosaver = autosave.Autosaver(autosave.free_name("Untitled"))
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave_now)
        self._offered: list[Path] = []

        self.bridge.changed.connect(self._document_changed)
        self.panel.changed.connect(self._document_changed)
        self.editor.focus_lost.connect(self.autosave_now)
        self.editor.cursorPositionChanged.connect(self._update_alternatives)
        app = QGuiApplication.instance()
        if app is not None:
            app.applicationStateChanged.connect(self._on_app_state)
        jobs.token.connect(self._on_token)
        jobs.job_changed.connect(self._on_changed)
        self.panel.set_document(self.bridge.document)
        self._update_alternatives()
        self.offer_recovery()

    @property
    def document(self) -> Document:
        return self.bridge.document

    # -- continue, stop, retry ------------------------------------------------------------------

    def context_length(self) -> int:
        """The model's window from its config (the model itself lives on the engine thread),
        else a common size."""
        info = self.model_info()
        return (info.context_length if info is not None else None) or DEFAULT_CONTEXT

    def build_prompt(self, cursor: int) -> str:
        """Memory, triggered world info, the story before `cursor` and the author's note.

        The GUI thread cannot count tokens (the tokenizer lives with the model on the engine
        thread), so this fits the story with a conservative characters-per-token estimate and the
        backend's _fit_context trims any excess from the front. Exact, token-accurate assembly
        (and the context viewer that shows it) will come with an engine-side assembly job."""
        max_new = self.document.sampler["max_new_tokens"]
        context = max(self.context_length(), max_new + 1)
        return assemble(self.document, cursor, estimate_tokens, context, max_new).prompt

    def _start(self, gen_id_for: str) -> Optional[int]:
        if self.job_id is not None:
            return None
        problem = sampler_problem(self.document.sampler)
        if problem:
            self.jobs.error.show(problem[0].upper() + problem[1:] + ".")
            return None
        if gen_id_for == "retry":
            gen_id = self.current_generation()
            if gen_id is None:
                return None
            cursor = self.document.generation_range(gen_id)[0]
        else:
            gen_id, cursor = None, self.bridge.python_cursor()
        try:
            prompt = self.build_prompt(cursor)
        except DocumentError as error:
            self.jobs.error.show(str(error))
            return None
        spec = self.document.text_job(self.models.model_id(), prompt)
        job_id = self.jobs.submit_or_report(spec)
        if job_id is None:
            return None
        if self.document.sampler["seed"] is None:
            self.panel.show_seed(spec.seed)  # greyed, but shows which seed this text got
        if gen_id is None:
            gen_id = self.bridge.add_generation(cursor)
        else:
            self.bridge.retry(gen_id)
        self.last_generation = gen_id
        self.job_id = job_id
        self._sink = TokenSink(self.bridge, gen_id)
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
        # The editor waits while the model writes: undo works on whole-document checkpoints,
        # and typing into a checkpoint the stream is still growing would undo the stream too.
        self.editor.setReadOnly(running)
        self._update_alternatives()

    def is_running(self) -> bool:
        return self.job_id is not None

    # -- files --------------------------------------------------------------------------------------

    def set_document(self, document: Document, path: Optional[Path] = None,
                     draft_name: Optional[str] = None) -> None:
        self.autosave_timer.stop()
        self.autosaver.mark_clean()  # the previous document is closed, not lost
        self.bridge.set_document(document)
        self.panel.set_document(document)
        self.path = path
        self.last_generation = None
        self.modified = self._unsaved_draft = False
        self.autosaver = autosave.Autosaver(draft_name or autosave.free_name(document.name))
        self._update_alternatives()

    def new_document(self) -> None:
        if self.job_id is None and self._may_replace():
            document = Document()
            document.sampler = dict(self.document.sampler)  # the writer's last settings carry on
            self.set_document(document)

    def open_path(self, path: Path) -> bool:
        """Open a native document, or a .txt / .md file as typed text."""
        try:
            document = load_document(Path(path))
        except DocumentError as error:
            self.jobs.error.show(str(error))
            return False
        native = str(path).endswith(NATIVE_SUFFIX)
        self.set_document(document, Path(path) if native else None)
        return True

    def save_to(self, path: Path) -> bool:
        """Save as a native document (.studio-doc.json is added when missing)."""
        path = Path(path)
        if not path.name.endswith(NATIVE_SUFFIX):
            path = path.with_name(path.name.removesuffix(".json") + NATIVE_SUFFIX)
        self.document.name = path.name[: -len(NATIVE_SUFFIX)]
        try:
            save_document(self.document, path)
        except DocumentError as error:
            self.jobs.error.show(str(error))
            return False
        self.path = path
        self.modified = False
        return True

    def export_to(self, path: Path) -> bool:
        try:
            export_text(self.document, Path(path))
        except DocumentError as error:
            self.jobs.error.show(str(error))
            return False
        return True

    def open_dialog(self) -> None:
        if self.job_id is not None or not self._may_replace():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open document", str(autosave.documents_dir()), OPEN_FILTER)
        if path:
            self.open_path(Path(path))

    def save(self) -> bool:
        return self.save_to(self.path) if self.path else self.save_as_dialog()

    def save_as_dialog(self) -> bool:
        start = self.path or autosave.documents_dir() / (autosave.safe_name(self.document.name) + NATIVE_SUFFIX)
        path, _ = QFileDialog.getSaveFileName(self, "Save document", str(start),
                                              "Studio documents (*.studio-doc.json)")
        return self.save_to(Path(path)) if path else False

    def export_dialog(self) -> None:
        start = autosave.documents_dir() / (autosave.safe_name(self.document.name) + ".txt")
        path, _ = QFileDialog.getSaveFileName(self, "Export text", str(start), "Text (*.txt);;Markdown (*.md)")
        if path:
            self.export_to(Path(path))

    def _may_replace(self) -> bool:
        """Whether the open document may be closed: unchanged, or the writer says so. (Its draft
        is autosaved either way, in the documents folder.)"""
        if not self.modified or not self.document.text:
            return True
        answer = QMessageBox.question(
            self, "Unsaved changes", f"Save the changes to “{self.document.name}” first?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    # -- autosave and recovery ----------------------------------------------------------------------

    def _document_changed(self) -> None:
        self.modified = self._unsaved_draft = True
        if not self.autosave_timer.isActive():
            self.autosave_timer.start()
        self._update_alternatives()

    @Slot()
    def autosave_now(self) -> None:
        """Write the draft if anything changed since the last one (atomically)."""
        self.autosave_timer.stop()
        if not self._unsaved_draft:
            return
        try:
            self.autosaver.save_now(self.document)
            self._unsaved_draft = False
        except DocumentError as error:
            self.jobs.error.show(str(error))

    def _on_app_state(self, state) -> None:
        if state != Qt.ApplicationState.ApplicationActive:
            self.autosave_now()

    def close_document(self) -> None:
        """The studio is closing normally: the draft is written one last time and needs no
        recovery (it stays in the documents folder)."""
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        self.autosave_now()
        self.autosaver.mark_clean()
        app = QGuiApplication.instance()
        if app is not None:
            try:
                app.applicationStateChanged.disconnect(self._on_app_state)
            except (RuntimeError, TypeError):
                pass

    def offer_recovery(self) -> None:
        self._offered = autosave.recoverable()
        self._show_offer()

    def _show_offer(self) -> None:
        if not self._offered:
            self.recovery_bar.hide()
            return
        draft = self._offered[0]
        name = draft.name[: -len(autosave.DRAFT_SUFFIX)]
        self.recovery_bar.label.setText(
            f"“{name}” was not closed when the studio last ended. Restore the autosaved draft?")
        self.recovery_bar.show()

    def restore_offered_draft(self) -> None:
        if not self._offered or self.job_id is not None:
            return
        draft = self._offered.pop(0)
        try:
            document = load_document(draft)
        except DocumentError as error:
            self.jobs.error.show(str(error))
        else:
            autosave.dismiss(draft)
            self.set_document(document, draft_name=draft.name[: -len(autosave.DRAFT_SUFFIX)])
            self.modified = True  # restored from a draft, not saved anywhere yet
        self._show_offer()

    def discard_offered_draft(self) -> None:
        if self._offered:
            autosave.dismiss(self._offered.pop(0))
        self._show_offer()

    # -- remembered settings ------------------------------------------------------------------------

    def save_settings(self, store: SettingsStore) -> None:
        super().save_settings(store)
        store.set("text/sampler", json.dumps(self.document.sampler))

    def restore_settings(self, store: SettingsStore) -> None:
        """The last sampler settings become a fresh document's; an opened one keeps its own."""
        super().restore_settings(store)
        if self.document.text or self.modified:
            return
        try:
            sampler = {**self.document.sampler, **json.loads(store.get("text/sampler", "{}"))}
        except (TypeError, ValueError):
            return
        if sampler_problem(sampler) is None:
            self.document.sampler = sampler
            self.panel.set_document(self.document)
