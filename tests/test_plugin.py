"""register(host) on the real standalone workspace: the menu action, the panels, the hand-offs."""

import numpy as np
from PyQt5.QtWidgets import QDockWidget

from descriptron_sam2pal import plugin as plugin_module
from descriptron_sam2pal.host.api import PluginLoadResult, load_plugins
from tests.helpers.plugin_gui import wait_image


def _actions(window, menu_title):
    for action in window.menuBar().actions():
        if action.menu() is not None and action.text().replace("&", "") == menu_title:
            return {a.text(): a for a in action.menu().actions()}
    return None


def test_register_adds_the_menu_action_and_panels(qtbot, window, specimens):
    plugin = plugin_module.register(window)
    actions = _actions(window, "SAM2-PAL")
    assert actions is not None and plugin_module.TRAIN_ACTION in actions
    docks = {d.windowTitle(): d for d in window.findChildren(QDockWidget)}
    assert docks[plugin_module.TEMPLATES_PANEL].widget() is plugin.templates_panel
    if plugin.review_panel is not None:
        assert docks[plugin_module.REVIEW_PANEL].widget() is plugin.review_panel
    assert plugin.session.loaded is None  # nothing heavy at registration

    window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    actions[plugin_module.TRAIN_ACTION].trigger()
    dialog = plugin.train_dialog
    assert dialog is not None and dialog.isVisible() and dialog.session is plugin.session
    assert "(4)" in dialog.project_radio.text()
    dialog.close()


def test_the_entry_point_loads_through_the_contract(qtbot, window):
    class EntryPoint:
        name, value = "sam2pal", "descriptron_sam2pal.plugin:register"

        def load(self):
            return plugin_module.register

    results = load_plugins(window, [EntryPoint()])
    assert results == [PluginLoadResult("sam2pal", "descriptron_sam2pal.plugin:register", True)]


def test_results_reach_the_review_panel_and_templates_come_back(qtbot, window, specimens, tmp_path):
    plugin = plugin_module.register(window)
    window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    from descriptron_sam2pal.engine.results import StructureResult, TargetResult
    record = window.images()[1]
    mask = np.zeros((record.height, record.width), bool)
    mask[10:30, 20:60] = True
    result = TargetResult(record.id, str(record.path), record.height, record.width,
                          {"eye": StructureResult("eye", True, mask, 0.8, 0.9, 0.7)})
    plugin.show_results([result], tmp_path / "run")
    if plugin.review_panel is not None:
        assert plugin.review_panel.session is not None
    plugin.add_template(record.id, record.path, {"eye": mask})
    assert np.array_equal(window.store.structure_masks(record.id)["eye"], mask)
    assert plugin.templates_panel.template_list.count() == 1


def test_suggest_next_template_opens_the_least_certain_specimen_in_templates(
    qtbot, window, specimens, tmp_path
):
    plugin = plugin_module.register(window)
    window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    from descriptron_sam2pal.engine.results import StructureResult, TargetResult

    results = []
    for record, score in zip(window.images()[1:], (0.9, 0.2, 0.6)):
        mask = np.zeros((record.height, record.width), bool)
        mask[10:30, 20:60] = True
        results.append(TargetResult(record.id, str(record.path), record.height, record.width,
                                    {"eye": StructureResult("eye", True, mask, score, 0.9, 0.7),
                                     "scape": StructureResult("scape", True, mask, score, 0.9, 0.7)}))
    plugin.show_results(results, tmp_path / "run")
    plugin.templates_dock.hide()
    _actions(window, "SAM2-PAL")[plugin_module.SUGGEST_ACTION].trigger()
    dialog = plugin.next_template_dialog
    assert [dialog.list.item(i).text().split(":")[0] for i in range(dialog.list.count())] == [
        "specimen_03.png", "specimen_04.png", "specimen_02.png"]
    assert "80% unsure" in dialog.list.item(0).text() and "eye, scape" in dialog.list.item(0).text()
    dialog.open_button.click()
    qtbot.waitUntil(lambda: window.current_image() is not None
                    and window.current_image().file_name == "specimen_03.png", timeout=5000)
    assert plugin.templates_dock.isVisible() and not dialog.isVisible()


def test_suggest_next_template_leaves_out_accepted_specimens_and_its_reasons_fit(qtbot, window, specimens,
                                                                                 tmp_path):
    """A specimen whose structures are all accepted is not suggested; accepted structures count as
    certain; each reason wraps within the list (never cut off at the side)."""
    from PyQt5.QtCore import QRect, Qt

    plugin = plugin_module.register(window)
    window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    from descriptron_sam2pal.engine.results import StructureResult, TargetResult

    results = []
    for record, score in zip(window.images()[1:], (0.9, 0.2, 0.6)):
        mask = np.zeros((record.height, record.width), bool)
        mask[10:30, 20:60] = True
        results.append(TargetResult(record.id, str(record.path), record.height, record.width,
                                    {name: StructureResult(name, True, mask, score, 0.9, 0.7)
                                     for name in ("eye", "scape", "pronotum", "elytra", "mesothoracic_leg")}))
    plugin.show_results(results, tmp_path / "run")
    review = plugin.review_panel.session
    for item in review.items:
        if item.target.path.endswith("specimen_03.png"):  # the least certain, all five accepted
            review.accept(item)
        elif item.target.path.endswith("specimen_04.png") and item.structure in ("eye", "scape"):
            review.accept(item)
    dialog = plugin.suggest_next_template()
    texts = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert [t.split(":")[0] for t in texts] == ["specimen_04.png", "specimen_02.png"]  # 0.24, then 0.10
    assert "2 of 5 accepted" in texts[0] and "24% unsure" in texts[0]  # 3 x 0.4 + 2 x 0 over 5

    dialog.resize(260, 300)
    qtbot.waitExposed(dialog)
    qtbot.wait(50)
    width = dialog.list.viewport().width()
    metrics = dialog.list.fontMetrics()
    for i in range(dialog.list.count()):
        item = dialog.list.item(i)
        rect = dialog.list.visualItemRect(item)
        needed = metrics.boundingRect(QRect(0, 0, width, 10000), Qt.TextWordWrap, item.text())
        assert rect.width() <= width and rect.height() >= needed.height() > metrics.height()  # wrapped
    dialog.close()


def test_the_review_panels_fix_gets_sam2_once_the_model_is_ready(qtbot, window, specimens, settings,
                                                                  present_checkpoint):
    """Fix in the Review panel re-segments with the shared model (its own segmenter, the image
    read from the project's file), through the prompt use case."""
    from descriptron_sam2pal.imaging.io import load_image
    from descriptron_sam2pal.jobs.prompt_masks import mask_from_prompts, prompt_model_for, read_image

    plugin = plugin_module.register(window)
    window.open_path(specimens)
    wait_image(qtbot, window, "specimen_01.png")
    assert plugin.review_panel.reprompt is None  # no model yet: Fix is off
    plugin.session.settings = settings
    plugin.session.image_size = 128
    plugin.session.set_checkpoint(str(present_checkpoint))
    assert not plugin.session.ensure_loaded()
    qtbot.waitUntil(lambda: plugin.review_panel.reprompt is not None, timeout=60000)
    record = window.images()[2]
    mask = plugin.review_panel.reprompt(record.id, [(50.0, 35.0), (5.0, 5.0)], [1, 0])  # as its worker does
    own = prompt_model_for(plugin.session.loaded.model).segmenter
    read_image(own, load_image(record.path))
    expected = mask_from_prompts(own, [(50.0, 35.0, True), (5.0, 5.0, False)]).mask
    assert mask is not None and mask.shape == (record.height, record.width)
    assert np.array_equal(mask, expected)

