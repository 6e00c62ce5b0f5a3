"""JobsPanel: the list of batch jobs (generate, write), newest first, each with progress and Cancel.

Slider previews are not listed: they come by the hundred and are over in milliseconds."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import Lane
from studio.state.jobs import JobHandle, JobList, JobState

STATE_TEXT = {
    JobState.QUEUED: "Waiting",
    JobState.RUNNING: "Running",
    JobState.FINISHED: "Done",
    JobState.FAILED: "Failed",
    JobState.CANCELLED: "Cancelled",
}


class ElidedLabel(QLabel):
    """One line of text that ends in … when the dock is too narrow for it."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the dock

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)


class JobRow(QFrame):
    """One job: title, progress bar, state text and a Cancel button. It follows its job's handle
    and goes when the job leaves the list's history."""

    def __init__(self, job: JobHandle, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.job = job
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = ElidedLabel()
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.state = QLabel()
        self.state.setTextFormat(Qt.TextFormat.PlainText)
        self.state.setEnabled(False)  # secondary text, greyed
        self.state.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(job.cancel)
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        grid.setVerticalSpacing(4)
        grid.addWidget(self.title, 0, 0)
        grid.addWidget(self.cancel_button, 0, 1, 2, 1, Qt.AlignmentFlag.AlignVCenter)
        grid.addWidget(self.progress, 1, 0)
        grid.addWidget(self.state, 2, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        job.changed.connect(self.update_from)
        self.update_from()

    @Slot()
    def update_from(self) -> None:
        record = self.job
        self.title.setText(record.title)
        self.title.setToolTip(record.title)
        if record.total:
            self.progress.setRange(0, record.total)
            self.progress.setValue(record.step)
        elif record.state is JobState.RUNNING:
            self.progress.setRange(0, 0)  # busy, no step count yet (loading the model)
        if record.state.is_terminal:
            if self.progress.maximum() == 0:  # stop the busy animation
                self.progress.setRange(0, 1)
            if record.state is JobState.FINISHED:
                self.progress.setValue(self.progress.maximum())
        text = STATE_TEXT[record.state]
        if record.state is JobState.RUNNING and record.total:
            text = f"Running · {record.step}/{record.total}"
        elif record.state is JobState.FINISHED and record.seconds is not None:
            text = f"Done · {record.seconds:.1f} s"
        elif record.state is JobState.FAILED and record.message:
            text = f"Failed · {record.message}"
        self.state.setText(text)
        self.state.setToolTip(record.message)
        self.cancel_button.setVisible(not record.state.is_terminal)


class JobsPanel(QWidget):
    """Rows for the JobList's batch jobs, newest at the top."""

    def __init__(self, jobs: JobList, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.jobs = jobs
        self.empty = QLabel("No jobs yet.")
        self.empty.setEnabled(False)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        host = QWidget()
        self._list = QVBoxLayout(host)
        self._list.setContentsMargins(6, 6, 6, 6)
        self._list.setSpacing(6)
        self._list.addWidget(self.empty)
        self._list.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(host)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        jobs.job_added.connect(self._on_added)
        for job in jobs:
            self._on_added(job)

    def rows(self) -> list[JobRow]:
        """The rows shown, newest first."""
        items = (self._list.itemAt(i) for i in range(self._list.count()))
        found = (item.widget() for item in items if item is not None)
        return [row for row in found if isinstance(row, JobRow)]

    def row(self, job: JobHandle) -> Optional[JobRow]:
        return next((row for row in self.rows() if row.job is job), None)

    @Slot(object)
    def _on_added(self, job: JobHandle) -> None:
        if job.lane is not Lane.BATCH:
            return
        row = JobRow(job)
        job.removed.connect(lambda: self._on_removed(row))
        self._list.insertWidget(0, row)
        self.empty.hide()

    def _on_removed(self, row: JobRow) -> None:
        self._list.removeWidget(row)
        row.deleteLater()
        self.empty.setVisible(not self.rows())
