"""Train dialog: a real training worker on the mini model (progress, finish, cancel, failure)."""

import numpy as np
import pytest
from PyQt5.QtCore import Qt

from descriptron_sam2pal.gui.train_dialog import TrainDialog
from descriptron_sam2pal.gui.workers import running_work
from descriptron_sam2pal.jobs.estimate import estimate_seconds, format_duration
from tests.helpers.plugin_gui import wait_image


def _project_with_template(qtbot, window, specimens):
    assert window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    record = window.images()[0]
    mask = np.zeros((record.height, record.width), bool)
    mask[20:50, 30:80] = True
    window.store.add_structure(record.id, "pronotum", mask, attributes={"source": "sam2pal-template"})
    window.notify_store_changed()
    return record


def _dialog(qtbot, window, session, steps, results):
    dialog = TrainDialog(window, session, on_results=lambda r, run_dir: results.append((r, run_dir)))
    dialog.advanced_box.setChecked(True)
    dialog.steps_spin.setValue(steps)
    assert dialog.size_spin.value() == 128  # the session's size
    dialog.device_combo.setCurrentText("cpu")
    dialog.steps_spin.setValue(steps)
    dialog.show()
    return dialog


def test_training_reports_progress_finishes_then_segments(qtbot, window, specimens, session, messages):
    _project_with_template(qtbot, window, specimens)
    results = []
    dialog = _dialog(qtbot, window, session, 3, results)
    assert dialog.template_list.count() == 1 and "pronotum" in dialog.template_list.item(0).text()
    assert "(3)" in dialog.project_radio.text()  # the other three images
    reports = []
    shown = []  # (stage, the progress bar's text, the stage line) as the user sees them
    dialog.start_training()
    worker = dialog.monitor.worker
    worker.progress.connect(reports.append)
    monitor = dialog.monitor
    worker.progress.connect(
        lambda p: shown.append((p.stage, monitor.progress_bar.text(), monitor.stage_label.text()))
    )
    assert worker in running_work.announced()  # the host knows: closing asks first
    assert not dialog.start_button.isEnabled() and dialog.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: bool(results), timeout=60000)  # trained, then propagated
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=10000)
    train_steps = [r.done for r in reports if r.stage == "train"]
    assert train_steps == [0, 1, 2, 3]  # 0: the untrained model's validation
    assert len(dialog.monitor.loss_plot.losses) == 3 and dialog.monitor.progress_bar.value() >= 1
    vals = dialog.monitor.loss_plot.vals
    assert vals and vals[0][0] == 0  # the curve starts at what training must beat
    assert (dialog.run_dir / "adapter.pt").is_file()
    ((res, run_dir),) = results
    assert run_dir == dialog.run_dir
    assert sorted(r.path.rsplit("/", 1)[-1] for r in res) == [
        "specimen_02.png",
        "specimen_03.png",
        "specimen_04.png",
    ]
    assert dialog.start_button.isEnabled() and not dialog.cancel_button.isEnabled()
    assert messages.seen == []
    assert "Training finished" in dialog.monitor.log_view.toPlainText()
    seen = {stage: {text for st, text, _ in shown if st == stage} for stage in ("load", "train")}
    assert seen["train"] == {f"{i} / 3 steps" for i in range(4)}
    assert seen["load"] and all(t.startswith("reading photos: ") for t in seen["load"])  # not "0 / 3 images"
    assert all("reading the photos" in line for st, _, line in shown if st == "load")
    assert not any("images" in text for st, text, _ in shown if st in ("load", "train"))
    # on by default, and the user sees it
    assert "pseudo-labels remade" in dialog.monitor.log_view.toPlainText()


def test_cancel_stops_and_keeps_a_usable_checkpoint(qtbot, window, specimens, session, messages):
    _project_with_template(qtbot, window, specimens)
    results = []
    dialog = _dialog(qtbot, window, session, 500, results)
    dialog.propagate_after.setChecked(True)
    steps = []
    dialog.start_training()
    dialog.monitor.worker.progress.connect(lambda p: steps.append(p.done) if p.stage == "train" else None)
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=60000)
    qtbot.waitUntil(lambda: dialog.monitor.eta_label.text().endswith("left"), timeout=60000)
    qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
    assert "Stopping" in dialog.monitor.stage_label.text()  # it says so while stopping
    assert dialog.monitor.eta_label.text() == ""  # no time left is promised for a run that stops
    at_cancel = max(steps)
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=60000)
    assert max(steps) <= at_cancel + 1 and results == []  # within one step; no propagation after a cancel
    assert "cancelled" in dialog.monitor.stage_label.text().lower() and dialog.monitor.eta_label.text() == ""
    adapter = dialog.run_dir / "adapter.pt"
    assert adapter.is_file() and dialog.last_adapter == adapter
    assert dialog.start_button.isEnabled()

    from descriptron_sam2pal.model.adapter_file import load_adapter
    from descriptron_sam2pal.model.build import build_model

    info = load_adapter(adapter, build_model(checkpoint=session.checkpoint_choice(), image_size=128))
    assert info.structures == ["pronotum"]

    # The kept checkpoint segments the specimens.
    assert dialog.source_combo.currentData() in ("trained", "last")
    dialog.source_combo.setCurrentIndex(dialog.source_combo.findData("last"))
    dialog.start_propagation()
    qtbot.waitUntil(lambda: bool(results) and dialog.monitor.worker is None, timeout=60000)
    assert len(results[0][0]) == 3 and messages.seen == []


def test_a_failing_worker_shows_the_error_and_gives_the_buttons_back(
    qtbot, window, specimens, session, messages, tmp_path
):
    _project_with_template(qtbot, window, specimens)
    bad = tmp_path / "unreadable"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    dialog = _dialog(qtbot, window, session, 3, [])
    dialog.folder_edit.setText(str(bad))
    dialog.folder_radio.setChecked(True)
    dialog.start_training()
    assert dialog.monitor.worker is not None and not dialog.start_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=60000)
    assert [t for t, _ in messages.seen] == ["Training failed"]
    assert "no usable unlabeled image" in messages.seen[0][1]
    assert dialog.start_button.isEnabled() and dialog.propagate_button.isEnabled()
    assert not dialog.cancel_button.isEnabled() and dialog.template_list.isEnabled()
    assert "failed" in dialog.monitor.stage_label.text()


def test_presets_and_estimates(qtbot, window, specimens, settings, mini_checkpoint):
    from descriptron_sam2pal.gui.model_session import ModelSession

    session = ModelSession(window, settings)  # no fixed size: the presets choose it
    session.set_checkpoint(str(mini_checkpoint))
    dialog = TrainDialog(window, session)
    dialog.device_combo.setCurrentText("cpu")
    dialog.preset_combo.setCurrentText("Quick")
    assert (dialog.steps_spin.value(), dialog.size_spin.value()) == (100, 256)
    dialog.preset_combo.setCurrentText("Thorough")
    assert dialog.steps_spin.value() == 1000
    assert "on the CPU" in dialog.estimate_label.text()
    assert not dialog.advanced_widget.isVisibleTo(dialog)
    dialog.advanced_box.setChecked(True)
    assert dialog.advanced_widget.isVisibleTo(dialog)
    assert not dialog.start_button.isEnabled()  # no templates yet
    assert (
        estimate_seconds(100, 512, False)
        > estimate_seconds(100, 256, False)
        > estimate_seconds(100, 256, True)
    )
    assert format_duration(3700) == "1 h 01 min" and format_duration(75) == "1 min 15 s"


def test_the_estimate_is_a_range_until_measured_then_what_this_computer_did(
    qtbot, window, specimens, session
):
    _project_with_template(qtbot, window, specimens)
    dialog = _dialog(qtbot, window, session, 4, [])
    dialog.propagate_after.setChecked(False)
    assert " to " in dialog.estimate_label.text() and "guess" in dialog.estimate_label.text()
    dialog.start_training()
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=60000)
    assert dialog.trained is not None
    assert "measured on this computer" in dialog.estimate_label.text()
    assert "4 steps at 128 px" in dialog.estimate_label.text()  # the settings that ran
    low, high, _ = dialog.estimate()
    history = dialog.trained.result.history
    median = sorted(e["seconds"] for e in history)[2]
    remakes = sum(e.get("pseudo_seconds", 0) for e in history)  # the pseudo-labels' remakes count too
    assert remakes > 0 and low == high == pytest.approx(4 * (median + remakes / 4))


def test_the_beetle_demo_shows_the_size_it_runs_at(qtbot, window, settings):
    from descriptron_sam2pal.gui.model_session import ModelSession
    from descriptron_sam2pal.jobs.models import BEETLE_DEMO_CHOICE, BEETLE_DEMO_SIZE

    session = ModelSession(window, settings)
    session.set_checkpoint(BEETLE_DEMO_CHOICE)
    dialog = TrainDialog(window, session)
    for preset in ("Quick", "Balanced", "Thorough"):
        dialog.preset_combo.setCurrentText(preset)
        assert dialog.size_spin.value() == BEETLE_DEMO_SIZE and not dialog.size_spin.isEnabled()
        assert f"at {BEETLE_DEMO_SIZE} px" in dialog.estimate_label.text()


def test_the_loss_plot_is_readable_and_names_validation_once(qtbot, window, specimens, session):
    from descriptron_sam2pal.gui.loss_plot import smoothed

    assert smoothed([4.0]) == [4.0]  # no start-up bias towards 0
    jumpy = [0.2, 4.0, 0.3, 3.5, 0.25, 3.0] * 5
    trend = smoothed(jumpy)
    assert max(trend[10:]) - min(trend[10:]) < (max(jumpy) - min(jumpy)) / 3
    _project_with_template(qtbot, window, specimens)
    dialog = _dialog(qtbot, window, session, 3, [])
    dialog.propagate_after.setChecked(False)
    dialog.start_training()
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=60000)
    plot = dialog.monitor.loss_plot
    name = plot.validation_name
    assert name == "held-out review score"  # one template: the review score of held-out specimens
    assert "label-free proxy" in plot.plot.toolTip() and "untrained" in plot.plot.toolTip()
    assert plot.plot.getPlotItem().getAxis("right").labelText == name
    assert name in plot.legend_label.text() and "smoothed" in plot.legend_label.text()
    assert plot.legend_label.parent() is not plot.plot  # outside the plot: it covers no curve
    assert len(plot.raw_loss_curve.getData()[0]) == 3 and len(plot.loss_curve.getData()[0]) == 3


def test_pseudo_labels_can_be_turned_off_and_the_estimate_follows(qtbot, window, specimens, session):
    _project_with_template(qtbot, window, specimens)
    dialog = _dialog(qtbot, window, session, 300, [])
    assert dialog.pseudo_check.isChecked() and dialog.train_config().loss.pseudo > 0
    with_pseudo = dialog.estimate()
    dialog.pseudo_check.setChecked(False)
    assert dialog.train_config().loss.pseudo == 0
    without = dialog.estimate()
    assert "guess" in with_pseudo[2] and "guess" in without[2]  # no run measured here yet (fresh settings)
    assert with_pseudo[0] > without[0]


def test_the_dialog_fits_a_laptop_screen_with_advanced_settings_open(qtbot, window, specimens, session):
    from PyQt5.QtWidgets import QScrollArea

    _project_with_template(qtbot, window, specimens)
    dialog = _dialog(qtbot, window, session, 300, [])  # Advanced settings open
    assert dialog.minimumSizeHint().height() <= 700  # a 1366 x 768 screen, less its panel and title bar
    dialog.resize(1366, 700)
    qtbot.wait(50)
    settings = dialog.findChildren(QScrollArea)[0]
    # The settings scroll up and down; nothing is cut off at their side, and the buttons stay visible.
    assert settings.widget().width() >= settings.widget().minimumSizeHint().width()
    assert dialog.start_button.isVisible() and dialog.start_button.geometry().bottom() <= dialog.height()


def test_scrolling_over_the_dialog_changes_no_setting(qtbot, window, specimens, session):
    """The wheel over Steps, Size, the preset or the device (none of them focused) leaves them
    as they are; the form scrolls instead."""
    from PyQt5.QtCore import QPoint, QPointF
    from PyQt5.QtGui import QWheelEvent
    from PyQt5.QtWidgets import QApplication

    _project_with_template(qtbot, window, specimens)
    dialog = TrainDialog(window, session)
    dialog.advanced_box.setChecked(True)
    dialog.show()
    qtbot.waitExposed(dialog)
    before = {
        w: (w.value() if hasattr(w, "value") else w.currentIndex())
        for w in (
            dialog.steps_spin,
            dialog.size_spin,
            dialog.rank_spin,
            dialog.seed_spin,
            dialog.preset_combo,
            dialog.device_combo,
        )
    }
    preset = dialog.preset_combo.currentText()
    for widget in before:
        assert not widget.hasFocus() and widget.focusPolicy() == Qt.StrongFocus
        centre = widget.rect().center()
        QApplication.sendEvent(
            widget,
            QWheelEvent(
                QPointF(centre),
                QPointF(widget.mapToGlobal(centre)),
                QPoint(),
                QPoint(0, -360),
                Qt.NoButton,
                Qt.NoModifier,
                Qt.NoScrollPhase,
                False,
            ),
        )
    after = {w: (w.value() if hasattr(w, "value") else w.currentIndex()) for w in before}
    assert after == before and dialog.preset_combo.currentText() == preset
    from descriptron_sam2pal.gui.fitting import FRAME, available_geometry

    assert dialog.height() + FRAME.height() <= available_geometry(dialog).height()  # 600 px offscreen
    dialog.close()


def test_what_cannot_start_says_why_in_a_dialog_and_starts_nothing(
    qtbot, window, specimens, session, messages, tmp_path
):
    _project_with_template(qtbot, window, specimens)
    dialog = _dialog(qtbot, window, session, 3, [])
    dialog.folder_radio.setChecked(True)
    dialog.folder_edit.setText(str(tmp_path / "no such folder"))
    dialog.start_training()
    assert messages.seen[-1] == ("Train SAM2-PAL", "Choose an existing folder of unlabeled images, or use "
                                 "the project's images.")
    dialog.project_radio.setChecked(True)
    dialog.source_combo.setCurrentIndex(dialog.source_combo.findData("file"))
    dialog.adapter_edit.setText("")
    dialog.start_propagation()
    assert messages.seen[-1][0] == "Segment specimens" and "Choose the adapter file" in messages.seen[-1][1]
    assert dialog.monitor.worker is None and dialog.job is None and dialog.run_dir is None


def test_stop_early_is_a_setting_the_run_and_the_estimate_follow(qtbot, window, specimens, session):
    _project_with_template(qtbot, window, specimens)
    dialog = _dialog(qtbot, window, session, 300, [])
    assert dialog.stop_spin.value() == 0 and dialog.train_config().stop_after == 0  # TrainConfig's default
    assert dialog.stop_spin.text().startswith("never") and "stops early" not in dialog.estimate_label.text()
    dialog.stop_spin.setValue(4)
    assert dialog.train_config().stop_after == 4
    assert "less if it stops early" in dialog.estimate_label.text()
