"""Small pieces every workspace uses: the model picker, the no-models page, the workspace frame."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QSplitter, QStackedWidget, QVBoxLayout, QWidget

from studio.engine.export.onnx_export import needs_export, why_not_exportable
from studio.models.registry import ModelInfo
from studio.state.jobs import JobList
from studio.state.settings_store import SettingsStore


class ModelCombo(QComboBox):
    """Models of one kind, shown by title; `model_id()` is what a job spec needs.

    `model_changed` says when the selected model is a different one, whether the person picked it
    or a re-scan changed the list; a re-scan that keeps the selected model says nothing."""

    model_changed = Signal(str)  # the newly selected model id ("" when the list is empty)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)
        self._current = ""
        self.currentIndexChanged.connect(self._check_model)

    def set_models(self, models: list[ModelInfo], selected: str = "") -> None:
        """Offer these models, keeping the selected one (or `selected`) when it is still offered."""
        selected = selected or self.model_id()
        old_index = self.currentIndex()
        self.blockSignals(True)  # clear() and addItem() would report passing selections
        try:
            self.clear()
            for model in models:
                self.addItem(model.title, model.id)
                tip = f"{model.id} · {model.format} · {model.path}"
                self.setItemData(self.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            index = self.findData(selected)
            self.setCurrentIndex(index if index >= 0 else 0)
        finally:
            self.blockSignals(False)
        if self.currentIndex() != old_index:
            self.currentIndexChanged.emit(self.currentIndex())
        self._check_model()  # the same index can hold a different model after a re-scan

    def model_id(self) -> str:
        return self.currentData() or ""

    def _check_model(self, *_args) -> None:
        model = self.model_id()
        if model != self._current:
            self._current = model
            self.model_changed.emit(model)


RUNTIME_TITLES = {"auto": "Auto", "torch": "PyTorch", "onnx": "ONNX Runtime", "llama.cpp": "llama.cpp"}


class RuntimeCombo(QComboBox):
    """The runtime the selected model runs on: Auto (its own), PyTorch, ONNX Runtime or llama.cpp
    (GGUF models). A runtime the model does not have is shown greyed out, its tooltip saying how to
    get it."""

    def __init__(self, runtimes: tuple[str, ...] = ("auto", "torch", "onnx"), parent: Optional[QWidget] = None):
        super().__init__(parent)
        for runtime in runtimes:  # the workspace's own: llama.cpp runs text models only
            self.addItem(RUNTIME_TITLES[runtime], runtime)
        self.setToolTip("Which library runs this model; ONNX Runtime shows the provider it used in the status bar")

    def runtime(self) -> str:
        return self.currentData() or "auto"

    def offer(self, model: Optional[ModelInfo], picked: str = "auto", exporting: bool = False) -> None:
        """Enable the runtimes `model` has and select `picked` (Auto when it has not got it, unless
        it is ONNX Runtime and the export is `exporting`). ONNX Runtime stays enabled for a model
        that can be exported: picking it exports it."""
        items = self.model()
        assert isinstance(items, QStandardItemModel)  # a QComboBox's own model: items can be disabled one by one
        for index in range(self.count()):
            runtime = self.itemData(index)
            has = runtime == "auto" or (model is not None and runtime in model.runtimes)
            usable = has or (runtime == "onnx" and needs_export(model))
            items.item(index).setEnabled(usable)
            tip = ""
            if not has and model is not None:
                if runtime in ("torch", "llama.cpp"):
                    own = " or ".join(RUNTIME_TITLES.get(r, r) for r in model.runtimes)
                    tip = f"{model.id} runs on {own} only"
                elif usable:
                    tip = (
                        f"Not exported yet: picking it exports {model.id} to ONNX once (checked against "
                        "torch, saved in your models folder)"
                    )
                else:
                    tip = why_not_exportable(model)
            self.setItemData(index, tip or None, Qt.ItemDataRole.ToolTipRole)
        has_it = picked == "auto" or (model is not None and picked in model.runtimes)
        index = self.findData(picked) if has_it or (picked == "onnx" and exporting) else 0
        self.blockSignals(True)  # a new model is not a new pick
        self.setCurrentIndex(index)
        self.blockSignals(False)


class EmptyState(QWidget):
    """Shown instead of a workspace that has no models: says where to put them, offers a re-scan."""

    rescan_requested = Signal()

    def __init__(self, noun: str, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.title = QLabel(f"No {noun} models yet")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.body = QLabel()
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # copy the path
        self.body.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.rescan_button = QPushButton("Look again")
        self.rescan_button.clicked.connect(self.rescan_requested)
        # A column of fixed width: a word-wrapped label given an alignment in its layout shrinks to
        # its narrowest and clips, so the column is centred instead of the label.
        column = QWidget()
        column.setFixedWidth(520)
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 0, 0)
        column_layout.setSpacing(14)
        column_layout.addWidget(self.title)
        column_layout.addWidget(self.body)
        column_layout.addWidget(self.rescan_button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(column, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(3)

    def set_text(self, text: str) -> None:
        self.body.setText(text)
        # Layouts do not ask an aligned item for its height-for-width, so reserve the wrapped height.
        self.body.setMinimumHeight(self.body.heightForWidth(520))


class Workspace(QWidget):
    """A tab of the main window: its own content, or an EmptyState while it has no models."""

    kind = ""  # the ModelInfo.kind this workspace runs
    runtime_choices: tuple[str, ...] = ("auto", "torch", "onnx")  # what its runtime picker offers
    kinds: tuple[str, ...] = ()  # more kinds it offers, listed in this order (empty: `kind` only)
    noun = ""  # as people say it: "image", "text", "latent"
    rescan_requested = Signal()

    def __init__(self, jobs: JobList, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.jobs = jobs
        self._model_infos: dict[str, ModelInfo] = {}
        self.models = ModelCombo()
        self.runtimes = RuntimeCombo(self.runtime_choices)  # each workspace puts it under its model picker
        self.models.model_changed.connect(self.offer_runtimes)
        self.runtimes.activated.connect(self._runtime_picked)
        self.empty = EmptyState(self.noun)
        self.empty.rescan_requested.connect(self.rescan_requested)
        self._stack = QStackedWidget()
        self._stack.addWidget(self.empty)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._stack)

    def set_content(self, content: QWidget) -> None:
        self._stack.addWidget(content)

    def has_models(self) -> bool:
        return self.models.count() > 0

    def model_info(self) -> Optional[ModelInfo]:
        """The selected model's registry entry (None when there is none)."""
        return self._model_infos.get(self.models.model_id())

    def set_models(self, models: list[ModelInfo], where_to_put: str) -> None:
        """Offer these models (already filtered to this workspace's kind)."""
        self._model_infos = {m.id: m for m in models}  # before the combo says which one is selected
        self.models.set_models(models)
        self.offer_runtimes()  # the same model may have gained a runtime (an export appeared)
        self.empty.set_text(where_to_put)
        self._stack.setCurrentIndex(1 if models else 0)

    def offer_runtimes(self, *_args) -> None:
        model = self.model_info()
        exporting = model is not None and model.id in self.jobs.exports
        picked = "onnx" if exporting else self.jobs.runtimes.get(model.id, "auto") if model else "auto"
        self.runtimes.offer(model, picked, exporting)

    def _runtime_picked(self, *_args) -> None:
        model = self.model_info()
        if model is None:
            return
        runtime = self.runtimes.runtime()
        if runtime == "onnx" and needs_export(model):
            # Exported first, as a job; the model's jobs keep running as before until it is in place.
            if self.jobs.export_to_onnx(model.id) is None:
                self.offer_runtimes()
            return
        self.jobs.set_runtime(model.id, runtime)

    def save_settings(self, store: SettingsStore) -> None:
        store.set(f"{self.kind}/model", self.models.model_id())

    def restore_settings(self, store: SettingsStore) -> None:
        model = store.get(f"{self.kind}/model", "")
        index = self.models.findData(model)
        if index >= 0:
            self.models.setCurrentIndex(index)


def canvas_beside_panel(canvas: QWidget, caption: QWidget, panel: QWidget) -> QSplitter:
    """The workspaces' shared layout: the canvas with its caption below, the controls on the right.
    The canvas takes the spare width and cannot be collapsed away."""
    left = QWidget()
    left_layout = QVBoxLayout(left)
    left_layout.setContentsMargins(0, 0, 0, 0)
    left_layout.setSpacing(0)
    left_layout.addWidget(canvas, 1)
    left_layout.addWidget(caption)

    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.addWidget(left)
    splitter.addWidget(panel)
    splitter.setStretchFactor(0, 1)
    splitter.setStretchFactor(1, 0)
    splitter.setCollapsible(0, False)
    splitter.setSizes([720, 320])
    return splitter
