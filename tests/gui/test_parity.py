"""One engine, two faces: for the same inputs the command line and the GUI build the same
templates, plan the same validation, and write the same predictions."""

import json

import numpy as np
from PyQt5.QtCore import Qt

from descriptron_sam2pal.cli import main as cli_main
from descriptron_sam2pal.gui.train_dialog import TrainDialog, validation_metric
from descriptron_sam2pal.jobs.propagation import PREDICTIONS_FILE
from descriptron_sam2pal.jobs.templates import template_specs
from tests.helpers.plugin_gui import wait_image


def _project(qtbot, window, specimens, n_templates=1):
    assert window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    for record in window.images()[:n_templates]:
        mask = np.zeros((record.height, record.width), bool)
        mask[20:50, 30:80] = True
        window.store.add_structure(record.id, "pronotum", mask, attributes={"source": "sam2pal-template"})
    window.notify_store_changed()
    window.save_store()
    assert not window.store.is_dirty
    return specimens  # a folder of photos with their _final_ annotation files, as the CLI takes it


def _dialog(qtbot, window, session):
    dialog = TrainDialog(window, session, on_results=lambda r, run_dir: None)
    dialog.advanced_box.setChecked(True)
    dialog.device_combo.setCurrentText("cpu")
    dialog.show()
    return dialog


def test_the_gui_and_the_cli_read_the_same_templates(qtbot, window, specimens, session):
    store_file = _project(qtbot, window, specimens, n_templates=2)
    gui = _dialog(qtbot, window, session).chosen_templates()
    cli = template_specs([str(store_file)])
    assert [(s.image_id, s.path, s.structures) for s in gui] == [
        (s.image_id, s.path, s.structures) for s in cli
    ]
    assert all(np.array_equal(a.masks[n], b.masks[n]) for a, b in zip(gui, cli) for n in a.masks)


def test_the_gui_names_the_validation_the_trainer_runs(qtbot, window, specimens, session):
    _project(qtbot, window, specimens, n_templates=2)
    dialog = _dialog(qtbot, window, session)
    dialog.steps_spin.setValue(1)
    specs = dialog.chosen_templates()
    shown = validation_metric(specs, len(dialog.unlabeled_images()), dialog.train_config())
    assert shown == "pool_score"  # the held-out review score, also with two templates (issue 25)
    dialog.start_training()
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=60000)
    assert dialog.trained is not None and dialog.trained.result.val_metric == shown
    asked = dialog.train_config()
    asked.validation = "loo_iou"  # two templates share "pronotum": each can be predicted from the other
    assert validation_metric(specs, 2, asked) == "loo_iou"
    dialog.template_list.item(1).setCheckState(Qt.Unchecked)  # one template: nothing to compare
    assert validation_metric(dialog.chosen_templates(), 2, asked) == "pool_score"


def test_the_gui_and_the_cli_write_the_same_predictions(
    qtbot, window, specimens, settings, tmp_path, messages, present_checkpoint
):
    from descriptron_sam2pal.gui.model_session import ModelSession

    checkpoint = present_checkpoint
    session = ModelSession(window, settings, image_size=128)
    session.set_checkpoint(str(checkpoint))
    store_file = _project(qtbot, window, specimens)
    dialog = _dialog(qtbot, window, session)
    dialog.source_combo.setCurrentIndex(dialog.source_combo.findData("base"))
    dialog.output_edit.setText(str(tmp_path / "run"))
    dialog.start_propagation()
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=60000)
    gui_file = dialog.run_dir / PREDICTIONS_FILE
    assert messages.seen == [] and gui_file.is_file(), dialog.monitor.log_view.toPlainText()
    code = cli_main(["propagate", "--templates", str(store_file), "--images", str(specimens),
                     "--checkpoint", str(checkpoint), "--image-size", "128", "--device", "cpu",
                     "--out", str(tmp_path / "cli.json")])
    assert code == 0
    gui, cli = json.loads(gui_file.read_text()), json.loads((tmp_path / "cli.json").read_text())
    # Ids may differ (the GUI's targets are the project's images, with the project's ids);
    # everything else is the same bytes.
    strip = lambda doc: [{k: v for k, v in a.items() if k not in ("id", "image_id")}  # noqa: E731
                         for a in doc["annotations"]]
    assert [i["file_name"] for i in gui["images"]] == [i["file_name"] for i in cli["images"]]
    assert strip(gui) == strip(cli) and gui["annotations"]
