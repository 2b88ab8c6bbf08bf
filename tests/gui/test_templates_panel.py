"""Templates panel: clicks on the real canvas -> SAM2 proposal -> a named structure in the store."""

import numpy as np
from PyQt5.QtCore import Qt

from descriptron_sam2pal.gui.model_session import ModelSession
from descriptron_sam2pal.imaging.drawing import drop_fragments
from descriptron_sam2pal.jobs.models import DEMO_CHOICE
from descriptron_sam2pal.store.provenance import TEMPLATE_SOURCE, template_images
from descriptron_sam2pal.gui.templates_panel import TemplatesPanel
from tests.helpers.plugin_gui import drag_on, wait_image


def _click(qtbot, window, x, y, button=Qt.LeftButton):
    canvas = window.canvas
    qtbot.mouseClick(canvas.view.viewport(), button, pos=canvas.map_to_widget(x, y))


def _ready(qtbot, panel):
    qtbot.waitUntil(lambda: panel.session.is_ready and panel._encoder is None
                    and panel._encoded_id is not None, timeout=30000)


def _answered(qtbot, panel):
    """SAM2 answers clicks in the background: wait until nothing runs or waits."""
    qtbot.waitUntil(lambda: not panel.prompter.busy, timeout=30000)


def _open(qtbot, window, specimens, session):
    assert window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    panel = TemplatesPanel(window, session)
    window.add_dock_panel("SAM2-PAL Templates", panel)
    return panel


def test_clicks_make_a_mask_and_accept_saves_a_named_structure(qtbot, window, specimens, session):
    panel = _open(qtbot, window, specimens, session)
    assert "scape" in [panel.name_combo.itemText(i) for i in range(panel.name_combo.count())]
    panel.set_active(True)
    assert window.canvas.box_mode  # a plain drag now draws a box
    _ready(qtbot, panel)
    _click(qtbot, window, 50, 35)
    _answered(qtbot, panel)
    assert panel.proposal is not None or panel.prompts.points() == [(50.0, 35.0, True)] \
        or panel.prompts.points()[0][:2] == (50.5, 35.5)
    # the random mini model may propose nothing for one click; a box always gives it more to go on
    if panel.proposal is None:
        window.canvas.box_drawn.emit(25.0, 15.0, 90.0, 55.0)
        _answered(qtbot, panel)
    assert panel.proposal is not None
    assert panel.proposal.shape == (72, 112)
    assert any(n.endswith("proposal") for n in window.canvas.masks())
    _click(qtbot, window, 5, 5, Qt.RightButton)
    _answered(qtbot, panel)
    assert len(panel.prompts.points()) >= 1 and not panel.prompts.points()[-1][2]
    assert session.loaded.encoder.encoder_passes == 1  # clicks only run the decoder

    panel.name_combo.setEditText("antenna")
    assert "antenna (proposal)" in window.canvas.masks()  # the overlay follows the name
    proposal = panel.proposal.copy()
    qtbot.mouseClick(panel.accept_button, Qt.LeftButton)
    store = window.store
    record = window.current_image()
    masks = store.structure_masks(record.id)
    assert np.array_equal(masks["antenna"], drop_fragments(proposal))  # the random model's specks stay out
    ann = [a for a in store.annotations_for(record.id) if a.category == "antenna"][0]
    assert ann.raw["attributes"]["source"] == TEMPLATE_SOURCE
    assert store.is_dirty and window.isWindowModified()
    assert not any(n.endswith("proposal") for n in window.canvas.masks())
    assert "antenna" in window.canvas.masks()
    assert [r.file_name for r, _ in template_images(store)] == ["specimen_01.png"]
    assert panel.template_list.count() == 1 and "antenna" in panel.template_list.item(0).text()

    # Undo with no clicks pending takes the accepted structure back out.
    panel.undo()
    assert "antenna" not in store.structure_masks(record.id)
    assert panel.template_list.count() == 0


def test_undo_takes_back_clicks_and_a_new_image_starts_fresh(qtbot, window, specimens, session):
    panel = _open(qtbot, window, specimens, session)
    panel.set_active(True)
    _ready(qtbot, panel)
    window.canvas.clicked.emit(50.0, 35.0, "left")
    window.canvas.clicked.emit(60.0, 40.0, "left")
    assert len(panel.prompts.points()) == 2
    panel.undo()
    assert len(panel.prompts.points()) == 1
    panel.undo()
    assert not panel.prompts and panel.proposal is None
    assert not panel.accept_button.isEnabled()

    window.set_current_image(window.images()[1].id)
    wait_image(qtbot, window, "specimen_02.png")
    qtbot.waitUntil(lambda: panel._encoded_id == window.images()[1].id and panel._encoder is None,
                    timeout=30000)
    window.canvas.box_drawn.emit(25.0, 15.0, 90.0, 55.0)
    _answered(qtbot, panel)
    assert panel.proposal is not None and panel.proposal.shape == (76, 112)
    assert session.loaded.encoder.encoder_passes == 2


def test_no_checkpoint_offers_the_choices_and_the_demo_model(qtbot, window, specimens, settings, monkeypatch,
                                                             tmp_path):
    monkeypatch.setenv("DESCRIPTRON_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.delenv("DESCRIPTRON_SAM2_CHECKPOINT", raising=False)
    monkeypatch.chdir(tmp_path)
    session = ModelSession(window, settings, image_size=128)
    panel = _open(qtbot, window, specimens, session)
    assert session.checkpoint_choice() is None
    assert "No SAM2 checkpoint found" in panel.picker.label.text()
    panel.set_active(True)
    assert "No SAM2 checkpoint" in panel.status.text()
    panel.picker.demo_button.click()
    assert session.is_demo and "not for real work" in panel.picker.label.text()
    assert settings.value("sam2pal/checkpoint") == DEMO_CHOICE  # remembered
    assert ModelSession(window, settings).checkpoint_choice() == DEMO_CHOICE
    panel._prepare()
    _ready(qtbot, panel)
    assert session.loaded.model.checkpoint_hash is None


def test_reviewed_predictions_written_back_are_not_templates(specimens):
    from descriptron_sam2pal.store import AnnotationStore

    store = AnnotationStore.open(specimens)
    first, second, third = store.images[:3]

    def mask(record):
        m = np.zeros((record.height, record.width), bool)
        m[20:40, 30:60] = True
        return m
    store.add_structure(first.id, "eye", mask(first))  # the user's own outline
    store.add_structure(second.id, "eye", mask(second), attributes={"source": TEMPLATE_SOURCE})
    store.add_structure(third.id, "eye", mask(third), attributes={"source": "sam2pal", "score": 0.9})
    assert [r.file_name for r, _ in template_images(store)] == [first.file_name, second.file_name]


def _drag(qtbot, window, points):
    drag_on(qtbot, window.canvas, points)


def test_drawn_polygon_template_without_a_model_then_training(qtbot, window, specimens, settings, messages,
                                                              mini_checkpoint):
    """No checkpoint chosen: a polygon, a brush stroke, an eraser stroke, fill holes and vertex edits
    make the template; undo/redo step through them; the template then trains the mini model."""
    no_model = ModelSession(window, settings, image_size=128)
    panel = _open(qtbot, window, specimens, no_model)
    tools, bar = panel.tools, panel.toolbar
    assert tools is not None
    qtbot.waitUntil(bar.isVisible, timeout=5000)
    assert "(P)" in bar.buttons["polygon"].toolTip() and "(B)" in bar.buttons["brush"].toolTip()
    qtbot.keyClick(window, Qt.Key_P)  # the shortcut
    assert tools.tool == "polygon" and bar.buttons["polygon"].isChecked()
    for x, y in [(30, 20), (80, 20), (80, 50)]:
        _click(qtbot, window, x, y)
    assert len(tools.polygon) == 3 and panel.proposal is None
    _click(qtbot, window, 30, 50)
    qtbot.keyClick(window.canvas.view, Qt.Key_Backspace)  # takes back the last vertex
    assert len(tools.polygon) == 3
    _click(qtbot, window, 30, 50)
    _click(qtbot, window, 30.2, 20.2)  # on the first vertex: closes it (as Enter on the canvas does)
    assert tools.polygon == [] and panel.proposal is not None
    drawn = panel.proposal.copy()
    assert drawn[25:45, 35:75].all() and not drawn[5:15].any()
    assert "proposal" in window.canvas.masks()  # no name yet

    bar.buttons["eraser"].click()
    bar.size_spin.setValue(3)
    _drag(qtbot, window, [(50, 25), (50, 35), (50, 45)])
    assert not panel.proposal[35, 50] and panel.proposal[35, 40]  # a cut through the middle
    bar.buttons["brush"].click()
    _drag(qtbot, window, [(90, 30), (100, 30)])
    assert panel.proposal[30, 95]
    panel.undo()  # the brush stroke
    assert not panel.proposal[30, 95]
    panel.redo()
    assert panel.proposal[30, 95]
    panel.undo()
    panel.undo()  # the eraser stroke
    assert np.array_equal(panel.proposal, drawn)

    hole = panel.proposal.copy()
    hole[30:34, 60:64] = False
    tools.edited.emit(hole, "eraser")  # as if erased inside
    assert panel.proposal[31, 61] == False  # noqa: E712
    qtbot.keyClick(window, Qt.Key_H)
    assert panel.proposal[31, 61]

    qtbot.keyClick(window, Qt.Key_V)
    assert tools.tool == "vertices" and len(tools.vertex_polygons) == 1
    before = panel.proposal.sum()
    corner = max(tools.vertex_polygons[0], key=lambda p: p[0] + p[1])  # bottom right
    _drag(qtbot, window, [corner, (corner[0] + 10, corner[1] + 10)])
    assert panel.proposal.sum() > before

    panel.name_combo.setEditText("pronotum")
    qtbot.keyClick(panel.name_combo.lineEdit(), Qt.Key_Return)  # Enter accepts, even with a tool on
    record = window.current_image()
    assert "pronotum" in window.store.structure_masks(record.id)
    assert [r.file_name for r, _ in template_images(window.store)] == ["specimen_01.png"]
    assert messages.seen == []

    # The drawn template trains (a few steps of the mini model, as in test_train_dialog).
    from descriptron_sam2pal.gui.train_dialog import TrainDialog
    trained = ModelSession(window, settings, image_size=128)
    trained.set_checkpoint(str(mini_checkpoint))
    results = []
    dialog = TrainDialog(window, trained, on_results=lambda r, run_dir: results.append(r))
    dialog.advanced_box.setChecked(True)
    dialog.device_combo.setCurrentText("cpu")
    dialog.steps_spin.setValue(2)  # after the device: choosing one sets its preset's steps
    assert dialog.size_spin.value() == 128
    assert "pronotum" in dialog.template_list.item(0).text()
    dialog.propagate_after.setChecked(False)
    dialog.start_training()
    qtbot.waitUntil(lambda: dialog.monitor.worker is None, timeout=90000)
    assert (dialog.run_dir / "adapter.pt").is_file() and messages.seen == []
    assert "Training finished" in dialog.monitor.log_view.toPlainText()


def test_refine_a_drawn_outline_with_sam2_then_go_back(qtbot, window, specimens, session, messages):
    """Refine (S): the drawn outline's box and inner points prompt SAM2; the result is a proposal
    that "Back to my outline" (or Ctrl+Z) discards."""
    panel = _open(qtbot, window, specimens, session)
    tools = panel.tools
    tools.set_tool("polygon")
    for x, y in [(30, 20), (80, 20), (80, 50), (30, 50)]:
        _click(qtbot, window, x, y)
    assert tools.finish_polygon()
    drawn = panel.proposal.copy()
    panel.refine()  # SAM2 loads and reads the image in the background, then refines
    qtbot.waitUntil(lambda: panel.history.tag == "refine", timeout=30000)
    assert panel.history.tag == "refine" and not np.array_equal(panel.proposal, drawn)
    assert panel.discard_refine_button.isVisible()
    qtbot.mouseClick(panel.discard_refine_button, Qt.LeftButton)
    assert np.array_equal(panel.proposal, drawn) and not panel.discard_refine_button.isVisible()
    assert messages.seen == []


def test_a_click_on_a_thin_part_is_answered_from_a_close_up(qtbot, window, specimens, session, monkeypatch):
    """The panel's clicks go through the zoom-in pass: with every first pass counted as thin,
    the proposal is the close-up's mask, nothing outside its window."""
    from descriptron_sam2pal.engine import zoom_in

    monkeypatch.setattr(zoom_in, "THIN", float("inf"))
    panel = _open(qtbot, window, specimens, session)
    panel.set_active(True)
    _ready(qtbot, panel)
    window.canvas.box_drawn.emit(25.0, 15.0, 90.0, 55.0)
    _answered(qtbot, panel)
    segmenter = session.loaded.segmenter
    assert isinstance(segmenter, zoom_in.ZoomInSegmenter) and segmenter.last_window is not None
    y0, x0, y1, x1 = segmenter.last_window
    assert panel.proposal is not None and panel.proposal.shape == (72, 112)
    outside = panel.proposal.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any() and segmenter.crop.encoder.encoder_passes == 1
