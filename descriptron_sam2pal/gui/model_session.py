"""The SAM2 model shared by the plugin's panels, and choosing / downloading its checkpoint.

Loading SAM2 takes seconds to a minute, so :class:`ModelSession` loads it
lazily, the first time a panel needs it, in an :class:`EngineWorker`, and
keeps it (with its feature cache and its click segmenter, a
``jobs.prompt_masks.PromptModel``) for every later use. The checkpoint is found where Descriptron looks for it
(``model.checkpoints.find_checkpoint``), or chosen by the user (Browse...,
Download..., the small pretrained "beetles only" demo model shipped with the
plugin, or the untrained demo model); the choice is remembered in QSettings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from PyQt5.QtCore import QObject, QSettings, Qt, pyqtSignal
from PyQt5.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QLabel,
                             QProgressDialog, QPushButton, QVBoxLayout, QWidget)

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.control import Progress
from descriptron_sam2pal.gui.workers import EngineWorker
from descriptron_sam2pal.jobs.checkpoint_download import DownloadRequest, approx_mb, download_run
from descriptron_sam2pal.jobs.models import (BEETLE_DEMO_CHOICE, BEETLE_DEMO_LABEL, DEMO_CHOICE, DEMO_LABEL,
                                            ModelRequest, beetle_demo_available, describe_choice,
                                            require_beetle_demo)
from descriptron_sam2pal.jobs.prompt_masks import PromptModel, fix_by_clicks, load_prompt_model

log = logging.getLogger(__name__)

SETTINGS_CHECKPOINT = "sam2pal/checkpoint"
SETTINGS_DEVICE = "sam2pal/device"
#: Offered by Download...: small enough for a laptop CPU first, Descriptron's own last.
DOWNLOAD_CHOICES = ("sam2.1_hiera_tiny.pt", "sam2.1_hiera_small.pt", "sam2.1_hiera_base_plus.pt",
                    "sam2.1_hiera_large.pt", "sam2_hiera_large.pt")


class ModelSession(QObject):
    """The chosen checkpoint and, once loaded, the model every panel shares.

    Signals: ``loading(bool)`` while a load runs, ``ready()`` when the model is
    usable, ``failed(message, details)``, ``choice_changed(str)``.
    """

    loading = pyqtSignal(bool)
    ready = pyqtSignal()
    failed = pyqtSignal(str, str)
    choice_changed = pyqtSignal(str)

    def __init__(self, host: Any = None, settings: QSettings | None = None,
                 image_size: int | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.settings = settings if settings is not None else QSettings("Descriptron", "sam2pal")
        self.image_size = image_size  # None: the config's own (1024 for Meta's checkpoints)
        self.loaded: PromptModel | None = None
        self.problem = ""  # why no checkpoint was found (e.g. a bad environment variable)
        self._worker: EngineWorker | None = None
        self._loading_choice: str | None = None

    # -- the choice -----------------------------------------------------------
    def checkpoint_choice(self) -> str | None:
        """The remembered choice if still valid, else the checkpoint Descriptron would use, else None."""
        saved = self.settings.value(SETTINGS_CHECKPOINT, "", str)
        if saved == DEMO_CHOICE or (saved == BEETLE_DEMO_CHOICE and beetle_demo_available()) \
                or (saved and saved != BEETLE_DEMO_CHOICE and Path(saved).is_file()):
            return saved
        from descriptron_sam2pal.model.checkpoints import find_checkpoint
        try:
            found = find_checkpoint()
            self.problem = ""
        except UserError as exc:
            self.problem = str(exc)
            return None
        return str(found) if found is not None else None

    def set_checkpoint(self, choice: str) -> None:
        """Remember a checkpoint path (or ``DEMO_CHOICE`` / ``BEETLE_DEMO_CHOICE``); the next use loads it."""
        if choice == BEETLE_DEMO_CHOICE:
            require_beetle_demo()
        if choice not in (DEMO_CHOICE, BEETLE_DEMO_CHOICE) and not Path(choice).is_file():
            raise UserError(f"{choice} is not a file; choose a SAM2 checkpoint (.pt)")
        self.settings.setValue(SETTINGS_CHECKPOINT, str(choice))
        self.loaded = None  # built from the previous choice; the next use loads the new one
        self.choice_changed.emit(str(choice))

    @property
    def device(self) -> str:
        return self.settings.value(SETTINGS_DEVICE, "auto", str) or "auto"

    @property
    def is_demo(self) -> bool:
        return self.checkpoint_choice() == DEMO_CHOICE

    @property
    def is_beetle_demo(self) -> bool:
        return self.checkpoint_choice() == BEETLE_DEMO_CHOICE

    def describe(self) -> str:
        return describe_choice(self.checkpoint_choice())

    # -- loading ----------------------------------------------------------------
    @property
    def is_loading(self) -> bool:
        return self._worker is not None

    @property
    def is_ready(self) -> bool:
        return self.loaded is not None

    def ensure_loaded(self) -> bool:
        """True if the model is ready; otherwise start loading it (once) and return False.

        Raises UserError when no checkpoint is chosen (the caller offers the choices).
        """
        if self.loaded is not None:
            return True
        if self._worker is not None:
            return False
        choice = self.checkpoint_choice()
        if choice is None:
            raise UserError(self.problem or "No SAM2 checkpoint found; choose one with Browse..., "
                            "Download... or use a demo model")
        worker = EngineWorker(load_prompt_model, ModelRequest(choice, self.device, self.image_size),
                              description=f"Loading SAM2 ({describe_choice(choice)})")
        worker.result.connect(lambda loaded, c=choice: self._on_loaded(c, loaded))
        worker.error.connect(self.failed)
        worker.finished.connect(self._on_finished)
        self._worker, self._loading_choice = worker, choice
        if self.host is not None:
            self.host.register_worker(worker)
        self.loading.emit(True)
        worker.start()
        return False

    def _on_loaded(self, choice: str, loaded: PromptModel) -> None:
        if choice != self.checkpoint_choice():
            return  # the user chose another checkpoint meanwhile; the next use loads that one
        self.loaded = loaded
        self.ready.emit()

    def _on_finished(self) -> None:
        self._worker = None
        self.loading.emit(False)

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Block until a running load ends (tests and shutdown)."""
        return True if self._worker is None else self._worker.wait(timeout_ms)

    def fix_by_clicks(self, store: Any):
        """The Review panel's Fix (``reprompt(image_id, points, labels) -> mask``) on the loaded
        model, with its own segmenter; the image files are read from ``store`` now, in the GUI
        thread."""
        paths = {r.id: r.path for r in store.images} if store is not None else {}
        return fix_by_clicks(self.loaded.model, paths)


# --------------------------------------------------------------------------- widgets

def start_download(parent: QWidget, request: DownloadRequest, on_done: Callable[[Path], None],
                   host: Any = None) -> EngineWorker:
    """Run the Download use case (``jobs.checkpoint_download``) in a worker, with a progress
    dialog whose Cancel stops it (the partial file is kept to resume later)."""
    name = request.name
    dialog = QProgressDialog(f"Downloading {name} (about {approx_mb(name)} MB)...", "Cancel", 0, 100, parent)
    dialog.setWindowTitle("Download SAM2 checkpoint")
    dialog.setWindowModality(Qt.WindowModal)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setMinimumDuration(0)
    worker = EngineWorker(download_run, request, description=f"Downloading {name}", job=True)

    def on_progress(report: Progress) -> None:
        if report.total:
            # setValue last: on a modal dialog it processes events, so a newer report may be shown
            # inside it, and nothing of this older one may come after.
            dialog.setMaximum(100)
            dialog.setLabelText(f"Downloading {name}: {report.done / 1e6:.0f} of {report.total / 1e6:.0f} MB")
            dialog.setValue(int(100 * report.fraction))
        else:
            dialog.setMaximum(0)
            dialog.setLabelText(f"Downloading {name}: {report.done / 1e6:.0f} MB")

    def on_error(message: str, details: str) -> None:
        if host is not None:
            host.show_error("Download failed", message, details)

    worker.progress.connect(on_progress)
    worker.log.connect(log.info)
    worker.result.connect(on_done)
    worker.error.connect(on_error)
    worker.finished.connect(dialog.close)
    dialog.canceled.connect(worker.cancel)
    if host is not None:
        host.register_worker(worker)
    dialog.show()
    worker.start()
    worker.dialog = dialog  # kept alive with the worker; tests look at it
    return worker


class CheckpointPicker(QWidget):
    """A line saying which SAM2 checkpoint is used, with Browse... / Download... / the beetle demo
    model (shown while no real SAM2 checkpoint is in use) / the untrained demo model."""

    def __init__(self, session: ModelSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.browse_button = QPushButton("Browse...")
        self.browse_button.setToolTip("Use a SAM2 / SAM2.1 checkpoint file (.pt) you already have")
        self.download_button = QPushButton("Download...")
        self.download_button.setToolTip("Download one of Meta's SAM2 checkpoints into Descriptron's "
                                        "cache (shared with Descriptron)")
        self.demo_button = QPushButton("Untrained demo")
        self.demo_button.setToolTip(f"A tiny randomly initialised SAM2 to try the buttons: {DEMO_LABEL}")
        self.browse_button.clicked.connect(self.browse)
        self.download_button.clicked.connect(self.ask_download)
        self.demo_button.clicked.connect(lambda: self._choose(DEMO_CHOICE))
        self.beetle_demo_button = QPushButton("Demo model: beetles only")
        self.beetle_demo_button.setToolTip(
            f"{BEETLE_DEMO_LABEL}. A 5M-parameter SAM2 trained on every part of ~400 public beetle photos "
            "(BeetleFlow / NEON, CC BY 4.0), with clicks, boxes and outlines from templates, to try the "
            "workspace without Meta's checkpoints. It outlines the pronotum and elytra from a click or a "
            "box, the head less well; legs, antennae and eyes (zoomed in on) only in part. Use a real SAM2 "
            "checkpoint for your own specimens.")
        self.beetle_demo_button.clicked.connect(lambda: self._choose(BEETLE_DEMO_CHOICE))
        buttons = QHBoxLayout()
        for b in (self.browse_button, self.download_button, self.beetle_demo_button, self.demo_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addLayout(buttons)
        self.download_worker: EngineWorker | None = None
        session.choice_changed.connect(lambda _c: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        choice = self.session.checkpoint_choice()
        # The beetle demo is offered only while no real SAM2 checkpoint is in use.
        self.beetle_demo_button.setVisible(
            beetle_demo_available() and (choice is None or choice in (DEMO_CHOICE, BEETLE_DEMO_CHOICE))
        )
        if choice is None:
            why = f" ({self.session.problem})" if self.session.problem else ""
            self.label.setText(f"<b>No SAM2 checkpoint found</b>{why}. Browse for one, download one, "
                               "or try a demo model.")
        elif choice == DEMO_CHOICE:
            self.label.setText(f"Model: <b>mini SAM2</b> <span style='color:#b00'>({DEMO_LABEL})</span>")
        elif choice == BEETLE_DEMO_CHOICE:
            self.label.setText(
                f"Model: <b>beetle SAM2</b> <span style='color:#b00'>({BEETLE_DEMO_LABEL})</span>"
            )
        else:
            self.label.setText(f"Model: <b>{Path(choice).name}</b>")
            self.label.setToolTip(choice)

    def _choose(self, choice: str) -> None:
        try:
            self.session.set_checkpoint(choice)
        except UserError as exc:
            if self.session.host is not None:
                self.session.host.show_error("SAM2 checkpoint", str(exc))

    def browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a SAM2 checkpoint", "",
                                              "PyTorch checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self._choose(path)

    def ask_download(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Download a SAM2 checkpoint")
        combo = QComboBox()
        for name in DOWNLOAD_CHOICES:
            combo.addItem(f"{name} (about {approx_mb(name)} MB)", name)
        layout = QVBoxLayout(dialog)
        layout.addWidget(QLabel("Smaller models are faster, larger ones more accurate.\n"
                                "Without a GPU, start with tiny or small."))
        layout.addWidget(combo)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        if dialog.exec_() == QDialog.Accepted:
            self.download(DownloadRequest(combo.currentData()))

    def download(self, request: DownloadRequest) -> EngineWorker:
        """Download a checkpoint (in a worker) and use it once it is there."""
        self.download_button.setEnabled(False)
        worker = start_download(self, request, lambda path: self._choose(str(path)), self.session.host)
        worker.finished.connect(lambda: self.download_button.setEnabled(True))
        self.download_worker = worker
        return worker
