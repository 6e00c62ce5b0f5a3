"""MainWindow: the three workspaces in tabs, the jobs dock, the error bar and the status bar.

It owns no engine logic: it wires widgets to the JobList, remembers layout and last-used settings,
and on close hides itself, cancels every job and waits for the engine thread to end."""

from __future__ import annotations

import html
import json
import logging
from typing import Optional

from PySide6.QtCore import QByteArray, QCoreApplication, QEventLoop, Qt, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QTabWidget, QVBoxLayout, QWidget

from studio.core.errors import StudioError
from studio.core.events import RunInfo
from studio.models.registry import ModelRegistry
from studio.state.jobs import JobList, JobState
from studio.state.settings_store import SettingsStore
from studio.ui.appearance import TITLES, Appearance
from studio.ui.common import Workspace
from studio.ui.error_bar import ErrorBar
from studio.ui.explore_workspace import ExploreWorkspace
from studio.ui.image_workspace import ImageWorkspace
from studio.ui.jobs_panel import JobsPanel
from studio.ui.write_workspace import WriteWorkspace

log = logging.getLogger(__name__)


def _where(info: RunInfo) -> str:
    """Where the last job ran, for the status bar: "cpu · PyTorch", "cpu · ONNX Runtime (CPU)" or
    "cpu · llama.cpp (Q8_0)"."""
    if info.runtime == "onnx":
        return f"{info.device} · ONNX Runtime" + (f" ({info.provider})" if info.provider else "")
    if info.runtime == "llama.cpp":
        return f"{info.device} · llama.cpp" + (f" ({info.dtype})" if info.dtype else "")
    return f"{info.device} · PyTorch" if info.runtime == "torch" else str(info.device)


class MainWindow(QMainWindow):
    def __init__(
        self,
        jobs: JobList,
        registry: ModelRegistry,
        store: Optional[SettingsStore] = None,
        parent: Optional[QWidget] = None,
    ):
        super().__init__(parent)
        self.jobs = jobs
        self.registry = registry
        self.store = store or SettingsStore(parent=self)
        self.appearance = Appearance(self.store, parent=self)  # light or dark before anything is drawn
        self._closed = False
        self.setWindowTitle("Studio")
        self.setObjectName("MainWindow")  # saveState() needs object names on docks and bars

        self.error_bar = ErrorBar(jobs.error)
        self.image = ImageWorkspace(jobs)
        self.write = WriteWorkspace(jobs)
        self.explore = ExploreWorkspace(jobs)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.image, "Image")
        self.tabs.addTab(self.write, "Write")
        self.tabs.addTab(self.explore, "Explore")
        for workspace in self.workspaces():
            workspace.rescan_requested.connect(self.refresh_models)
        jobs.models_changed.connect(self.refresh_models)  # an export finished (or failed)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.error_bar)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.jobs_panel = JobsPanel(jobs)
        self.jobs_dock = QDockWidget("Jobs")
        self.jobs_dock.setObjectName("JobsDock")
        self.jobs_dock.setWidget(self.jobs_panel)
        self.jobs_dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.jobs_dock.setMinimumWidth(240)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.jobs_dock)

        self.models_label = QLabel()
        self.engine_label = QLabel()
        self.last_job_label = QLabel()
        status = self.statusBar()
        status.addWidget(self.models_label)
        status.addWidget(_separator())
        status.addWidget(self.engine_label, 1)
        status.addPermanentWidget(self.last_job_label)
        jobs.job_changed.connect(self._update_engine_state)
        jobs.busy_changed.connect(self._update_engine_state)

        self._build_menus()
        self.refresh_models()
        self._update_engine_state()
        self.restore_settings()

    def workspaces(self) -> list[Workspace]:
        return [self.image, self.write, self.explore]

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.document_actions = {}
        for key, title, shortcut, slot in (
            ("new", "&New document", QKeySequence.StandardKey.New, self.write.new_document),
            ("open", "&Open document…", QKeySequence.StandardKey.Open, self.write.open_dialog),
            ("save", "&Save document", QKeySequence.StandardKey.Save, self.write.save),
            ("save_as", "Save document &as…", QKeySequence.StandardKey.SaveAs, self.write.save_as_dialog),
            ("export", "&Export as text…", None, self.write.export_dialog),
        ):
            action = QAction(title, self)
            if shortcut is not None:
                action.setShortcut(shortcut)
            action.triggered.connect(lambda _checked=False, slot=slot: self._document_action(slot))
            file_menu.addAction(action)
            self.document_actions[key] = action
        file_menu.addSeparator()
        rescan = QAction("Look for &models again", self)
        rescan.triggered.connect(self.refresh_models)
        file_menu.addAction(rescan)
        gallery = QAction("&Gallery folder…", self)
        gallery.setToolTip("Where finished images are saved")
        gallery.triggered.connect(self.image.choose_gallery_folder)
        file_menu.addAction(gallery)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.jobs_dock.toggleViewAction())
        schemes = view_menu.addMenu("&Colour scheme")
        group = QActionGroup(self)  # exclusive: one scheme is ticked
        self.scheme_actions = {}
        for scheme, title in TITLES.items():
            action = QAction(title, group, checkable=True, checked=scheme is self.appearance.scheme)
            action.triggered.connect(lambda _checked=False, scheme=scheme: self.appearance.choose(scheme))
            schemes.addAction(action)
            self.scheme_actions[scheme] = action

    def _document_action(self, slot) -> None:
        """Document commands belong to the Write tab: it comes to the front first."""
        self.tabs.setCurrentWidget(self.write)
        slot()

    # -- models and status ------------------------------------------------------------------------

    @Slot()
    def refresh_models(self) -> None:
        self.registry.refresh()
        self.jobs.refresh_models()
        where = self.registry.where_to_put_models()
        for workspace in self.workspaces():
            offered = [m for kind in workspace.kinds or (workspace.kind,) for m in self.registry.models(kind)]
            workspace.set_models(offered, where)
        self.image.set_loras(self.registry.models("lora"))
        count = len(self.registry.models())
        problems = self.registry.problems
        text = f"{count} model{'s' if count != 1 else ''}" if count else "No models"
        self.models_label.setText(text + (f" · {len(problems)} unusable" if problems else ""))
        self.models_label.setToolTip(
            html.escape(
                "\n".join(
                    [f"{m.id} ({m.kind}, {m.format})" for m in self.registry.models()]
                    + [f"unusable: {p.message}" for p in problems]
                )
            )
        )
        if problems:  # a broken file is one sentence in the error bar; everything else stays usable
            more = f" ({len(problems) - 1} more: see the models count in the status bar)" if len(problems) > 1 else ""
            self.jobs.error.show(problems[0].message + more)

    @Slot()
    def _update_engine_state(self, *_args) -> None:
        running = [r for r in self.jobs.active() if r.state is JobState.RUNNING]
        device = self.jobs.last_info.device
        if running:
            record = running[0]
            steps = f" · {record.step}/{record.total}" if record.total else ""
            text = f"Running {record.kind}{steps}"
        else:
            text = "Engine idle" if device else "Engine ready · models load on first use"
        waiting = sum(1 for r in self.jobs.active() if r.state is JobState.QUEUED)
        if waiting:
            text += f" · {waiting} waiting"
        if device:
            text += f" · {_where(self.jobs.last_info)}"
        self.engine_label.setText(text)
        last = self.jobs.last_ended()
        if last is not None and last.state is JobState.FINISHED and last.seconds is not None:
            self.last_job_label.setText(f"Last job {last.seconds:.1f} s")

    # -- remembered settings ----------------------------------------------------------------------

    def _has_runtime(self, model_id: str, runtime: object) -> bool:
        try:
            return runtime in ("torch", "onnx", "llama.cpp") and runtime in self.registry.resolve(model_id).runtimes
        except StudioError:  # the model is gone
            return False

    def restore_settings(self) -> None:
        try:  # model id -> the runtime picked for it, as JSON (INI files hold text)
            runtimes = json.loads(self.store.get("models/runtimes", "{}"))
        except ValueError:
            runtimes = {}
        if isinstance(runtimes, dict):
            for model_id, runtime in runtimes.items():
                if isinstance(model_id, str) and self._has_runtime(model_id, runtime):
                    self.jobs.set_runtime(model_id, runtime)
        geometry = self.store.get("window/geometry", QByteArray())
        if geometry.isEmpty() or not self.restoreGeometry(geometry):
            self.resize(1240, 800)
        state = self.store.get("window/state", QByteArray())
        if not state.isEmpty():
            self.restoreState(state)
        for workspace in self.workspaces():
            workspace.restore_settings(self.store)
            workspace.offer_runtimes()  # the restored pick for the model it shows
        self.tabs.setCurrentIndex(min(max(self.store.get("window/tab", 0), 0), self.tabs.count() - 1))

    def save_settings(self) -> None:
        self.store.set("window/geometry", self.saveGeometry())
        self.store.set("window/state", self.saveState())
        self.store.set("window/tab", self.tabs.currentIndex())
        # Only picks the model still has: an export deleted since, or still running, is not one.
        picks = {m: r for m, r in self.jobs.runtimes.items() if self._has_runtime(m, r)}
        self.store.set("models/runtimes", json.dumps(picks))
        for workspace in self.workspaces():
            workspace.save_settings(self.store)
        self.store.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._closed:
            self._closed = True
            try:
                self.save_settings()  # while the window still has its geometry
            except Exception:  # noqa: BLE001 - a settings problem must not keep the window open
                log.exception("could not save window settings")
            # Gone from the screen at once, even if the engine takes a while to finish its step.
            self.hide()
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
            self.jobs.shutdown()  # cancels every job, then waits for the engine thread
            self.image.finish_writes()  # every finished image on disk before the window goes
            self.explore.finish_exports()  # a morph being written is finished (or cancelled)
            try:
                self.write.close_document()  # the last draft written; no recovery offered for it
            except Exception:  # noqa: BLE001 - the window must close; the draft stays offered
                log.exception("could not close the writer's document")
        event.accept()


def _separator() -> QLabel:
    label = QLabel("·")
    label.setEnabled(False)
    return label
