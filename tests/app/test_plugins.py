import logging
import textwrap
from importlib.metadata import EntryPoint

import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QDockWidget, QLabel, QPlainTextEdit, QTableWidget

from descriptron_sam2pal.host.api import PLUGIN_GROUP, load_plugins
from tests.helpers.workspace_project import wait_shown


GOOD = """
from PyQt5.QtWidgets import QLabel
from descriptron_sam2pal import UserError

calls = []

def register(host):
    calls.append("register")
    host.add_menu_action("SAM2-PAL", "Train SAM2-PAL", lambda: calls.append("train"), "Ctrl+T")
    host.add_menu_action("SAM2-PAL/Advanced", "Refuse", refuse)
    host.add_dock_panel("Templates", QLabel("templates panel"))
    host.add_dock_panel("Review", QLabel("review panel"))
    host.on_current_image_changed(lambda rec: calls.append(("image", rec and rec.file_name)))

def refuse():
    raise UserError("Add a template first.")
"""

RAISES = """
def register(host):
    host.add_menu_action("Broken", "Half-registered", lambda: None)
    raise RuntimeError("no checkpoint configured")
"""

EXITS = """
import sys
def register(host):
    sys.exit(3)
"""

IMPORT_FAILS = """
import module_that_does_not_exist_anywhere
def register(host):
    pass
"""

AS_MODULE = """
registered = []
def register(host):
    registered.append(host)
"""


@pytest.fixture
def plugin_modules(tmp_path, monkeypatch):
    """Write plugin modules with names unique to this test and return their entry points."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    prefix = f"fake_plugin_{abs(hash(str(tmp_path)))}"

    def make(name: str, source: str, attr: str | None = "register") -> EntryPoint:
        module = f"{prefix}_{name}"
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
        value = f"{module}:{attr}" if attr else module
        return EntryPoint(name=name, value=value, group=PLUGIN_GROUP)

    return make


def _menu_titles(window):
    return [a.text() for a in window.menuBar().actions()]


def test_a_plugin_that_raises_in_register_does_not_break_the_host(
        qtbot, window, project, plugin_modules, caplog):
    eps = [plugin_modules("raises", RAISES), plugin_modules("imports", IMPORT_FAILS),
           plugin_modules("exits", EXITS), plugin_modules("good", GOOD)]
    with caplog.at_level(logging.ERROR):
        results = window.load_plugins(eps)
    assert [(r.name, r.ok) for r in results] == [
        ("raises", False), ("imports", False), ("exits", False), ("good", True)]
    assert "register(host) failed: RuntimeError: no checkpoint configured" in results[0].error
    assert "could not be imported: ModuleNotFoundError" in results[1].error
    assert "SystemExit" in results[2].error
    assert "Traceback" in results[0].details
    assert "raises" in caplog.text and "imports" in caplog.text  # logged too

    # Reported in the window...
    assert window.plugin_button.isVisibleTo(window)
    assert "3 plugins failed to load" in window.plugin_button.text()
    dialog = window.show_plugins_dialog()

    table = dialog.findChild(QTableWidget)
    assert table.rowCount() == 4
    assert table.item(0, 1).text().startswith("failed: register(host) failed")
    assert table.item(3, 1).text() == "loaded"
    assert "no checkpoint configured" in dialog.findChild(QPlainTextEdit).toPlainText()
    dialog.close()

    # ...and the host keeps working, with the good plugin in place.
    assert window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    assert "SAM2-PAL" in _menu_titles(window)


def test_plugin_menu_actions_docks_and_callbacks(qtbot, window, project, plugin_modules, dialogs):
    import importlib

    ep = plugin_modules("good", GOOD)
    (result,) = window.load_plugins([ep])
    assert result.ok and not window.plugin_button.isVisibleTo(window)
    plugin = importlib.import_module(ep.module)

    titles = _menu_titles(window)
    assert titles.index("SAM2-PAL") == titles.index("&Help") - 1  # plugin menus go before Help
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "SAM2-PAL")
    train = next(a for a in menu.actions() if a.text() == "Train SAM2-PAL")
    assert train.shortcut().toString() == "Ctrl+T"
    train.trigger()
    assert plugin.calls[-1] == "train"

    advanced = next(a.menu() for a in menu.actions() if a.menu() is not None)
    advanced.actions()[0].trigger()  # raises UserError: a dialog, no crash
    assert dialogs.seen == [("Refuse", "Add a template first.")]

    docks = {d.windowTitle(): d for d in window.findChildren(QDockWidget)}
    assert {"Images", "Templates", "Review"} <= set(docks)
    assert window.dockWidgetArea(docks["Review"]) == Qt.RightDockWidgetArea
    qtbot.waitUntil(lambda: docks["Review"] in window.tabifiedDockWidgets(docks["Templates"]), timeout=2000)
    assert docks["Templates"].widget().text() == "templates panel"

    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    assert ("image", "ant_01.png") in plugin.calls


def test_a_module_entry_point_with_register_and_a_failing_callback(qtbot, window, project, plugin_modules):
    import importlib

    ep = plugin_modules("mod", AS_MODULE, attr=None)
    (result,) = load_plugins(window, [ep])
    assert result.ok
    assert importlib.import_module(ep.module).registered == [window]

    def bad_callback(store):
        raise ValueError("plugin bug")

    good = []
    window.on_store_changed(bad_callback)
    window.on_store_changed(good.append)
    assert window.open_path(project)  # one callback's bug neither stops the others nor the window
    assert good == [window.store]
    assert "plugin bug" in window.statusBar().currentMessage()


def test_unsubscribe(window, project):
    seen = []
    unsubscribe = window.on_store_changed(seen.append)
    unsubscribe()
    window.open_path(project)
    assert seen == []


def test_installed_entry_points_are_read_from_the_group(window, monkeypatch):
    from descriptron_sam2pal.host import api

    ep = EntryPoint(name="x", value="json:dumps", group=PLUGIN_GROUP)
    monkeypatch.setattr(api.metadata, "entry_points", lambda group: [ep, ep] if group == PLUGIN_GROUP else [])
    assert api.plugin_entry_points() == [ep]


def test_bad_dock_area_is_refused(window):
    with pytest.raises(ValueError):
        window.add_dock_panel("x", QLabel("x"), area="middle")
