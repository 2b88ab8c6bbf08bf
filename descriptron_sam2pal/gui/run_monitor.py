"""The Train dialog's view of a running job: the stage, the progress bar with the time left, the live
loss curve and the log, and the one :class:`EngineWorker` that feeds them (started, cancelled,
finished).

It changes when the way a run is shown changes; what a run is (training or segmenting) and what
its result means stay in :mod:`descriptron_sam2pal.gui.train_dialog`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from PyQt5.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QVBoxLayout, QWidget

from descriptron_sam2pal.engine.control import Progress
from descriptron_sam2pal.gui.loss_plot import LossPlot
from descriptron_sam2pal.gui.workers import EngineWorker
from descriptron_sam2pal.jobs.estimate import format_duration

#: The progress bar's text for each stage of the engine's reports: training counts steps
#: (after reading the photos), segmenting counts images.
PROGRESS_FORMATS = {
    "load": "reading photos: %v / %m",
    "train": "%v / %m steps",
    "propagate": "%v / %m images",
}


class RunMonitor:
    """The widgets that show a run (``widget``: stage, bar and time left, loss plot, log) and the
    worker while it runs (``worker``, None when idle). ``on_idle()`` is called after each worker
    has finished (the owner enables its buttons again, or starts the next job)."""

    def __init__(self, host: Any, on_idle: Callable[[], None]) -> None:
        self.host = host
        self.on_idle = on_idle
        self.worker: EngineWorker | None = None
        self.stage_label = QLabel("Ready.")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.eta_label = QLabel("")
        self.loss_plot = LossPlot()
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.widget = QWidget()
        layout = QVBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stage_label)
        bar_row = QHBoxLayout()
        bar_row.addWidget(self.progress_bar, 1)
        bar_row.addWidget(self.eta_label)
        layout.addLayout(bar_row)
        layout.addWidget(self.loss_plot.legend_label)
        layout.addWidget(self.loss_plot.plot, 2)
        layout.addWidget(self.log_view, 1)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(
        self,
        worker: EngineWorker,
        stage: str,
        on_result: Callable[[Any], None],
        on_error: Callable[[str, str], None],
        on_cancelled: Callable[[], None],
    ) -> None:
        """Show ``worker``'s reports and log lines, hand its result, error or cancellation to the
        owner, register it with the host and start it."""
        self.worker = worker
        worker.progress.connect(self.show_progress)
        worker.log.connect(self.append_log)
        worker.result.connect(on_result)
        worker.error.connect(on_error)
        worker.cancelled.connect(on_cancelled)
        worker.finished.connect(self._on_finished)
        self.stage_label.setText(f"{stage}...")
        self.progress_bar.setRange(0, 0)  # busy until the first report
        self.eta_label.setText("")
        self.host.register_worker(worker)
        worker.start()

    def cancel(self) -> bool:
        """Ask the running worker to stop at its next step; False when none runs."""
        if self.worker is None:
            return False
        self.worker.cancel()
        self.eta_label.setText("")  # no time left to wait for: it stops
        self.stage_label.setText("Stopping at the next step...")
        return True

    def append_log(self, text: str) -> None:
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        self.log_view.appendPlainText(f"{stamp}  {text}")

    def show_progress(self, report: Any) -> None:
        if not isinstance(report, Progress):
            return
        self.progress_bar.setRange(0, max(report.total, 1))
        self.progress_bar.setValue(report.done)
        self.progress_bar.setFormat(PROGRESS_FORMATS.get(report.stage, "%v / %m"))
        stopping = self.worker is not None and self.worker.token.cancelled
        self.eta_label.setText(
            f"{format_duration(report.eta_s)} left" if report.eta_s is not None and not stopping else ""
        )
        if report.stage == "load" and not stopping:
            self.stage_label.setText(f"Training: reading the photos first ({report.done} of {report.total})")
        if report.stage == "train":
            self.stage_label.setText(f"Training: step {report.done} of {report.total}")
            loss = report.metrics.get("loss")
            if loss is not None:
                self.loss_plot.add_loss(report.done, loss)
            val = report.metrics.get("val")
            if val is not None:
                self.loss_plot.add_validation(report.done, val)
            if loss is not None and (report.done % 10 == 0 or report.done == report.total):
                self.append_log(
                    f"step {report.done}/{report.total}  loss {loss:.4f}"
                    + (f"  {self.loss_plot.validation_name} {val:.4f}" if val is not None else "")
                )
        elif report.stage == "propagate":
            self.stage_label.setText(f"Segmenting: {report.done} of {report.total} specimens")

    def _on_finished(self) -> None:
        self.worker = None
        self.eta_label.setText("")
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
        self.on_idle()
