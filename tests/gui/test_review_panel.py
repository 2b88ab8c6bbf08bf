"""ReviewPanel with real widgets (offscreen): keys, filter, canvas, fix by clicks, write-back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PyQt5.QtCore import QSettings, Qt
from PyQt5.QtWidgets import QMessageBox

from descriptron_sam2pal import UserError
from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED, UNREVIEWED
from descriptron_sam2pal.jobs.review_files import review_path_for
from descriptron_sam2pal.gui.review_panel import ReviewPanel
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.masks import box
from tests.helpers.review_results import WORST_FIRST, make_results, write_project


class RecordingHost:
    """The parts of the Host contract the panel uses, recording what it is asked."""

    def __init__(self, store=None):
        self.store = store
        self.errors: list[tuple[str, str]] = []
        self.statuses: list[str] = []
        self.changed = 0
        self.saved = 0
        self.workers = []
        self.fail_save = False

    def show_error(self, title, message, details=""):
        self.errors.append((title, message))

    def show_status(self, message, timeout_ms=5000):
        self.statuses.append(message)

    def notify_store_changed(self):
        self.changed += 1

    def save_store(self):
        if self.fail_save:
            raise UserError("disk full")
        self.saved += 1
        self.store.save()

    def register_worker(self, worker):
        self.workers.append(worker)

    current = None  # the host's current image record

    def current_image(self):
        return self.current

    def set_current_image(self, image_id):
        self.current = self.store.image(image_id)


@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path / "specimens")


def make_panel(qtbot, host, reprompt=None):
    panel = ReviewPanel(host, reprompt=reprompt)
    qtbot.addWidget(panel)
    panel.resize(900, 800)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def wait_image(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.image_loading() and panel.canvas.has_image(), timeout=20000)


@pytest.fixture
def panel(qtbot, project, dialogs):
    host = RecordingHost(AnnotationStore.open(project))
    p = make_panel(qtbot, host)
    p.load_results(make_results(project.parent), predictions_path=project.parent / "predictions.json")
    yield p
    p.set_session(None)
    qtbot.waitUntil(lambda: not p.image_loading(), timeout=20000)


def current(panel):
    item = panel.rows.current_item()
    return (item.target.file_name, item.structure)


def states(panel):
    return {(i.target.file_name, i.structure): i.state for i in panel.session.items}


def test_review_accept_reject_undo_by_keys(qtbot, panel):
    assert [(r.target.file_name, r.structure) for r in panel.model.rows] == WORST_FIRST
    assert current(panel) == WORST_FIRST[0]
    assert panel.counts_label.text() == "0 of 9 reviewed: 0 accepted, 0 rejected"

    qtbot.keyClick(panel, Qt.Key_A)  # accept, go to the next
    assert states(panel)[WORST_FIRST[0]] == ACCEPTED and current(panel) == WORST_FIRST[1]
    assert panel.host.current.file_name == WORST_FIRST[1][0]  # the host shows the same specimen
    qtbot.keyClick(panel.table, Qt.Key_R)  # the table has the focus normally
    assert states(panel)[WORST_FIRST[1]] == REJECTED and current(panel) == WORST_FIRST[2]
    qtbot.keyClick(panel, Qt.Key_Down)
    qtbot.keyClick(panel, Qt.Key_Down)
    assert current(panel) == WORST_FIRST[4]
    qtbot.keyClick(panel, Qt.Key_Up)
    assert current(panel) == WORST_FIRST[3]
    qtbot.keyClick(panel.table, Qt.Key_Right)
    qtbot.keyClick(panel.table, Qt.Key_Left)
    assert current(panel) == WORST_FIRST[3]
    assert panel.counts_label.text() == "2 of 9 reviewed: 1 accepted, 1 rejected"
    assert panel.model.data(panel.model.index(1, 3)) == "\u2718 Rejected"

    qtbot.keyClick(panel, Qt.Key_Z, Qt.ControlModifier)  # undo the reject, back to that item
    assert states(panel)[WORST_FIRST[1]] == UNREVIEWED and current(panel) == WORST_FIRST[1]
    qtbot.keyClick(panel.table, Qt.Key_Z, Qt.ControlModifier)
    assert states(panel)[WORST_FIRST[0]] == UNREVIEWED and current(panel) == WORST_FIRST[0]
    assert panel.counts_label.text() == "0 of 9 reviewed: 0 accepted, 0 rejected"
    assert not panel.undo_button.isEnabled()

    # Shift+A: the specimen's structures not reviewed yet, in one undoable step.
    panel.rows.select(
        next(i for i in panel.session.items if (i.target.file_name, i.structure) == ("ant_02.png", "eye"))
    )
    qtbot.keyClick(panel, Qt.Key_R)
    panel.rows.select(
        next(i for i in panel.session.items if (i.target.file_name, i.structure) == ("ant_02.png", "head"))
    )
    qtbot.keyClick(panel, Qt.Key_A, Qt.ShiftModifier)
    assert {s: st for (f, s), st in states(panel).items() if f == "ant_02.png"} == {
        "scape": ACCEPTED,
        "eye": REJECTED,
        "head": ACCEPTED,
    }
    qtbot.keyClick(panel, Qt.Key_Z, Qt.ControlModifier)
    assert {s: st for (f, s), st in states(panel).items() if f == "ant_02.png"} == {
        "scape": UNREVIEWED,
        "eye": REJECTED,
        "head": UNREVIEWED,
    }


def test_buttons_say_their_keys(panel):
    for b in (
        panel.accept_button,
        panel.reject_button,
        panel.undo_button,
        panel.fix_button,
        panel.accept_specimen_button,
        panel.reject_specimen_button,
    ):
        assert "(" in b.text() and b.toolTip()


def test_filter_shows_one_state_and_moves_on(qtbot, panel):
    panel.rows.set_filter(UNREVIEWED)
    assert len(panel.model.rows) == 9
    qtbot.keyClick(panel, Qt.Key_A)
    assert len(panel.model.rows) == 8 and current(panel) == WORST_FIRST[1]  # the next one to review
    qtbot.keyClick(panel, Qt.Key_R)
    panel.rows.set_filter(ACCEPTED)
    assert [(r.target.file_name, r.structure) for r in panel.model.rows] == [WORST_FIRST[0]]
    panel.rows.set_filter(REJECTED)
    assert [(r.target.file_name, r.structure) for r in panel.model.rows] == [WORST_FIRST[1]]
    qtbot.keyClick(panel, Qt.Key_Z, Qt.ControlModifier)  # back to unreviewed: leaves this view
    assert panel.model.rows == [] and panel.rows.current_item() is None
    qtbot.keyClick(panel, Qt.Key_A)  # nothing selected: nothing happens
    assert panel.session.counts()[ACCEPTED] == 1


def test_canvas_highlights_the_structure_and_dims_the_others(qtbot, panel):
    panel.rows.select(
        next(i for i in panel.session.items if (i.target.file_name, i.structure) == ("ant_01.png", "eye"))
    )
    wait_image(qtbot, panel)
    assert panel.canvas.image_shape() == (60, 80)
    shown = panel.canvas.masks()
    assert list(shown) == ["eye"] and np.array_equal(shown["eye"], box(60, 80, 40, 50, 50, 70))
    dim = panel.viewer.dim_item.image
    bright = panel.canvas.overlay_rgba()
    assert dim is not None and dim[20, 25, 3] > 0  # ant_01 scape, dimmed
    assert dim[20, 25, 3] < bright[45, 60, 3]
    assert "ant_01.png" in panel.viewer.title_label.text() and "eye" in panel.viewer.title_label.text()
    assert panel.viewer.state_label.text() == "To review"
    # An absent structure: a message, no outline.
    panel.rows.select(panel.session.visible()[0])
    wait_image(qtbot, panel)
    assert panel.canvas.masks() == {} and "absent" in panel.viewer.title_label.text()


def test_fix_by_clicks_reprompts_and_undoes(qtbot, project, dialogs):
    calls = []

    def reprompt(image_id, points, labels):
        calls.append((image_id, list(points), list(labels)))
        x, y = points[0]
        m = box(60, 80, int(y) - 3, int(y) + 4, int(x) - 3, int(x) + 4)
        for (px, py), lab in zip(points, labels):
            if lab == 0:
                m[int(py), int(px)] = False
        return m

    host = RecordingHost(AnnotationStore.open(project))
    panel = make_panel(qtbot, host, reprompt)
    panel.load_results(make_results(project.parent))
    item = next(i for i in panel.session.items if (i.target.file_name, i.structure) == ("ant_01.png", "eye"))
    panel.rows.select(item)
    wait_image(qtbot, panel)
    qtbot.keyClick(panel, Qt.Key_F)
    assert panel.fix_mode and panel.fix_button.isChecked()
    vp = panel.canvas.view.viewport()
    qtbot.mouseClick(vp, Qt.LeftButton, pos=panel.canvas.map_to_widget(30.5, 20.5))
    qtbot.waitUntil(lambda: item.corrected and not panel.reprompt_running(), timeout=5000)
    qtbot.mouseClick(vp, Qt.RightButton, pos=panel.canvas.map_to_widget(31.5, 21.5))
    qtbot.waitUntil(lambda: len(item.points) == 2 and not panel.reprompt_running(), timeout=5000)
    assert calls[0][0] == item.target.image_id and calls[-1][2] == [1, 0]
    assert [(int(x), int(y)) for x, y in calls[-1][1]] == [(30, 20), (31, 21)]
    assert item.current_mask[20, 30] and not item.current_mask[21, 31]
    assert np.array_equal(panel.canvas.masks()["eye"], item.current_mask)
    assert len(panel.canvas.points()) == 2
    assert "(fixed)" in panel.model.data(panel.model.index(panel.rows.current_row(), 3))
    qtbot.keyClick(panel, Qt.Key_Z, Qt.ControlModifier)  # undoes the last click
    assert len(item.points) == 1 and item.current_mask[21, 31]
    qtbot.keyClick(panel, Qt.Key_Z, Qt.ControlModifier)
    assert not item.corrected and np.array_equal(panel.canvas.masks()["eye"], item.mask)
    assert not panel.fix_mode  # undo leaves fix mode
    assert host.errors == []
    panel.set_session(None)
    qtbot.waitUntil(lambda: not panel.image_loading(), timeout=20000)


def test_fix_is_disabled_without_a_model(qtbot, panel):
    assert not panel.fix_button.isEnabled() and "model" in panel.fix_button.toolTip()
    qtbot.keyClick(panel, Qt.Key_F)
    assert not panel.fix_mode


def _accept(panel, *keys):
    for key in keys:
        panel.session.accept(next(i for i in panel.session.items if (i.target.file_name, i.structure) == key))


def test_write_back_changes_the_store_exactly_as_reviewed(qtbot, panel, project, dialogs):
    before = json.loads(project.read_text())
    qtbot.keyClick(panel, Qt.Key_R)  # beetle eye (absent): rejected
    qtbot.keyClick(panel, Qt.Key_A)  # ant_02 head: accepted
    qtbot.keyClick(panel, Qt.Key_A)  # ant_01 eye: accepted
    qtbot.keyClick(panel, Qt.Key_R)  # beetle scape: rejected
    # the rest stays unreviewed
    dialogs.answers = [QMessageBox.Cancel]
    panel.write_back()
    assert panel.host.changed == 0 and not panel.host.store.is_dirty
    dialogs.answers = [QMessageBox.Save]
    with qtbot.waitSignal(panel.written_back) as sig:
        panel.write_back()
    assert (
        dialogs.seen[-1][0] == "Write back to Descriptron" and "2 accepted structures" in dialogs.seen[-1][1]
    )
    assert panel.host.changed == 1 and panel.host.saved == 1 and panel.host.errors == []
    assert len(sig.args[0].written) == 2

    after = json.loads(project.read_text())
    old_ids = {a["id"] for a in before["annotations"]}
    assert [a for a in after["annotations"] if a["id"] in old_ids] == before["annotations"]
    assert after["images"] == before["images"]  # nothing marked absent: that one was rejected
    cats = {c["id"]: c["name"] for c in after["categories"]}
    names = {i["id"]: i["file_name"] for i in after["images"]}
    new = {
        (names[a["image_id"]], cats[a["category_id"]]): a
        for a in after["annotations"]
        if a["id"] not in old_ids
    }
    assert set(new) == {("ant_02.png", "head"), ("ant_01.png", "eye")}
    written_attributes = dict(new[("ant_02.png", "head")]["attributes"])
    assert written_attributes.pop("sam2pal_fingerprint").startswith("v2:")  # what we wrote (provenance)
    assert written_attributes == {
        "source": "sam2pal",
        "score": 0.31,
        "object_score": 0.7,
        "predicted_iou": 0.88,
        "reviewed": "accepted",
        "corrected": False,
    }
    assert "in project" in panel.model.data(panel.model.index(1, 3))
    # Written items are locked; the session file knows they are written.
    panel.rows.select(panel.model.rows[1])
    assert not panel.accept_button.isEnabled() and not panel.write_button.isEnabled()
    saved = json.loads(review_path_for(project.parent / "predictions.json").read_text())
    assert sum(1 for e in saved["items"] if e["written"]) == 2


def test_write_back_problems_are_shown_and_the_panel_stays_usable(qtbot, panel, project, dialogs):
    qtbot.keyClick(panel, Qt.Key_A)
    qtbot.keyClick(panel, Qt.Key_A)
    store = panel.host.store
    panel.host.store = None
    panel.write_back()
    assert panel.host.errors[-1][0] == "Write back" and "No Descriptron project" in panel.host.errors[-1][1]
    panel.host.store = store
    panel.host.fail_save = True
    dialogs.answers = [QMessageBox.Save]
    panel.write_back()
    assert "could not be saved" in panel.host.errors[-1][1] and store.is_dirty  # in memory, safe
    assert panel.host.changed == 1
    qtbot.keyClick(panel, Qt.Key_R)  # still works
    assert panel.session.counts()[REJECTED] == 1


def test_write_back_reports_what_it_could_not_write(qtbot, panel, dialogs):
    _accept(panel, ("ant_01.png", "scape"), ("ant_02.png", "eye"))  # the store has ant_01's scape
    panel._update_actions()
    dialogs.answers = [QMessageBox.Apply, QMessageBox.Ok]
    panel.write_back()
    assert panel.host.saved == 0 and panel.host.changed == 1
    assert dialogs.seen[-1][0] == "Write back" and "already outlined" in dialogs.seen[-1][1]
    panel.replace_existing = True
    dialogs.answers = [QMessageBox.Apply]
    panel.write_back()
    assert panel.session.counts()["written"] == 2


def test_review_is_saved_and_continues_after_closing(qtbot, project, dialogs):
    preds = project.parent / "predictions.json"
    host = RecordingHost(AnnotationStore.open(project))
    panel = make_panel(qtbot, host)
    panel.load_results(make_results(project.parent), predictions_path=preds)
    assert review_path_for(preds).is_file()
    qtbot.keyClick(panel, Qt.Key_A)
    qtbot.keyClick(panel, Qt.Key_R)
    panel.hide()  # the dock closes: saved at once
    qtbot.waitUntil(lambda: not panel.image_loading(), timeout=20000)
    data = json.loads(review_path_for(preds).read_text())
    assert sorted(e["state"] for e in data["items"] if e["state"] != UNREVIEWED) == [ACCEPTED, REJECTED]
    preds.write_text("{}")  # the saved review is preferred over re-reading the predictions

    again = make_panel(qtbot, RecordingHost())
    assert again.open_predictions(preds) is not None
    assert again.counts_label.text() == "2 of 9 reviewed: 1 accepted, 1 rejected"
    assert (
        again.rows.current_row() == 2 and current(again) == WORST_FIRST[2]
    )  # still worst first, where it stopped
    assert again.rows.current_item().state == UNREVIEWED
    bad = project.parent / "nothing.json"
    bad.write_text("not json")
    assert again.open_predictions(bad) is None and again.host.errors[-1][0] == "Cannot open the predictions"
    assert again.session.counts()["reviewed"] == 2  # the current review stays


def test_continue_selects_the_row_where_the_reviewer_stopped(qtbot, project, dialogs):
    """Continue goes back to the specimen the reviewer was at (not row 1), also after jumping
    about; a review saved without a position starts at the first unreviewed row."""
    preds = project.parent / "predictions.json"
    panel = make_panel(qtbot, RecordingHost(AnnotationStore.open(project)))
    panel.load_results(make_results(project.parent), predictions_path=preds)
    for _ in range(3):
        qtbot.keyClick(panel, Qt.Key_A)
    panel.rows.select(panel.model.rows[6])  # looked further down, then stopped there
    qtbot.keyClick(panel, Qt.Key_R)
    stopped = panel.rows.current_item()
    assert current(panel) == WORST_FIRST[7]
    panel.hide()
    qtbot.waitUntil(lambda: not panel.image_loading(), timeout=20000)

    again = make_panel(qtbot, RecordingHost(AnnotationStore.open(project)))
    again.host.store = AnnotationStore.open(project)
    assert again.open_predictions(preds) is not None
    assert current(again) == (stopped.target.file_name, stopped.structure) and again.rows.current_row() == 7

    data = json.loads(review_path_for(preds).read_text())
    del data["position"]  # a review saved by an earlier version
    review_path_for(preds).write_text(json.dumps(data))
    third = make_panel(qtbot, RecordingHost())
    assert third.open_predictions(preds) is not None
    assert third.rows.current_row() == 3 and third.rows.current_item().state == UNREVIEWED


def test_add_as_template_sends_the_specimens_outlines(qtbot, panel):
    item = next(i for i in panel.session.items if (i.target.file_name, i.structure) == ("ant_02.png", "eye"))
    panel.rows.select(item)
    qtbot.keyClick(panel, Qt.Key_R)
    panel.rows.select(item)
    with qtbot.waitSignal(panel.template_requested) as sig:
        panel.add_as_template()
    image_id, path, masks = sig.args
    assert image_id == item.target.image_id and path == item.target.path
    assert sorted(masks) == ["head", "scape"]


def test_in_the_workspace_keys_win_over_the_hosts_shortcuts(qtbot, project, dialogs, tmp_path):
    from descriptron_sam2pal.app.workspace import Workspace

    win = Workspace(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    triggered = []
    win.add_menu_action("Edit", "Undo something", lambda: triggered.append(1), shortcut="Ctrl+Z")
    win.show()
    qtbot.waitExposed(win)
    assert win.open_path(project.parent)
    panel = ReviewPanel(win)
    win.add_dock_panel("Review", panel)
    panel.load_results(make_results(project.parent, win.store))
    # The main view follows the reviewed specimen (never two different specimens on screen).
    reviewed = panel.rows.current_item().target.file_name
    qtbot.waitUntil(
        lambda: win.current_image() is not None and win.current_image().file_name == reviewed, timeout=5000
    )
    panel.table.setFocus()
    win.activateWindow()
    qtbot.waitUntil(lambda: panel.table.hasFocus(), timeout=3000)
    qtbot.keyClick(panel.table, Qt.Key_A)
    qtbot.keyClick(panel.table, Qt.Key_Z, Qt.ControlModifier)
    assert triggered == [] and panel.session.counts()["reviewed"] == 0
    qtbot.keyClick(panel.table, Qt.Key_A)
    qtbot.keyClick(panel.table, Qt.Key_A)
    dialogs.answers = [QMessageBox.Apply]
    panel.write_back()
    assert win.is_modified()  # the host knows; its Save writes the structures
    assert win.store.structure_masks(win.store.image_by_file("ant_02.png").id).keys() >= {"head"}
    win._save_from_menu()
    assert not win.is_modified()
    panel.set_session(None)
    qtbot.waitUntil(lambda: not panel.image_loading(), timeout=20000)
    dialogs.answers = [QMessageBox.Discard]
    win.close()
    win.image_loader.wait(5000)


def test_a_polygon_drawn_over_a_prediction_replaces_it_and_specks_are_never_written(
    qtbot, panel, project, dialogs
):
    """Fixing by hand in the Review: the first polygon is the new outline (not added to the
    prediction), the next ones add parts; a speck left in the outline is not written."""
    from descriptron_sam2pal.imaging.drawing import polygon_to_mask

    item = next(i for i in panel.session.items if (i.target.file_name, i.structure) == ("ant_02.png", "head"))
    panel.rows.select(item)
    wait_image(qtbot, panel)
    predicted = item.current_mask.copy()
    assert predicted[30, 50]

    def draw(points):
        for x, y in [*points, points[0]]:  # a click on the first vertex closes it
            qtbot.mouseClick(
                panel.canvas.view.viewport(), Qt.LeftButton, pos=panel.canvas.map_to_widget(x, y)
            )

    panel.tools.set_tool("polygon")
    first = [(4.0, 4.0), (24.0, 4.0), (24.0, 14.0), (4.0, 14.0)]
    draw(first)

    def about(mask, expected):  # clicks land on whole screen pixels: the outline is within a pixel
        return (mask & expected).sum() / (mask | expected).sum() > 0.75

    assert about(item.current_mask, polygon_to_mask(first, predicted.shape))  # replaced:
    assert not item.current_mask[30, 50] and item.current_mask.sum() < 300  # nothing of the prediction
    assert any("replaced the prediction" in s for s in panel.host.statuses)
    second = [(40.0, 30.0), (60.0, 30.0), (60.0, 40.0), (40.0, 40.0)]
    draw(second)
    both = polygon_to_mask(first, predicted.shape) | polygon_to_mask(second, predicted.shape)
    assert about(item.current_mask, both) and item.current_mask[9, 14] and item.current_mask[35, 50]  # added
    both = item.current_mask.copy()
    panel.undo()
    panel.undo()
    assert np.array_equal(item.current_mask, predicted)  # the prediction is back

    specked = both.copy()
    specked[47, 2] = True
    panel.session.edit(item, specked, "brush")
    panel.rows.select(item)
    qtbot.keyClick(panel, Qt.Key_A)
    dialogs.answers = [QMessageBox.Save]
    panel.write_back()
    after = json.loads(project.read_text())
    [written] = [a for a in after["annotations"] if a.get("attributes", {}).get("source") == "sam2pal"]
    assert len(written["segmentation"]) == 2 and written["area"] == int(both.sum())


def test_the_score_has_one_name_everywhere(qtbot, panel):
    """The column, the title over the photo, the tooltip and the Worst-first button all say Score."""
    qtbot.keyClick(panel, Qt.Key_Down)  # ant_02 / head, 0.31
    assert current(panel) == WORST_FIRST[1]
    header = panel.model.headerData(2, Qt.Horizontal, Qt.DisplayRole)
    assert header == "Score"
    assert "(Score 0.31)" in panel.viewer.title_label.text()
    assert "Score (estimated IoU): 0.310" in panel.viewer.title_label.toolTip()
    assert "Score" in panel.worst_first_button.toolTip()
    texts = [
        panel.viewer.title_label.text(),
        panel.viewer.title_label.toolTip(),
        panel.worst_first_button.toolTip(),
        panel.model.headerData(2, Qt.Horizontal, Qt.ToolTipRole) or "",
    ]
    assert not any("confidence" in t.lower() or "review score" in t.lower() for t in texts)
