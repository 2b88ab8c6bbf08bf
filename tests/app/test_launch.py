from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QApplication

from descriptron_sam2pal.app import launch as app
from descriptron_sam2pal.app.workspace import Workspace
from tests.helpers.workspace_project import wait_shown


def test_main_opens_the_project_and_returns_the_exit_code(qtbot, project, monkeypatch, tmp_path, dialogs):
    QSettings.setPath(QSettings.NativeFormat, QSettings.UserScope, str(tmp_path / "config"))
    seen = {}

    def fake_exec(_app):
        (win,) = [w for w in QApplication.topLevelWidgets() if isinstance(w, Workspace) and w.isVisible()]
        qtbot.addWidget(win)
        wait_shown(qtbot, win, "ant_01.png")
        seen["images"] = len(win.images())
        seen["plugins"] = win.plugin_results
        win.close()
        return 7

    monkeypatch.setattr(QApplication, "exec_", fake_exec)
    assert app.main([str(project), "--no-plugins"]) == 7
    assert seen == {"images": 3, "plugins": []}


def test_parser_takes_an_optional_project():
    args = app.build_parser().parse_args([])
    assert args.project is None and not args.no_plugins
