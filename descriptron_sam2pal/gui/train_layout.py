"""The Train dialog's Advanced settings, built: steps, image size, LoRA rank, full fine-tuning,
pseudo-labels, learning rate, seed, device and output folder, folded away in a group box. The
builder puts its widgets on the dialog (``dialog.steps_spin``, ``dialog.size_spin``, ...,
``dialog.output_button``) and wires them only to each other; the dialog connects them to its own
slots (a preset or the device fills the steps and the size, the estimate follows them) and reads
them (``TrainDialog.train_config``)."""

from __future__ import annotations

from typing import Any

from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

DEVICES = ("auto", "cpu", "cuda", "mps")


def build_advanced(dialog: Any) -> QGroupBox:
    """The Advanced settings box (unchecked and folded at first); the device shown is the model
    session's (``dialog.session.device``)."""
    dialog.advanced_box = QGroupBox("Advanced settings")
    dialog.advanced_box.setCheckable(True)
    dialog.advanced_box.setChecked(False)
    dialog.advanced_widget = QWidget()
    adv = QFormLayout(dialog.advanced_widget)
    dialog.steps_spin = QSpinBox()
    dialog.steps_spin.setRange(1, 100000)
    dialog.steps_spin.setToolTip("Optimizer steps (each: one template and one unlabeled image)")
    dialog.size_spin = QSpinBox()
    dialog.size_spin.setRange(64, 2048)
    dialog.size_spin.setSingleStep(32)
    dialog.size_spin.setSuffix(" px")
    dialog.size_spin.setToolTip(
        "Images are letterboxed to this square size (a multiple of 32). "
        "Larger sees finer detail and is much slower"
    )
    dialog.rank_spin = QSpinBox()
    dialog.rank_spin.setRange(1, 128)
    dialog.rank_spin.setValue(8)
    dialog.rank_spin.setToolTip("LoRA rank: the capacity of the small adapter that is trained")
    dialog.full_check = QCheckBox("Full fine-tuning instead of LoRA")
    dialog.full_check.setToolTip(
        "Train the decoder and memory modules themselves (bigger files, needs more templates)"
    )
    dialog.full_check.toggled.connect(dialog.rank_spin.setDisabled)
    from descriptron_sam2pal.engine.pseudo_labels import MAX_IMAGES  # torch: loaded when the dialog opens
    from descriptron_sam2pal.engine.trainer import TrainConfig

    dialog.pseudo_check = QCheckBox("Also learn from the best predictions (pseudo-labels)")
    dialog.pseudo_check.setChecked(True)
    dialog.pseudo_check.setToolTip(
        f"Every {TrainConfig().pseudo_every} steps the model segments {MAX_IMAGES} of the unlabeled "
        f"specimens (the next {MAX_IMAGES} each time); "
        "the quarter of each structure's masks that the review score trusts most (most like the "
        "others, and whose round trip back to the template works) are learnt from too. "
        "Adds a fraction of the training time (the estimate counts it); on the test-bed it "
        "helped most where the model started worst"
    )
    dialog.stop_spin = QSpinBox()
    dialog.stop_spin.setRange(0, 1000)
    dialog.stop_spin.setValue(TrainConfig().stop_after)
    dialog.stop_spin.setSpecialValueText("never (train every step)")
    dialog.stop_spin.setSuffix(" checks without a better one")
    dialog.stop_spin.setToolTip(
        "Training is checked every 25 steps on specimens it does not learn from, and the best "
        "check's weights are kept. After this many checks in a row that do not beat the best, "
        "the run stops, sooner and with the best so far. Off by default: on the test-bed the "
        "checks first fell and only after 50-75 steps rose above the untrained model"
    )
    dialog.lr_edit = QLineEdit()
    dialog.lr_edit.setPlaceholderText("default")
    dialog.lr_edit.setToolTip("Learning rate; empty for the default (5e-4 LoRA, 1e-5 full)")
    dialog.seed_spin = QSpinBox()
    dialog.seed_spin.setRange(0, 2**31 - 1)
    dialog.seed_spin.setToolTip("The same seed and settings give the same run")
    dialog.device_combo = QComboBox()
    for d in DEVICES:
        dialog.device_combo.addItem(d)
    dialog.device_combo.setCurrentText(dialog.session.device)
    dialog.device_combo.setToolTip("auto: the GPU when there is one, else the CPU")
    dialog.output_edit = QLineEdit()
    dialog.output_edit.setToolTip("The run folder: settings, log, adapter.pt (the trained weights)")
    dialog.output_button = QPushButton("Browse...")
    output_row = QHBoxLayout()
    output_row.addWidget(dialog.output_edit, 1)
    output_row.addWidget(dialog.output_button)
    adv.addRow("Steps:", dialog.steps_spin)
    adv.addRow("Image size:", dialog.size_spin)
    adv.addRow("LoRA rank:", dialog.rank_spin)
    adv.addRow("", dialog.full_check)
    adv.addRow("", dialog.pseudo_check)
    adv.addRow("Stop early after:", dialog.stop_spin)
    adv.addRow("Learning rate:", dialog.lr_edit)
    adv.addRow("Seed:", dialog.seed_spin)
    adv.addRow("Device:", dialog.device_combo)
    adv.addRow("Output folder:", output_row)
    QVBoxLayout(dialog.advanced_box).addWidget(dialog.advanced_widget)
    dialog.advanced_widget.setVisible(False)
    dialog.advanced_box.toggled.connect(dialog.advanced_widget.setVisible)
    return dialog.advanced_box
