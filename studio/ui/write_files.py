"""The writer's documents on disk, for the Write tab: New / Open / Save / Save As / Export, and the
autosaved draft with its recovery offer after a crash. A helper the WriteWorkspace owns: it reads
and replaces the document through the workspace's WriteSession, and shows its dialogs over the
workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QObject, Qt, QTimer, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from studio.core.atomic import FileStamp
from studio.core.errors import DocumentError
from studio.state.write_session import WriteSession
from studio.ui.write_panel import RecoveryBar
from studio.writing import autosave
from studio.writing.document import Document
from studio.writing.storage import NATIVE_SUFFIX, export_text, load_document, read_document, save_document

AUTOSAVE_MS = 4000  # a draft is written this long after the first change since the last one
OPEN_FILTER = "Documents (*.studio-doc.json *.txt *.md);;Studio documents (*.studio-doc.json);;Text (*.txt *.md)"


class DocumentFiles(QObject):
    """Files and drafts of the document a WriteSession holds. `dialog_parent` is where dialogs open;
    `recovery_bar` offers a draft a crashed run left behind."""

    def __init__(self, session: WriteSession, dialog_parent: QWidget, recovery_bar: RecoveryBar):
        super().__init__(dialog_parent)
        self.session = session
        self.dialog_parent = dialog_parent
        self.recovery_bar = recovery_bar
        self.error = session.jobs.error
        self.path: Optional[Path] = None  # where Save writes (a native document), if anywhere
        self._stamp: Optional[FileStamp] = None  # `path` as opened or last saved: Save checks it
        self.modified = False  # since the last Save / Open / New
        self._unsaved_draft = False  # changed since the last autosave
        self.autosaver = autosave.Autosaver(autosave.free_name("Untitled"))
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave_now)
        self._offered: list[Path] = []
        recovery_bar.restore_button.clicked.connect(self.restore_offered_draft)
        recovery_bar.discard_button.clicked.connect(self.discard_offered_draft)
        app = QGuiApplication.instance()
        if isinstance(app, QGuiApplication):
            app.applicationStateChanged.connect(self._on_app_state)

    @property
    def document(self) -> Document:
        return self.session.document

    # -- files --------------------------------------------------------------------------------------

    def set_document(
        self,
        document: Document,
        path: Optional[Path] = None,
        draft_name: Optional[str] = None,
        stamp: Optional[FileStamp] = None,
    ) -> None:
        self.autosave_timer.stop()
        self.autosaver.mark_clean()  # the previous document is closed, not lost
        self.session.set_document(document)  # the workspace shows it
        self.path, self._stamp = path, stamp
        self.modified = self._unsaved_draft = False
        self.autosaver = autosave.Autosaver(draft_name or autosave.free_name(document.name))

    def new_document(self) -> None:
        if not self.session.is_running() and self._may_replace():
            document = Document()
            document.sampler = dict(self.document.sampler)  # the writer's last settings carry on
            self.set_document(document)

    def open_path(self, path: Path) -> bool:
        """Open a native document, or a .txt / .md file as typed text."""
        try:
            document, stamp = read_document(Path(path))
        except DocumentError as error:
            self.error.show(str(error))
            return False
        native = str(path).endswith(NATIVE_SUFFIX)
        self.set_document(document, Path(path) if native else None, stamp=stamp if native else None)
        return True

    def save_to(self, path: Path, unchanged_since: Optional[FileStamp] = None) -> bool:
        """Save as a native document (.studio-doc.json is added when missing). With
        `unchanged_since`, a file changed on disk since is not overwritten: the error bar says so
        (Save As, where the writer confirms the overwrite, passes none)."""
        path = Path(path)
        if not path.name.endswith(NATIVE_SUFFIX):
            path = path.with_name(path.name.removesuffix(".json") + NATIVE_SUFFIX)
        self.document.name = path.name[: -len(NATIVE_SUFFIX)]
        try:
            stamp = save_document(self.document, path, unchanged_since)
        except DocumentError as error:
            self.error.show(str(error))
            return False
        self.path, self._stamp = path, stamp
        self.modified = False
        return True

    def export_to(self, path: Path) -> bool:
        try:
            export_text(self.document, Path(path))
        except DocumentError as error:
            self.error.show(str(error))
            return False
        return True

    def open_dialog(self) -> None:
        if self.session.is_running() or not self._may_replace():
            return
        path, _ = QFileDialog.getOpenFileName(
            self.dialog_parent, "Open document", str(autosave.documents_dir()), OPEN_FILTER
        )
        if path:
            self.open_path(Path(path))

    def save(self) -> bool:
        """Save where the document came from, unless someone else changed that file since."""
        return self.save_to(self.path, self._stamp) if self.path else self.save_as_dialog()

    def save_as_dialog(self) -> bool:
        start = self.path or autosave.documents_dir() / (autosave.safe_name(self.document.name) + NATIVE_SUFFIX)
        path, _ = QFileDialog.getSaveFileName(
            self.dialog_parent, "Save document", str(start), "Studio documents (*.studio-doc.json)"
        )
        return self.save_to(Path(path)) if path else False

    def export_dialog(self) -> None:
        start = autosave.documents_dir() / (autosave.safe_name(self.document.name) + ".txt")
        path, _ = QFileDialog.getSaveFileName(
            self.dialog_parent, "Export text", str(start), "Text (*.txt);;Markdown (*.md)"
        )
        if path:
            self.export_to(Path(path))

    def _may_replace(self) -> bool:
        """Whether the open document may be closed: unchanged, or the writer says so. (Its draft
        is autosaved either way, in the documents folder.)"""
        if not self.modified or not self.document.text:
            return True
        answer = QMessageBox.question(
            self.dialog_parent,
            "Unsaved changes",
            f"Save the changes to “{self.document.name}” first?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    # -- autosave and recovery ----------------------------------------------------------------------

    def mark_changed(self) -> None:
        """The document changed: it is modified, and a draft is written shortly."""
        self.modified = self._unsaved_draft = True
        if not self.autosave_timer.isActive():
            self.autosave_timer.start()

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
            self.error.show(str(error))

    def _on_app_state(self, state) -> None:
        if state != Qt.ApplicationState.ApplicationActive:
            self.autosave_now()

    def close_document(self) -> None:
        """The studio is closing normally: the draft is written one last time and needs no
        recovery (it stays in the documents folder)."""
        self.session.close()  # what the model wrote so far goes into the draft too
        self.autosave_now()
        self.autosaver.mark_clean()
        app = QGuiApplication.instance()
        if isinstance(app, QGuiApplication):
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
            f"“{name}” was not closed when the studio last ended. Restore the autosaved draft?"
        )
        self.recovery_bar.show()

    def restore_offered_draft(self) -> None:
        if not self._offered or self.session.is_running():
            return
        draft = self._offered.pop(0)
        try:
            document = load_document(draft)
        except DocumentError as error:
            self.error.show(str(error))
        else:
            autosave.dismiss(draft)
            self.set_document(document, draft_name=draft.name[: -len(autosave.DRAFT_SUFFIX)])
            self.modified = True  # restored from a draft, not saved anywhere yet
        self._show_offer()

    def discard_offered_draft(self) -> None:
        if self._offered:
            autosave.dismiss(self._offered.pop(0))
        self._show_offer()
