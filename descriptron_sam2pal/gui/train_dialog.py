"""The "Train SAM2-PAL" dialog: choose templates, unlabeled images, model and effort; train; propagate.

Training and propagation run in :class:`EngineWorker` threads (the window
stays usable), shown by a :class:`~descriptron_sam2pal.gui.run_monitor.RunMonitor`
(``dialog.monitor``): a progress bar with the time left, a live loss curve, a log.
Cancel stops training at the next step; the last good checkpoint
(``adapter.pt`` in the run folder) is kept and can be used to propagate. A
failure is shown in a dialog and the buttons come back.

When propagation ends, the results go to ``on_results(results, run_dir)``
(the plugin hands them to the Review panel).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from PyQt5.QtCore import QSize, Qt
from PyQt5.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QFileDialog,
                             QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                             QListWidgetItem, QPushButton, QRadioButton,
                             QSplitter, QVBoxLayout, QWidget)

from descriptron_sam2pal import UserError
from descriptron_sam2pal.jobs.estimate import (estimate_seconds, estimate_text,
                                               measured_step_seconds, model_size_name, remember_step_seconds,
                                               step_key, step_table, training_estimate)
from descriptron_sam2pal.jobs.models import ModelRequest, fixed_image_size
from descriptron_sam2pal.jobs.propagation import PREDICTIONS_FILE, PropagateRequest, propagate_run
from descriptron_sam2pal.jobs.templates import TemplateSpec, specs_from_store
from descriptron_sam2pal.jobs.training import (TrainOutcome, TrainRequest, describe_result, train_config,
                                               train_run, validation_plan_for)
from descriptron_sam2pal.model.device import accelerator_available
from descriptron_sam2pal.store.provenance import template_images
from descriptron_sam2pal.store.stem import find_image_files
from descriptron_sam2pal.gui.errors import shown_errors
from descriptron_sam2pal.gui.fitting import VerticalScroll, fit_to_screen, guard_wheel
from descriptron_sam2pal.gui.model_session import CheckpointPicker, ModelSession
from descriptron_sam2pal.gui.run_monitor import RunMonitor
from descriptron_sam2pal.gui.train_layout import build_advanced
from descriptron_sam2pal.gui.workers import EngineWorker

log = logging.getLogger(__name__)

_ID_ROLE = Qt.UserRole
#: QSettings key: {"<model>|<cpu|gpu>|<size>": median seconds per training step} of past runs.
STEP_TIMES_SETTING = "sam2pal/step_seconds"


def validation_metric(templates: list, n_unlabeled: int = 2, config: Any = None) -> str | None:
    """What the trainer validates with for these template specs (``jobs.training.validation_plan_for``)."""
    return validation_plan_for(templates, n_unlabeled, config).metric


@dataclass(frozen=True)
class Preset:
    name: str
    steps: int
    gpu_size: int
    cpu_size: int
    tip: str


PRESETS = (
    Preset("Quick", 100, 512, 256, "A first look: minutes on a GPU, up to half an hour on a laptop"),
    Preset("Balanced", 300, 1024, 512, "Good results for most projects"),
    Preset("Thorough", 1000, 1024, 512, "The most careful training; hours without a GPU"),
)
DEFAULT_PRESET = "Balanced"

def unused_run_dir(wanted: Path, fresh_name: str) -> Path:
    """``wanted``, unless it holds files already (never mix two runs in one folder): then a new
    folder ``fresh_name`` (or ``fresh_name-2``, ...) beside it."""
    if not (wanted.exists() and any(wanted.iterdir())):
        return wanted
    base, n = wanted.parent / fresh_name, 1
    run_dir = base
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


# --------------------------------------------------------------------------- worker functions

@dataclass
class TrainJob:
    """What the dialog runs: the shared request, and its outcome once the call returns
    (also when cancelled, when the worker reports ``cancelled`` instead of a result)."""

    request: TrainRequest
    outcome: TrainOutcome | None = None


@dataclass
class PropagateJob:
    request: PropagateRequest
    trained: TrainOutcome | None = None  # reuse the model and templates trained in this window


def run_training(job: TrainJob, progress=None, cancel=None, log_fn=None) -> TrainOutcome:
    """``jobs.training.train_run`` in a worker thread (``EngineWorker(..., job=True)``), its log
    lines shown in the dialog."""
    job.outcome = train_run(job.request, progress=progress, cancel=cancel, log_fn=log_fn)
    return job.outcome


def run_propagation(job: PropagateJob, progress=None, cancel=None, log_fn=None) -> list:
    """``jobs.propagation.propagate_run`` in a worker thread; the results go to the Review panel."""
    outcome = propagate_run(job.request, progress=progress, cancel=cancel, trained=job.trained,
                            keep_results=True, log_fn=log_fn)
    if outcome.failed and log_fn is not None:
        log_fn(f"{len(outcome.failed)} image(s) could not be read: "
               + ", ".join(str(r.path or r.image_id) for r in outcome.failed[:5]))
    return outcome.results


# --------------------------------------------------------------------------- the dialog

class TrainDialog(QDialog):
    """Non-modal dialog; ``on_results(results, run_dir)`` receives propagation results."""

    def __init__(self, host: Any, session: ModelSession,
                 on_results: Callable[[list, Path], None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent if parent is not None else host.main_window())
        self.host = host
        self.session = session
        self.on_results = on_results
        self.setWindowTitle("Train SAM2-PAL")
        self.monitor = RunMonitor(host, on_idle=self._on_idle)  # the running worker and its progress
        self.job: TrainJob | PropagateJob | None = None
        self.trained: TrainOutcome | None = None
        self.last_adapter: Path | None = None
        self.run_dir: Path | None = None
        self.results: list | None = None
        self._propagate_next = False  # training ended well: segment next
        self._build()
        self.refresh()
        guard_wheel(self)  # scrolling over the form never changes Steps, Size, ...
        fit_to_screen(self, QSize(980, 720))

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        for w in (self._build_templates(), self._build_unlabeled(), self._build_model(),
                  self._build_advanced(), self._build_propagation()):
            left_layout.addWidget(w)
        left_layout.addStretch(1)
        # The settings scroll when they do not fit (Advanced settings open on a 768 px screen),
        # so the buttons below always stay on the screen.
        left_scroll = VerticalScroll()
        left_scroll.setWidget(left)
        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(left_scroll)
        splitter.addWidget(self.monitor.widget)
        splitter.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addLayout(self._build_buttons())
        preset = self.preset_combo.findText(DEFAULT_PRESET)
        self.preset_combo.setCurrentIndex(preset)
        self._apply_preset()

    def _build_templates(self) -> QGroupBox:
        """1. The templates to learn from, ticked."""
        self.template_list = QListWidget()
        self.template_list.setToolTip("The specimens whose outlined structures SAM2 learns from")
        self.template_list.itemChanged.connect(lambda _i: self._update())
        self.no_templates_label = QLabel("No templates yet: outline structures on a few specimens in the "
                                         "<b>SAM2-PAL Templates</b> panel, then come back.")
        self.no_templates_label.setWordWrap(True)
        templates_box = QGroupBox("1. Templates (outlined specimens)")
        templates_layout = QVBoxLayout(templates_box)
        templates_layout.addWidget(self.template_list)
        templates_layout.addWidget(self.no_templates_label)
        return templates_box

    def _build_unlabeled(self) -> QGroupBox:
        """2. The unlabeled images: the project's others, or a folder's."""
        self.project_radio = QRadioButton("The project's other images")
        self.folder_radio = QRadioButton("Images in a folder:")
        self.project_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.project_radio)
        group.addButton(self.folder_radio)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("folder of specimen photos")
        folder_button = QPushButton("Browse...")
        folder_button.clicked.connect(self._browse_folder)
        self.folder_radio.toggled.connect(lambda _on: self._update())
        self.folder_edit.textChanged.connect(lambda _t: self._update())
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_radio)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(folder_button)
        unlabeled_box = QGroupBox("2. Unlabeled specimens (learned from, then segmented)")
        unlabeled_layout = QVBoxLayout(unlabeled_box)
        unlabeled_layout.addWidget(self.project_radio)
        unlabeled_layout.addLayout(folder_row)
        return unlabeled_box

    def _build_model(self) -> QGroupBox:
        """3. The checkpoint, the effort preset and the time it will take."""
        self.picker = CheckpointPicker(self.session)
        self.session.choice_changed.connect(lambda _c: self._apply_preset())
        self.preset_combo = QComboBox()
        for p in PRESETS:
            self.preset_combo.addItem(p.name, p)
            self.preset_combo.setItemData(self.preset_combo.count() - 1, p.tip, Qt.ToolTipRole)
        self.preset_combo.setToolTip("How long to train: more steps usually fit better")
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        model_box = QGroupBox("3. Model and effort")
        model_form = QFormLayout(model_box)
        model_form.addRow(self.picker)
        model_form.addRow("Preset:", self.preset_combo)
        model_form.addRow("", self.estimate_label)
        return model_box

    def _build_advanced(self) -> QGroupBox:
        """Advanced settings, folded away (``gui.train_layout.build_advanced``): a preset or the
        device fills the steps and the size; the estimate follows them."""
        box = build_advanced(self)
        self.output_button.clicked.connect(self._browse_output)
        self.preset_combo.currentIndexChanged.connect(lambda _i: self._apply_preset())
        self.device_combo.currentIndexChanged.connect(lambda _i: self._apply_preset())
        for spin in (self.steps_spin, self.size_spin, self.stop_spin):
            spin.valueChanged.connect(lambda _v: self._update_estimate())
        self.pseudo_check.toggled.connect(lambda _on: self._update_estimate())
        return box

    def _build_propagation(self) -> QGroupBox:
        """4. Which weights segment the specimens."""
        self.source_combo = QComboBox()
        self.source_combo.setToolTip("Which weights segment the specimens")
        self.adapter_edit = QLineEdit()
        self.adapter_edit.setPlaceholderText("adapter.pt from an earlier run")
        adapter_button = QPushButton("Browse...")
        adapter_button.clicked.connect(self._browse_adapter)
        self.source_combo.currentIndexChanged.connect(lambda _i: self._update())
        self._source_chosen = False  # True once the user picks the weights themselves
        self.source_combo.activated.connect(lambda _i: setattr(self, "_source_chosen", True))
        self.adapter_edit.textChanged.connect(lambda _t: self._update())
        adapter_row = QHBoxLayout()
        adapter_row.addWidget(self.adapter_edit, 1)
        adapter_row.addWidget(adapter_button)
        propagate_box = QGroupBox("4. Segment the specimens")
        propagate_form = QFormLayout(propagate_box)
        propagate_form.addRow("Use:", self.source_combo)
        propagate_form.addRow("Adapter file:", adapter_row)
        return propagate_box

    def _build_buttons(self) -> QHBoxLayout:
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.start_button.setToolTip("Fine-tune SAM2 on the templates and unlabeled specimens, "
                                     "then segment the specimens")
        self.start_button.clicked.connect(self.start_training)
        self.propagate_button = QPushButton("Segment specimens")
        self.propagate_button.setToolTip("Segment the unlabeled specimens now and review the results")
        self.propagate_button.clicked.connect(self.start_propagation)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop at the next step; the last good checkpoint is kept")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        self.propagate_after = QCheckBox("Segment the specimens when training ends")
        self.propagate_after.setChecked(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.propagate_after)
        buttons.addStretch(1)
        for b in (self.start_button, self.propagate_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        return buttons

    # ------------------------------------------------------------ contents
    def refresh(self) -> None:
        """Re-read templates and images from the host's store."""
        store = self.host.store
        self.template_list.blockSignals(True)
        self.template_list.clear()
        for record, names in template_images(store):
            item = QListWidgetItem(f"{record.file_name}: {', '.join(names)}")
            item.setData(_ID_ROLE, record.id)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if record.path is not None else Qt.Unchecked)
            if record.path is None:
                item.setFlags(item.flags() & ~Qt.ItemIsEnabled)
                item.setToolTip("The image file is missing")
            self.template_list.addItem(item)
        self.template_list.blockSignals(False)
        self.no_templates_label.setVisible(self.template_list.count() == 0)
        if not self.output_edit.text():
            self.output_edit.setText(str(self._default_run_dir()))
        self._update_sources()
        self._update()

    def _default_run_dir(self) -> Path:
        store = self.host.store
        base = Path.home()
        if store is not None and getattr(store, "path", None):
            base = store.path if store.path.is_dir() else store.path.parent
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return base / "sam2pal_runs" / f"run-{stamp}"

    def _update_sources(self) -> None:
        current = self.source_combo.currentData()
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        if self.trained is not None:
            self.source_combo.addItem("The model trained in this window", "trained")
        if self.last_adapter is not None:
            self.source_combo.addItem(f"Checkpoint of the last run ({self.last_adapter.parent.name})", "last")
        self.source_combo.addItem("An adapter file", "file")
        self.source_combo.addItem("The base model (no fine-tuning)", "base")
        index = self.source_combo.findData(current) if self._source_chosen else -1
        if index < 0:  # not chosen by the user: the newest trained weights, else the base model
            found = (self.source_combo.findData(d) for d in ("trained", "last", "base"))
            index = next(i for i in found if i >= 0)
        self.source_combo.setCurrentIndex(index)
        self.source_combo.blockSignals(False)

    def chosen_templates(self) -> list[TemplateSpec]:
        """The ticked templates, read and checked by the same rules as the command line's."""
        items = (self.template_list.item(r) for r in range(self.template_list.count()))
        ids = [item.data(_ID_ROLE) for item in items if item.checkState() == Qt.Checked]
        return specs_from_store(self.host.store, image_ids=ids) if ids else []

    def unlabeled_images(self) -> list:
        """Store records (project mode) or image paths (folder mode), templates excluded."""
        if self.folder_radio.isChecked():
            folder = Path(self.folder_edit.text().strip()).expanduser()
            if not folder.is_dir():
                return []
            return [str(p) for p in find_image_files(folder)]
        template_ids = {item.data(_ID_ROLE) for item in
                        (self.template_list.item(r) for r in range(self.template_list.count()))}
        return [r for r in self.host.images() if r.id not in template_ids and r.path is not None]

    def _apply_preset(self) -> None:
        preset: Preset = self.preset_combo.currentData()
        if preset is None:
            return
        gpu = self._gpu()
        self.steps_spin.setValue(preset.steps)
        size = preset.gpu_size if gpu else preset.cpu_size
        if self.session.image_size:  # a session made for small images (tests, demos)
            size = self.session.image_size
        fixed = fixed_image_size(self.session.checkpoint_choice())
        self.size_spin.setEnabled(fixed is None)
        if fixed is not None:  # shown as it runs: the beetle demo only works at its own size
            size = fixed
            self.size_spin.setToolTip(f"The beetle demo model runs at {fixed} px, the size it was trained at")
        self.size_spin.setValue(size)
        self._update_estimate()

    def _gpu(self) -> bool:
        return accelerator_available(self.device_combo.currentText())

    def _step_key(self) -> str:
        model_size = model_size_name(self.session.checkpoint_choice())
        return step_key(model_size, self._gpu(), self.pseudo_check.isChecked())

    def measured_step_seconds(self) -> dict[int, float]:
        """{image size: seconds per training step} measured by earlier runs on this computer
        with this kind of model and device."""
        table = step_table(self.session.settings.value(STEP_TIMES_SETTING, "{}", str))
        return measured_step_seconds(table, self._step_key())

    def _remember_step_seconds(self, history: list[dict], size: int) -> None:
        """Keep what this run measured, so the next estimate is measured, not guessed."""
        table = step_table(self.session.settings.value(STEP_TIMES_SETTING, "{}", str))
        if remember_step_seconds(table, self._step_key(), history, size):
            self.session.settings.setValue(STEP_TIMES_SETTING, json.dumps(table))

    def estimate(self) -> tuple[float, float, str]:
        """(low, high, how it was found) seconds for the training settings shown (``jobs.estimate``)."""
        steps, size = self.steps_spin.value(), self.size_spin.value()

        def first_guess() -> float:
            try:
                structures = {name for spec in self.chosen_templates() for name in spec.structures}
            except UserError:  # an invalid template: the Start button says so; guess for five
                structures = set()
            model = model_size_name(self.session.checkpoint_choice())
            return estimate_seconds(steps, size, self._gpu(), model, structures=len(structures) or 5,
                                    unlabeled=max(1, len(self.unlabeled_images())),
                                    pseudo=self.pseudo_check.isChecked())

        return training_estimate(steps, size, self.measured_step_seconds(), first_guess)

    def _update_estimate(self) -> None:
        self.estimate_label.setText(estimate_text(self.steps_spin.value(), self.size_spin.value(),
                                                  self._gpu(), self.estimate(),
                                                  stops_early=self.stop_spin.value() > 0))

    def _update(self) -> None:
        running = self.monitor.running
        n_templates = sum(self.template_list.item(r).checkState() == Qt.Checked
                          for r in range(self.template_list.count()))
        self.project_radio.setText(f"The project's other images ({len(self.unlabeled_images())})"
                                   if not self.folder_radio.isChecked() else "The project's other images")
        for w in (self.template_list, self.project_radio, self.folder_radio, self.folder_edit,
                  self.preset_combo, self.advanced_box, self.picker, self.source_combo):
            w.setEnabled(not running)
        self.start_button.setEnabled(not running and n_templates > 0)
        self.propagate_button.setEnabled(not running and n_templates > 0)
        self.start_button.setToolTip("Outline structures on at least one specimen first (Templates panel)"
                                     if n_templates == 0 else
                                     "Fine-tune SAM2 on the templates and unlabeled specimens")
        self.cancel_button.setEnabled(running)
        self.adapter_edit.setEnabled(not running and self.source_combo.currentData() == "file")

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of unlabeled specimen images")
        if path:
            self.folder_edit.setText(path)
            self.folder_radio.setChecked(True)

    def _browse_output(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for the training run")
        if path:
            self.output_edit.setText(path)

    def _browse_adapter(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM2-PAL adapter", "",
                                              "SAM2-PAL adapters (*.pt);;All files (*)")
        if path:
            self.adapter_edit.setText(path)
            self.source_combo.setCurrentIndex(self.source_combo.findData("file"))

    # ------------------------------------------------------------ running
    def train_config(self):
        lr_text = self.lr_edit.text().strip()
        try:
            lr = float(lr_text) if lr_text else None
        except ValueError:
            raise UserError(f"the learning rate {lr_text!r} is not a number; e.g. 5e-4, "
                            "or leave it empty") from None
        config = train_config(steps=self.steps_spin.value(), lr=lr, lora_rank=self.rank_spin.value(),
                              full=self.full_check.isChecked(), seed=self.seed_spin.value(),
                              pseudo_labels=self.pseudo_check.isChecked(), stop_after=self.stop_spin.value())
        config.check()
        return config

    def _common(self) -> tuple[ModelRequest, list[TemplateSpec]]:
        """The model request (the checkpoint, device and size shown) and the ticked templates."""
        choice = self.session.checkpoint_choice()
        if choice is None:
            raise UserError("Choose a SAM2 checkpoint first (Browse..., Download... or the demo model).")
        if self.size_spin.value() % 32:
            raise UserError(f"the image size must be a multiple of 32 (e.g. 512), "
                            f"not {self.size_spin.value()}")
        specs = self.chosen_templates()
        if not specs:
            raise UserError("Tick at least one template (outline structures in the Templates panel first).")
        return ModelRequest(choice, self.device_combo.currentText(), self.size_spin.value()), specs

    def _training_request(self) -> TrainRequest:
        model, specs = self._common()
        config = self.train_config()
        unlabeled = self.unlabeled_images()
        folder = Path(self.folder_edit.text().strip()).expanduser()
        if self.folder_radio.isChecked() and not folder.is_dir():
            raise UserError("Choose an existing folder of unlabeled images, or use the project's images.")
        wanted = Path(self.output_edit.text().strip() or self._default_run_dir()).expanduser()
        run_dir = unused_run_dir(wanted, self._default_run_dir().name)
        if run_dir != wanted:
            self.output_edit.setText(str(run_dir))
        return TrainRequest(model, specs, unlabeled, run_dir, config)

    def start_training(self) -> None:
        done, request = shown_errors(self.host, "Train SAM2-PAL", self._training_request)
        if not done:
            return
        model, specs, unlabeled, config = request.model, request.templates, request.unlabeled, request.config
        self.run_dir = request.run_dir
        self.trained = None
        self.monitor.loss_plot.clear()
        self.monitor.loss_plot.set_validation_metric(validation_metric(specs, len(unlabeled), config))
        self.job = TrainJob(request)
        self.monitor.append_log(f"Training {config.steps} steps at {model.image_size} px on {len(specs)} "
                                f"template(s) and {len(unlabeled)} unlabeled image(s).")
        worker = EngineWorker(run_training, self.job, description="Training SAM2-PAL", job=True)
        self._start(worker, "Training")

    def _propagation_job(self) -> PropagateJob:
        model, specs = self._common()
        source = self.source_combo.currentData()
        trained = None
        if source == "trained":
            trained = self.trained
        elif source == "last":
            model = replace(model, adapter=str(self.last_adapter), image_size=None)
        elif source == "file":
            adapter = self.adapter_edit.text().strip()
            if not adapter or not Path(adapter).expanduser().is_file():
                raise UserError("Choose the adapter file (adapter.pt in a training run folder), "
                                "or segment with the base model.")
            model = replace(model, adapter=adapter, image_size=None)  # the adapter's own size
        targets = self.unlabeled_images()
        if not targets:
            raise UserError("There are no specimens to segment: the project has no images besides "
                            "the templates (or the folder has none).")
        run_dir = self.run_dir or Path(self.output_edit.text().strip() or self._default_run_dir())
        return PropagateJob(PropagateRequest(model, specs, targets, out=run_dir / PREDICTIONS_FILE), trained)

    def start_propagation(self) -> None:
        done, job = shown_errors(self.host, "Segment specimens", self._propagation_job)
        if not done:
            return
        self.run_dir = job.request.out.parent
        self.job = job
        worker = EngineWorker(run_propagation, self.job, description="Segmenting specimens", job=True)
        self._start(worker, "Segmenting")

    def _start(self, worker: EngineWorker, stage: str) -> None:
        self.monitor.start(worker, stage, self._on_result, self._on_error, self._on_cancelled)
        self._update()

    def cancel(self) -> None:
        if self.monitor.cancel():
            self.cancel_button.setEnabled(False)

    def _on_result(self, value: Any) -> None:
        if isinstance(value, TrainOutcome):
            self._training_ended(value, cancelled=False)
        else:
            self._propagation_ended(value)

    def _training_ended(self, outcome: TrainOutcome | None, cancelled: bool) -> None:
        adapter = self.run_dir / "adapter.pt" if self.run_dir is not None else None
        self.last_adapter = adapter if adapter is not None and adapter.is_file() else None
        self.trained = outcome
        if outcome is not None:
            self._remember_step_seconds(outcome.result.history, outcome.model.image_size)
            self._update_estimate()
            for line in describe_result(outcome.result)[:2]:  # the adapter line follows below
                self.monitor.append_log(line[:1].upper() + line[1:])
        if self.last_adapter is not None:
            self.monitor.append_log(f"Trained weights: {self.last_adapter}")
        self.monitor.stage_label.setText("Training cancelled: the last good checkpoint is kept."
                                         if cancelled else "Training finished.")
        self._update_sources()
        self.source_combo.setCurrentIndex(0)
        if not cancelled and self.propagate_after.isChecked():
            self._propagate_next = True

    def _propagation_ended(self, results: list) -> None:
        self.results = results
        present = sum(1 for r in results for s in r.structures.values() if s.present)
        self.monitor.append_log(f"Segmented {len(results)} specimen(s): {present} structure(s) found.")
        self.monitor.stage_label.setText(f"Done: {len(results)} specimens segmented. "
                                         "Review them in the Review panel.")
        if self.on_results is not None:  # on failure the results stay in self.results
            shown_errors(self.host, "Review", lambda: self.on_results(results, self.run_dir),
                         message="Cannot show the results: {}")

    def _on_error(self, message: str, details: str) -> None:
        what = "Training" if isinstance(self.job, TrainJob) else "Segmenting"
        self.monitor.append_log(f"{what} failed: {message}")
        self.monitor.stage_label.setText(f"{what} failed.")
        adapter = self.run_dir / "adapter.pt" if self.run_dir is not None else None
        if isinstance(self.job, TrainJob) and adapter is not None and adapter.is_file():
            self.last_adapter = self.run_dir / "adapter.pt"
            self._update_sources()
        self.host.show_error(f"{what} failed", message, details)

    def _on_cancelled(self) -> None:
        if isinstance(self.job, TrainJob):
            self._training_ended(self.job.outcome, cancelled=True)
        else:
            self.monitor.append_log("Segmenting cancelled; finished images are kept in the run folder "
                                    "and are not redone next time.")
            self.monitor.stage_label.setText("Segmenting cancelled.")

    def _on_idle(self) -> None:
        self._update()
        if self._propagate_next:
            self._propagate_next = False
            self.start_propagation()

    def closeEvent(self, event) -> None:
        # The work goes on when the dialog is hidden; the host's window asks before quitting.
        super().closeEvent(event)
