"""The Train dialog shows the refusal of a structure that vanishes at the chosen input size: the
real worker fails before any step, the message names the structure, the template photo and the
smallest size that keeps it, and the buttons come back (real widgets, mini model)."""

from __future__ import annotations

import numpy as np

from descriptron_sam2pal.gui.train_dialog import TrainDialog
from descriptron_sam2pal.imaging.kept_pixels import smallest_keeping_size
from tests.helpers.plugin_gui import wait_image


def test_a_structure_that_vanishes_at_the_image_size_is_named_in_the_error(
    qtbot, window, specimens, session, messages
):
    assert window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    record = window.images()[0]
    body = np.zeros((record.height, record.width), bool)
    body[20:50, 30:80] = True
    seta = np.zeros_like(body)
    seta[60:62, 10:12] = True  # 2 x 2 px on a 112 px photo: about one pixel at 64 px
    for name, mask in (("pronotum", body), ("seta", seta)):
        window.store.add_structure(record.id, name, mask, attributes={"source": "sam2pal-template"})
    window.notify_store_changed()
    dialog = TrainDialog(window, session, on_results=lambda *a: None)
    dialog.advanced_box.setChecked(True)
    dialog.device_combo.setCurrentText("cpu")
    dialog.steps_spin.setValue(2)
    dialog.size_spin.setValue(64)
    dialog.show()
    dialog.start_training()
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=60000)
    assert [title for title, _ in messages.seen] == ["Training failed"]
    text = messages.seen[0][1]
    needed = smallest_keeping_size(seta, start=65)
    assert (
        f"'seta' on the template photo {record.path}" in text and "at the model's input size of 64 px" in text
    )
    assert f"the smallest input size that keeps it: {needed} px" in text and "Image size" in text
    assert "pronotum" not in text
    assert "failed" in dialog.monitor.stage_label.text() and dialog.start_button.isEnabled()
    assert not (dialog.run_dir / "adapter.pt").exists()  # no step was taken
