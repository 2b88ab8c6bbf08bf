"""The review on the real workspace with the real plugin: shown large in the central area, a
prediction corrected by hand and written back, and a review continued after closing the window."""

import numpy as np
from PyQt5.QtCore import QSettings, Qt
from PyQt5.QtWidgets import QMessageBox, QTabBar

from descriptron_sam2pal import plugin as plugin_module
from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED
from tests.helpers.plugin_gui import drag_on, wait_image


def _results(window):
    out = []
    for i, record in enumerate(window.images()[1:]):
        body = np.zeros((record.height, record.width), bool)
        body[20:50, 30:80] = True
        eye = np.zeros_like(body)
        eye[22:30, 70:78] = True
        out.append(TargetResult(record.id, str(record.path), record.height, record.width,
                                {"pronotum": StructureResult("pronotum", True, body, 0.3 + 0.1 * i, 0.9, 0.8),
                                 "eye": StructureResult("eye", True, eye, 0.6 + 0.1 * i, 0.9, 0.8)}))
    return out


def _review(qtbot, window, specimens):
    plugin = plugin_module.register(window)
    assert window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    run = specimens / "sam2pal_runs" / "run-1"
    run.mkdir(parents=True)
    plugin.show_results(_results(window), run)
    panel = plugin.review_panel
    qtbot.waitUntil(lambda: window.central_view() is panel.viewer, timeout=5000)
    qtbot.waitUntil(lambda: panel.canvas.has_image() and not panel.image_loading(), timeout=10000)
    return plugin, panel, run


def test_review_large_in_the_centre_sorted_filtered_erased_and_written_back(
    qtbot, window, specimens, messages
):
    plugin, panel, run = _review(qtbot, window, specimens)
    assert panel.session_path == run / "review.json" and (run / "review.json").is_file()
    assert panel.splitter is None and panel.viewer.isVisible()  # the photo is the big view
    assert panel.viewer.parentWidget() is window.central
    item = panel.rows.current_item()
    assert (item.target.file_name, item.structure) == ("specimen_02.png", "pronotum")  # worst first
    # One colour per structure: the same in the review and on the main canvas.
    assert panel.canvas.colors is window.canvas.colors

    panel.rows.set_structure_filter("eye")
    assert {i.structure for i in panel.model.rows} == {"eye"}
    eye = panel.rows.current_item()
    panel.rows.set_structure_filter(None)
    assert panel.rows.current_item() is eye  # the selection stays
    assert panel.rows.select(item)
    panel.rows.sort_by(0, Qt.DescendingOrder)  # by specimen, Z to A
    assert panel.model.rows[0].target.file_name == "specimen_04.png"
    panel.rows.sort_by(-1)
    assert panel.rows.current_item() is item

    panel.toolbar.buttons["eraser"].click()
    panel.toolbar.size_spin.setValue(4)
    before = item.current_mask.copy()
    drag_on(qtbot, panel.canvas, [(55, 15), (55, 35), (55, 55)])
    assert item.corrected and item.hand_edited
    erased = item.current_mask.copy()
    assert not erased[35, 55] and erased[35, 40] and erased.sum() < before.sum()
    panel.undo()
    assert np.array_equal(item.current_mask, before)
    panel.redo()
    assert np.array_equal(item.current_mask, erased)

    panel.table.setFocus()
    qtbot.keyClick(panel.table, Qt.Key_A)
    assert item.state == ACCEPTED
    messages.answers = [QMessageBox.Apply]  # "Write, save later"
    panel.write_back()
    record = window.store.image_by_file("specimen_02.png")
    assert np.array_equal(window.store.structure_masks(record.id)["pronotum"], erased)
    assert item.written

    # Another panel's tab: the central area shows the photo with the project's outlines; back again.
    tabs = [b for b in window.findChildren(QTabBar) if b.count() == 2][0]
    names = [tabs.tabText(i) for i in range(tabs.count())]
    tabs.setCurrentIndex(names.index(plugin_module.TEMPLATES_PANEL))
    qtbot.waitUntil(lambda: window.central_view() is window.canvas, timeout=5000)
    tabs.setCurrentIndex(names.index(plugin_module.REVIEW_PANEL))
    qtbot.waitUntil(lambda: window.central_view() is panel.viewer, timeout=5000)


def test_review_continues_after_closing_the_workspace(qtbot, window, specimens, messages, settings):
    from descriptron_sam2pal.app.workspace import Workspace

    plugin, panel, run = _review(qtbot, window, specimens)
    first, second = panel.session.order[:2]
    panel.accept_current()
    panel.reject_current()
    assert (first.state, second.state) == (ACCEPTED, REJECTED)
    messages.answers = [QMessageBox.Discard]
    window.close()  # hides the panel: the review is saved
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)

    again = Workspace(settings=QSettings(settings.fileName(), QSettings.IniFormat))
    qtbot.addWidget(again)
    again.resize(900, 600)
    again.show()
    plugin2 = plugin_module.register(again)
    assert again.open_path(specimens)
    wait_image(qtbot, again, "specimen_01.png")
    panel2 = plugin2.review_panel
    assert panel2.session is None and panel2.offered_review() == run / "review.json"
    assert "2 of 6 reviewed" in panel2.resume_bar.label.text()
    qtbot.mouseClick(panel2.resume_bar.dismiss_button, Qt.LeftButton)  # "Not now"
    again.notify_store_changed()  # an edit of the project does not offer it again
    assert panel2.offered_review() is None
    panel2.resume_bar.show()
    plugin2.review_dock.raise_()
    qtbot.mouseClick(panel2.resume_bar.continue_button, Qt.LeftButton)
    states = {(i.target.file_name, i.structure): i.state for i in panel2.session.items}
    assert states[(first.target.file_name, first.structure)] == ACCEPTED
    assert states[(second.target.file_name, second.structure)] == REJECTED
    assert panel2.session_path == run / "review.json" and panel2.resume_bar.isHidden()
    messages.answers = [QMessageBox.Discard]
    again.close()
