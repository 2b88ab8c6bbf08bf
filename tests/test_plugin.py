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
