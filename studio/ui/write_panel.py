"""The writer's side panel (memory, author's note, world info, sampler settings) and the recovery bar.

The panel edits a Document directly: its values are the document's own, so they are saved with
it and a document opened later brings its settings back into the panel."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import MAX_BANNED, MAX_STOP_SEQUENCES
from studio.core.story import MAX_NOTE_DEPTH
from studio.ui.world_info_editor import WorldInfoEditor
from studio.writing.document import Document

SEED_MAX = 2**31 - 1  # QSpinBox holds a C int; plenty of seeds for prose
# The sampler settings shown in a spin box named after the field. The rest of SAMPLER_FIELDS has
# widgets of its own (max new tokens, stop, banned, seed) or is kept as the document has it (DRY's
# base and allowed length), so the list is the panel's own rather than SAMPLER_FIELDS filtered.
SPIN_FIELDS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "repetition_range",
    "dry_multiplier",
    "xtc_threshold",
    "xtc_probability",
)


def _spin(lo: int, hi: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    return box


def _dspin(lo: float, hi: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    return box


def _text_box(placeholder: str, lines: int = 4) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setPlaceholderText(placeholder)
    box.setFixedHeight(box.fontMetrics().lineSpacing() * lines + 12)
    return box


def _lines(text: str) -> list[str]:
    """Stop sequences and banned phrases, one per line (a comma can be part of one)."""
    return [line[:200] for line in text.split("\n") if line.strip()]  # TextJob: 200 characters each


class DocumentPanel(QWidget):
    """Memory, author's note and sampler settings of one Document. Ranges are TextJob's own (or
    narrower), so the panel never holds a value a job refuses."""

    changed = Signal()  # the person changed a value (the document is modified)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.document: Optional[Document] = None
        self._loading = False

        self.memory = _text_box("Always at the top of what the model reads: the premise, the cast, the style.")
        self.authors_note = _text_box("A nudge near the end of the context: tone, where the scene goes.", 3)
        self.note_depth = _spin(0, MAX_NOTE_DEPTH)
        self.note_depth.setSuffix(" tokens")
        self.note_depth.setToolTip("How far before the end of the text the note goes (at a sentence start)")

        self.temperature = _dspin(0.0, 5.0, 0.05)
        self.top_k = _spin(0, 1_000_000)
        self.top_k.setSpecialValueText("off")
        self.top_p = _dspin(0.01, 1.0, 0.01, 3)
        self.min_p = _dspin(0.0, 1.0, 0.01, 3)
        self.repetition_penalty = _dspin(0.01, 10.0, 0.01)
        self.repetition_range = _spin(0, 1_000_000)
        self.repetition_range.setSpecialValueText("whole context")
        self.dry_multiplier = _dspin(0.0, 100.0, 0.1)
        self.dry_multiplier.setSpecialValueText("off")
        self.xtc_threshold = _dspin(0.0, 0.5, 0.01)
        self.xtc_threshold.setToolTip("Tokens at least this likely are the top choices XTC may drop")
        self.xtc_probability = _dspin(0.0, 1.0, 0.05)
        self.xtc_probability.setSpecialValueText("off")
        self.xtc_probability.setToolTip(
            "How often XTC drops every top choice but the least likely one (when there are two or more)"
        )
        self.max_tokens = _spin(1, 100_000)
        self.stop = _text_box("One per line", 2)
        self.banned = _text_box("One per line", 2)
        self.seed = _spin(0, SEED_MAX)
        self.random_seed = QCheckBox("Random")

        notes = QGroupBox("Memory and notes")
        notes_form = QFormLayout(notes)
        notes_form.addRow(QLabel("Memory"))
        notes_form.addRow(self.memory)
        notes_form.addRow(QLabel("Author's note"))
        notes_form.addRow(self.authors_note)
        notes_form.addRow("Depth", self.note_depth)

        self.world_info = WorldInfoEditor()
        lore = QGroupBox("World info")
        lore.setToolTip("Entries whose keys appear in the recent text are put after the memory")
        lore_layout = QVBoxLayout(lore)
        lore_layout.addWidget(self.world_info)

        sampling = QGroupBox("Sampling")
        form = QFormLayout(sampling)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        form.addRow("Max new tokens", self.max_tokens)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.top_k)
        form.addRow("Top-p", self.top_p)
        form.addRow("Min-p", self.min_p)
        form.addRow("Repetition penalty", self.repetition_penalty)
        form.addRow("Penalty range", self.repetition_range)
        form.addRow("DRY multiplier", self.dry_multiplier)
        form.addRow("XTC threshold", self.xtc_threshold)
        form.addRow("XTC probability", self.xtc_probability)
        form.addRow("Stop sequences", self.stop)
        form.addRow("Banned phrases", self.banned)
        form.addRow("Seed", seed_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(notes)
        layout.addWidget(lore)
        layout.addWidget(sampling)
        self.world_info.changed.connect(self.changed)

        self.memory.textChanged.connect(self._store)
        self.authors_note.textChanged.connect(self._store)
        self.stop.textChanged.connect(self._store)
        self.banned.textChanged.connect(self._store)
        for box in (self.note_depth, self.max_tokens, self.seed, *(getattr(self, name) for name in SPIN_FIELDS)):
            box.valueChanged.connect(self._store)
        self.random_seed.toggled.connect(self._store)

    def set_document(self, document: Document) -> None:
        """Show this document's values (it is not modified by being shown)."""
        self.document = document
        self.world_info.set_document(document)
        s = document.sampler
        self._loading = True
        try:
            self.memory.setPlainText(document.memory)
            self.authors_note.setPlainText(document.authors_note)
            self.note_depth.setValue(document.authors_note_depth)
            for name in SPIN_FIELDS:
                getattr(self, name).setValue(s[name])
            self.max_tokens.setValue(s["max_new_tokens"])
            self.stop.setPlainText("\n".join(s["stop"]))
            self.banned.setPlainText("\n".join(s["banned"]))
            self.random_seed.setChecked(s["seed"] is None)
            if s["seed"] is not None:
                self.seed.setValue(min(s["seed"], SEED_MAX))
            self.seed.setEnabled(s["seed"] is not None)
        finally:
            self._loading = False

    def show_seed(self, seed: int) -> None:
        """The seed a random-seed run got (greyed: shown, not fixed)."""
        self._loading = True
        try:
            self.seed.setValue(min(seed, SEED_MAX))
        finally:
            self._loading = False

    def _store(self, *_args) -> None:
        self.seed.setEnabled(not self.random_seed.isChecked())
        if self._loading or self.document is None:
            return
        d, s = self.document, self.document.sampler
        d.memory = self.memory.toPlainText()
        d.authors_note = self.authors_note.toPlainText()
        d.authors_note_depth = self.note_depth.value()
        for name in SPIN_FIELDS:
            box = getattr(self, name)
            s[name] = round(box.value(), 4) if isinstance(box, QDoubleSpinBox) else box.value()
        s["max_new_tokens"] = self.max_tokens.value()
        s["stop"] = _lines(self.stop.toPlainText())[:MAX_STOP_SEQUENCES]
        s["banned"] = _lines(self.banned.toPlainText())[:MAX_BANNED]
        s["seed"] = None if self.random_seed.isChecked() else self.seed.value()
        self.changed.emit()


class RecoveryBar(QFrame):
    """Offers a draft left by a run of the studio that did not close: Restore or Discard.
    A bar, not a dialog, so it never blocks (and tests can press its buttons)."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("RecoveryBar { background: rgba(255, 200, 80, 60); }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.restore_button = QPushButton("Restore")
        self.discard_button = QPushButton("Discard")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.restore_button)
        layout.addWidget(self.discard_button)
        self.hide()
