"""KeyframePanel: the explorer's keyframes (a studio.latent.Timeline) and the morph controls.

The panel owns the list and the timeline, kept in step row for row; it runs no jobs. It asks:
`keyframe_selected` (set the sliders to this latent), `add_requested` (add the sliders' latent:
the workspace answers with `add_keyframe`), `picture_chosen` (encode this picture into a
keyframe), `crossbreed_requested`, `save_requested`, `open_requested`, `play_requested`,
`export_requested` and `problem` (a sentence for the error bar). The export's dialog and writer
are in morph_export.py."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import SpecError
from studio.core.jobs import MAX_KEYFRAMES, MAX_MORPH_FRAMES
from studio.latent import Timeline
from studio.ui.morph_export import sentence

THUMB = 40  # px, the list's icons
LATENT_ROLE = Qt.ItemDataRole.UserRole  # the keyframe's latent, a tuple, to match thumbnails
HAS_THUMB_ROLE = Qt.ItemDataRole.UserRole + 1
PAYLOAD_ROLE = Qt.ItemDataRole.UserRole + 2  # what a diffusion keyframe stands for: {"prompt", "seed"}
ONLY = QItemSelectionModel.SelectionFlag.ClearAndSelect  # a key made current by the panel is the only one selected
SPACINGS = (("Even", "even"), ("Uniform", "uniform"))
METHODS = (("Slerp", "slerp"), ("Lerp", "lerp"))


class KeyframePanel(QWidget):
    """Keyframes of a morph, in order, with Add / Delete / Up / Down, and the morph row."""

    keyframe_selected = Signal(object)  # tuple[float, ...]: put the sliders there
    add_requested = Signal()
    play_requested = Signal()
    stop_requested = Signal()  # Play pressed again while a morph renders or plays
    export_requested = Signal()
    picture_chosen = Signal(str)  # a picture file to encode into a keyframe
    crossbreed_requested = Signal()
    save_requested = Signal()
    open_requested = Signal()
    problem = Signal(str)  # one sentence for the error bar

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.timeline = Timeline()
        self._model_ok = True  # the model's latent size is known
        self._syncing = False  # list edits made by the panel itself, not the person

        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMB, THUMB))
        # Several keys may be selected (Ctrl/Shift-click) to crossbreed them; the current one is
        # the one the sliders go to and the one Delete, Up and Down act on.
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.list.setMinimumHeight(3 * (THUMB + 6))
        self.list.currentRowChanged.connect(self._on_current)
        self.list.itemPressed.connect(self._on_pressed)
        self.list.itemClicked.connect(self._on_clicked)
        self._changed_row: Optional[int] = None  # the row a press just made current
        self._press_changed = False
        self.list.itemChanged.connect(self._on_renamed)

        self.add_button = QPushButton("Add current")
        self.add_button.setToolTip("Add the sliders' point as a keyframe")
        self.add_button.clicked.connect(self.add_requested)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        # Up and Down are arrow buttons: four push buttons would not fit the ~300 px side panel.
        self.up_button = QToolButton()
        self.up_button.setArrowType(Qt.ArrowType.UpArrow)
        self.up_button.setText("Up")
        self.up_button.setAccessibleName("Move up")
        self.up_button.setToolTip("Move the keyframe earlier in the morph")
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button = QToolButton()
        self.down_button.setArrowType(Qt.ArrowType.DownArrow)
        self.down_button.setText("Down")
        self.down_button.setAccessibleName("Move down")
        self.down_button.setToolTip("Move the keyframe later in the morph")
        self.down_button.clicked.connect(lambda: self.move_selected(+1))
        self.more_button = QToolButton()
        self.more_button.setText("More")
        self.more_button.setToolTip("Pictures as keyframes, crossbreeding, saving and opening keyframes")
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.more_button)
        self.picture_action = menu.addAction("Add picture…", self.choose_picture)
        self.picture_action.setToolTip("Encode a picture into a keyframe (you can also drop one on the canvas)")
        self.crossbreed_action = menu.addAction("Crossbreed…")
        self.crossbreed_action.triggered.connect(self.crossbreed_requested)
        menu.addSeparator()
        self.save_action = menu.addAction("Save keyframes…")
        self.save_action.triggered.connect(self.save_requested)
        self.open_action = menu.addAction("Open keyframes…")
        self.open_action.triggered.connect(self.open_requested)
        self.more_button.setMenu(menu)
        edit_row = QHBoxLayout()
        edit_row.setSpacing(4)
        for button in (self.add_button, self.delete_button, self.up_button, self.down_button, self.more_button):
            edit_row.addWidget(button)
        edit_row.setStretch(0, 1)

        self.frames = QSpinBox()
        self.frames.setRange(2, MAX_MORPH_FRAMES)
        self.frames.setValue(60)
        self.frames.setToolTip("Frames in the whole morph")
        self.fps = QSpinBox()
        self.fps.setRange(1, 60)
        self.fps.setValue(24)
        self.fps.setSuffix(" fps")
        self.spacing = QComboBox()
        for label, value in SPACINGS:
            self.spacing.addItem(label, value)
        self.spacing.setToolTip(
            "Even: frames placed so neighbours differ about equally.\n"
            "Uniform: equal steps in time, every keyframe a frame."
        )
        self.method = QComboBox()
        for label, value in METHODS:
            self.method.addItem(label, value)
        self.method.setToolTip("Slerp keeps noise latents' length (the usual choice); lerp is a straight line.")
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.clicked.connect(self._on_play_clicked)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export_requested)

        morph = QGridLayout()
        morph.setHorizontalSpacing(6)
        morph.setVerticalSpacing(6)
        morph.addWidget(QLabel("Frames"), 0, 0)
        morph.addWidget(self.frames, 0, 1)
        morph.addWidget(self.fps, 0, 2)
        morph.addWidget(QLabel("Path"), 1, 0)
        morph.addWidget(self.spacing, 1, 1)
        morph.addWidget(self.method, 1, 2)
        play_row = QHBoxLayout()
        play_row.addWidget(self.play_button, 1)
        play_row.addWidget(self.export_button, 1)
        morph.addLayout(play_row, 2, 0, 1, 3)
        morph.setColumnStretch(1, 1)
        morph.setColumnStretch(2, 1)

        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setEnabled(False)  # greyed: a remark

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.list, 1)
        layout.addLayout(edit_row)
        layout.addLayout(morph)
        layout.addWidget(self.note)
        self._update_buttons()

    # -- reading ----------------------------------------------------------------------------------

    def latents(self) -> tuple[tuple[float, ...], ...]:
        """The keyframes' latents, in order (what a MorphJob's `latents` wants)."""
        return tuple(tuple(float(v) for v in key.latent) for key in self.timeline)

    def names(self) -> list[str]:
        return self.timeline.names

    def morph_settings(self) -> dict:
        """frames, spacing and method, as MorphJob fields."""
        return {
            "frames": self.frames.value(),
            "spacing": self.spacing.currentData(),
            "method": self.method.currentData(),
        }

    def can_morph(self) -> bool:
        return len(self.timeline) >= 2

    def payloads(self) -> list[Optional[dict]]:
        """Each keyframe's payload, in order (None for a latent model's keys)."""
        return [self.list.item(row).data(PAYLOAD_ROLE) for row in range(self.list.count())]

    def payload_of(self, latent) -> Optional[dict]:
        latent = tuple(float(v) for v in latent)
        for row in range(self.list.count()):
            if self.list.item(row).data(LATENT_ROLE) == latent:
                return self.list.item(row).data(PAYLOAD_ROLE)
        return None

    def set_tools(self, latent_tools: bool) -> None:
        """Pictures, crossbreeding and keyframe files work on latent vectors: a diffusion model's
        keyframes (prompt and seed) have none."""
        for action in (self.picture_action, self.crossbreed_action, self.save_action, self.open_action):
            action.setVisible(latent_tools)
        self.more_button.setVisible(latent_tools)

    def selected_rows(self) -> list[int]:
        """The selected keyframes' rows, in timeline order."""
        return sorted(self.list.row(item) for item in self.list.selectedItems())

    # -- editing ----------------------------------------------------------------------------------

    def add_keyframe(
        self, latent, thumbnail: Optional[QImage] = None, name: str = "", payload: Optional[dict] = None
    ) -> Optional[str]:
        """Add a keyframe at the end and select it; returns its name (None if refused). It is
        named `name` ("Cat", or "Cat 2" when taken), or "Key N" without one. A diffusion model's
        keyframe carries its prompt and seed as `payload` (its `latent` then only tells keys apart)."""
        if len(self.timeline) >= MAX_KEYFRAMES:
            self.problem.emit(f"A morph takes at most {MAX_KEYFRAMES} keyframes; delete one first.")
            return None
        base = name.strip() or "Key"
        n = len(self.timeline) + 1 if not name.strip() else 1
        name = f"Key {n}" if not name.strip() else base
        while name in self.timeline.names:
            n += 1
            name = f"{base} {n}"
        try:
            key = self.timeline.add(name, np.asarray(latent, np.float64))
        except SpecError as exc:
            self.problem.emit(sentence(exc))
            return None
        item = QListWidgetItem(name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
        item.setData(LATENT_ROLE, tuple(float(v) for v in key.latent))
        item.setData(HAS_THUMB_ROLE, False)
        item.setData(PAYLOAD_ROLE, payload)
        self._syncing = True
        try:
            self.list.addItem(item)
            self.list.setCurrentItem(item, ONLY)  # selected alone, not applied: the sliders are already there
        finally:
            self._syncing = False
        if thumbnail is not None and not thumbnail.isNull():
            self._set_thumbnail(item, thumbnail)
        self._update_buttons()
        return name

    def offer_thumbnail(self, latent, image: QImage) -> None:
        """A decode of `latent` arrived: it becomes the thumbnail of keyframes at that latent lacking one."""
        latent = tuple(float(v) for v in latent)
        for row in range(self.list.count()):
            item = self.list.item(row)
            if not item.data(HAS_THUMB_ROLE) and item.data(LATENT_ROLE) == latent:
                self._set_thumbnail(item, image)

    def give_up_thumbnail(self, latent) -> None:
        """Its decode failed (said on the error bar): stop asking for one."""
        latent = tuple(float(v) for v in latent)
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(LATENT_ROLE) == latent:
                item.setData(HAS_THUMB_ROLE, True)

    def missing_thumbnail(self) -> Optional[tuple]:
        """The latent of the first keyframe still without a thumbnail (None when all have one)."""
        for row in range(self.list.count()):
            item = self.list.item(row)
            if not item.data(HAS_THUMB_ROLE):
                return item.data(LATENT_ROLE)
        return None

    @Slot()
    def delete_selected(self) -> None:
        """Delete the selected keyframes (the current one when none is selected)."""
        rows = self.selected_rows() or ([self.list.currentRow()] if self.list.currentRow() >= 0 else [])
        self._syncing = True
        try:
            for row in reversed(rows):
                self.timeline.delete(row)
                self.list.takeItem(row)
        finally:
            self._syncing = False
        self._update_buttons()

    def move_selected(self, step: int) -> None:
        row = self.list.currentRow()
        to = row + step
        if row < 0 or not 0 <= to < len(self.timeline):
            return
        self.timeline.move(row, to)
        self._syncing = True
        try:
            item = self.list.takeItem(row)
            self.list.insertItem(to, item)
            self.list.setCurrentRow(to, ONLY)
        finally:
            self._syncing = False
        self._update_buttons()

    def rename(self, row: int, name: str) -> bool:
        """Rename keyframe `row`; a refused name (empty, taken) leaves the old one and says why."""
        item = self.list.item(row)
        try:
            key = self.timeline.rename(row, name)
        except SpecError as exc:
            self.problem.emit(sentence(exc))
            key = self.timeline[row]
        self._syncing = True
        try:
            item.setText(key.name)
        finally:
            self._syncing = False
        return key.name == name.strip()

    def set_keyframes(self, names, latents) -> None:
        """Replace all keyframes (Open keyframes…); thumbnails come from decodes later."""
        self.clear()
        for name, latent in zip(names, latents):
            self.add_keyframe(latent, name=name)
        if self.list.count():
            self._syncing = True
            try:
                self.list.setCurrentRow(0, ONLY)
            finally:
                self._syncing = False
        self._update_buttons()

    @Slot()
    def choose_picture(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a picture as a keyframe", "", "Pictures (*.png *.jpg *.jpeg *.webp *.bmp *.gif)"
        )
        if path:
            self.picture_chosen.emit(path)

    def clear(self) -> None:
        self.timeline = Timeline()
        self._syncing = True
        try:
            self.list.clear()
        finally:
            self._syncing = False
        self._update_buttons()

    def set_enabled_for_model(self, enabled: bool) -> None:
        """A model the sliders cannot describe has no keyframes to add."""
        self._model_ok = enabled
        self._update_buttons()

    # -- playback state ---------------------------------------------------------------------------

    def set_playing(self, playing: bool, text: str = "") -> None:
        """Show Play as pressed ("Stop") while a morph renders or plays."""
        self.play_button.blockSignals(True)
        self.play_button.setChecked(playing)
        self.play_button.setText(text or ("Stop" if playing else "Play"))
        self.play_button.blockSignals(False)
        self._update_buttons()

    def is_playing(self) -> bool:
        return self.play_button.isChecked()

    def _on_play_clicked(self, checked: bool) -> None:
        # The button is checked by the click; the workspace decides what it ends up showing.
        self.play_button.blockSignals(True)
        self.play_button.setChecked(not checked)
        self.play_button.blockSignals(False)
        (self.play_requested if checked else self.stop_requested).emit()

    # -- internals --------------------------------------------------------------------------------

    def _set_thumbnail(self, item: QListWidgetItem, image: QImage) -> None:
        pixmap = QPixmap.fromImage(image).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        self._syncing = True  # setIcon emits itemChanged
        try:
            item.setIcon(QIcon(pixmap))
            item.setData(HAS_THUMB_ROLE, True)
        finally:
            self._syncing = False

    def _on_current(self, row: int) -> None:
        self._update_buttons()
        self._changed_row = row
        QTimer.singleShot(0, self._forget_change)  # a change by keyboard or code is no press's
        if not self._syncing and row >= 0:
            self.keyframe_selected.emit(tuple(float(v) for v in self.timeline[row].latent))

    def _forget_change(self) -> None:
        self._changed_row = None

    def _on_pressed(self, item: QListWidgetItem) -> None:
        # Qt makes the pressed row current (emitting once) before it reports the press and then
        # the click: remember that, so the click does not emit a second time.
        self._press_changed = self._changed_row == self.list.row(item)
        self._changed_row = None

    def _on_clicked(self, item: QListWidgetItem) -> None:
        # A click on the already-current key goes back to it (after the sliders moved away).
        pressed_changed, self._press_changed = self._press_changed, False
        if not self._syncing and not pressed_changed and self.list.row(item) == self.list.currentRow():
            self.keyframe_selected.emit(tuple(float(v) for v in self.timeline[self.list.row(item)].latent))

    def _on_renamed(self, item: QListWidgetItem) -> None:
        if self._syncing:
            return
        row = self.list.row(item)
        if row >= 0 and item.text() != self.timeline[row].name:
            self.rename(row, item.text())

    def _update_buttons(self) -> None:
        row = self.list.currentRow()
        n = len(self.timeline)
        self.add_button.setEnabled(self._model_ok and n < MAX_KEYFRAMES)
        self.more_button.setEnabled(self._model_ok)
        self.picture_action.setEnabled(n < MAX_KEYFRAMES)
        self.crossbreed_action.setEnabled(n >= 2)
        self.save_action.setEnabled(n >= 1)
        self.delete_button.setEnabled(row >= 0)
        self.up_button.setEnabled(row > 0)
        self.down_button.setEnabled(0 <= row < n - 1)
        can = n >= 2
        self.play_button.setEnabled(can or self.play_button.isChecked())
        self.export_button.setEnabled(can)
        self.note.setText("" if can else "Add two or more keyframes to play or export a morph.")
