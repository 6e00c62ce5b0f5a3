"""PromptPanel: the artist's controls. It turns the fields into an ImageJob and asks for it to run;
validation is the spec's (SpecError names the field), so the panel and the CLI agree on what is valid."""

from __future__ import annotations

import json
from typing import Optional

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QKeySequence, QRegularExpressionValidator, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import SCHEDULERS, ImageJob, resolve_seed
from studio.state.settings_store import SettingsStore
from studio.ui.common import ModelCombo
from studio.ui.lora_list import LoraList

# Where a job starts from: noise (txt2img), the canvas (img2img), the canvas and its mask (inpaint).
MODES = (("txt2img", "Text to image"), ("img2img", "Image to image (canvas)"), ("inpaint", "Inpaint (canvas + mask)"))


class PromptPanel(QWidget):
    """Model, prompt, negative prompt, mode, sampler, steps, CFG, seed, size, batch count, denoising
    strength, LoRAs, and the Generate button. The image session (studio/state/image_session.py)
    adds the canvas pictures for img2img and inpainting to the spec this panel builds."""

    generate_requested = Signal(object)  # ImageJob, not yet validated

    def __init__(self, models: ModelCombo, runtimes: Optional[QWidget] = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.models = models
        self.runtimes = runtimes  # the workspace's runtime picker, shown under the model
        self.last_seed: Optional[int] = None

        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("What to paint: a lighthouse at dusk, oil on canvas…")
        self.prompt.setTabChangesFocus(True)
        self.prompt.setMinimumHeight(72)
        self.prompt.setMaximumHeight(180)
        self.negative_prompt = QPlainTextEdit()
        self.negative_prompt.setPlaceholderText("What to avoid (optional)")
        self.negative_prompt.setTabChangesFocus(True)
        self.negative_prompt.setMaximumHeight(64)

        self.mode = QComboBox()
        for key, label in MODES:
            self.mode.addItem(label, key)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.scheduler = QComboBox()
        self.scheduler.addItem("Model default", "")
        for name in SCHEDULERS:
            self.scheduler.addItem(name, name)
        self.scheduler.setToolTip("Sampler, named as AUTOMATIC1111 names it")
        self.count = QSpinBox()
        self.count.setRange(1, 100)
        self.count.setToolTip("Images per Generate, with seeds seed, seed+1, …")
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(3)
        self.strength.setValue(0.75)
        self.strength.setToolTip("Denoising strength: how much of the canvas is repainted (1 = all of it)")
        self.loras = LoraList()

        self.steps = QSpinBox()
        self.steps.setRange(1, 1000)  # the spec's range: restored settings must fit unchanged
        self.steps.setValue(20)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 50.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(2)
        self.guidance.setValue(7.0)
        self.guidance.setToolTip("Classifier-free guidance: how closely to follow the prompt")

        # A line edit, not a spin box: seeds go up to 2**64 - 1 (ComfyUI's), past what a QSpinBox holds.
        self.seed = QLineEdit("0")
        self.seed.setValidator(QRegularExpressionValidator(r"\d{0,20}"))
        self.random_seed = QCheckBox("Random")
        self.random_seed.setChecked(True)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.seed.setEnabled(False)
        self.reuse_seed = QToolButton()
        self.reuse_seed.setText("♻")
        self.reuse_seed.setToolTip("Reuse the last seed")
        self.reuse_seed.setEnabled(False)
        self.reuse_seed.clicked.connect(self.reuse_last_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        seed_row.addWidget(self.reuse_seed)

        # Free entry (step 64, but any number can be typed): the spec says what is wrong with it.
        self.width_ = _size_box()
        self.height_ = _size_box()
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_, 1)

        self.generate = QPushButton("Generate")
        self.generate.setDefault(True)
        self.generate.setMinimumHeight(34)
        self.generate.setToolTip("Generate (Ctrl+Enter)")
        self.generate.clicked.connect(self.request_generate)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.request_generate)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", models)
        if runtimes is not None:
            form.addRow("Runtime", runtimes)
        form.addRow("Mode", self.mode)
        form.addRow("Sampler", self.scheduler)
        form.addRow("Steps", self.steps)
        form.addRow("CFG scale", self.guidance)
        form.addRow("Seed", seed_row)
        form.addRow("Size", size_row)
        form.addRow("Batch count", self.count)
        form.addRow("Denoising", self.strength)
        self._form = form

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(8)
        layout.addWidget(_heading("Prompt"))
        layout.addWidget(self.prompt)
        layout.addWidget(_heading("Negative prompt"))
        layout.addWidget(self.negative_prompt)
        layout.addSpacing(4)
        layout.addLayout(form)
        layout.addWidget(_heading("LoRA"))
        layout.addWidget(self.loras)
        layout.addSpacing(8)
        layout.addWidget(self.generate)
        layout.addStretch(1)

    # -- the spec ---------------------------------------------------------------------------------

    def build_spec(self) -> ImageJob:
        """The job these fields describe, with its seed drawn now when it is random."""
        if self.random_seed.isChecked():
            seed: object = resolve_seed(None)
        else:
            text = self.seed.text().strip()
            seed = int(text) if text else None  # None: the spec's check names `seed`
        return ImageJob(
            model=self.models.model_id(),
            prompt=self.prompt.toPlainText(),
            negative_prompt=self.negative_prompt.toPlainText(),
            seed=seed,  # type: ignore[arg-type]
            steps=self.steps.value(),
            guidance_scale=round(self.guidance.value(), 2),
            width=self.width_.value(),
            height=self.height_.value(),
            scheduler=self.scheduler.currentData() or "",
            count=self.count.value(),
            strength=round(self.strength.value(), 3),
            loras=self.loras.value(),
        )

    def mode_key(self) -> str:
        return self.mode.currentData()

    def set_mode(self, key: str) -> None:
        index = self.mode.findData(key)
        if index >= 0:
            self.mode.setCurrentIndex(index)

    @Slot(int)
    def _mode_changed(self, _index: int) -> None:
        from_canvas = self.mode_key() != "txt2img"
        self.strength.setEnabled(from_canvas)
        # img2img and inpainting work at the canvas's size
        for box in (self.width_, self.height_):
            box.setEnabled(not from_canvas)
            box.setToolTip("Image to image and inpainting use the canvas's size" if from_canvas else "")

    def apply(self, spec: ImageJob, model_id: str = "") -> list[str]:
        """Put a job's settings into the fields ("use these settings"): the seed is fixed, so
        Generate makes the same image again."""
        if model_id and self.models.findData(model_id) >= 0:
            self.models.setCurrentIndex(self.models.findData(model_id))
        self.prompt.setPlainText(spec.prompt)
        self.negative_prompt.setPlainText(spec.negative_prompt)
        self.steps.setValue(spec.steps)
        self.guidance.setValue(spec.guidance_scale)
        self.random_seed.setChecked(False)
        self.seed.setText(str(spec.seed))
        self.width_.setValue(spec.width)
        self.height_.setValue(spec.height)
        index = self.scheduler.findData(spec.scheduler)
        self.scheduler.setCurrentIndex(max(index, 0))
        self.count.setValue(spec.count)
        self.strength.setValue(spec.strength)
        self.loras.set_value(spec.loras)
        self.set_mode(spec.mode)
        # Which values the fields could not hold exactly (the caller says so: a changed value is a
        # different image).
        now = self.build_spec()
        fields = (
            "prompt",
            "negative_prompt",
            "steps",
            "guidance_scale",
            "seed",
            "width",
            "height",
            "scheduler",
            "count",
            "strength",
            "loras",
        )
        return [name for name in fields if getattr(now, name) != getattr(spec, name)]

    @Slot()
    def request_generate(self) -> None:
        spec = self.build_spec()
        if isinstance(spec.seed, int):
            self.last_seed = spec.seed
            self.reuse_seed.setEnabled(True)
            if self.random_seed.isChecked():
                self.seed.setText(str(spec.seed))  # greyed, but shows which seed this image got
        self.generate_requested.emit(spec)

    @Slot()
    def reuse_last_seed(self) -> None:
        if self.last_seed is None:
            return
        self.random_seed.setChecked(False)
        self.seed.setText(str(self.last_seed))

    # -- remembered settings ----------------------------------------------------------------------

    def save_settings(self, store: SettingsStore) -> None:
        store.set("image/prompt", self.prompt.toPlainText())
        store.set("image/negative_prompt", self.negative_prompt.toPlainText())
        store.set("image/steps", self.steps.value())
        store.set("image/guidance_scale", self.guidance.value())
        store.set("image/seed", self.seed.text())
        store.set("image/random_seed", self.random_seed.isChecked())
        store.set("image/width", self.width_.value())
        store.set("image/height", self.height_.value())
        store.set("image/scheduler", self.scheduler.currentData() or "")
        store.set("image/count", self.count.value())
        store.set("image/strength", self.strength.value())
        store.set("image/mode", self.mode_key())
        store.set("image/loras", json.dumps([list(x) for x in self.loras.value()]))  # INI keeps text reliably

    def restore_settings(self, store: SettingsStore) -> None:
        self.prompt.setPlainText(store.get("image/prompt", ""))
        self.negative_prompt.setPlainText(store.get("image/negative_prompt", ""))
        self.steps.setValue(store.get("image/steps", self.steps.value()))
        self.guidance.setValue(store.get("image/guidance_scale", self.guidance.value()))
        self.seed.setText(store.get("image/seed", self.seed.text()))
        self.random_seed.setChecked(store.get("image/random_seed", True))
        self.width_.setValue(store.get("image/width", self.width_.value()))
        self.height_.setValue(store.get("image/height", self.height_.value()))
        self.scheduler.setCurrentIndex(max(self.scheduler.findData(store.get("image/scheduler", "")), 0))
        self.count.setValue(store.get("image/count", 1))
        self.strength.setValue(store.get("image/strength", 0.75))
        self.set_mode(store.get("image/mode", "txt2img"))
        self._mode_changed(0)
        try:
            saved = json.loads(store.get("image/loras", "[]"))
        except ValueError:
            saved = []
        if isinstance(saved, list):
            self.loras.set_value(
                tuple(
                    (str(x[0]), float(x[1]))
                    for x in saved
                    if isinstance(x, list)
                    and len(x) == 2
                    and isinstance(x[1], (int, float))
                    and not isinstance(x[1], bool)
                )
            )


def _size_box() -> QSpinBox:
    box = QSpinBox()
    box.setRange(8, 4096)
    box.setSingleStep(64)
    box.setValue(512)
    box.setSuffix(" px")
    return box


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label
