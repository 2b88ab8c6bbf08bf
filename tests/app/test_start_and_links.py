"""Starting: the start page, photos in sub-folders, Help > User guide, the Qt library check,
and File > Open in Descriptron's command line (test_descriptron_launch.py starts Descriptron)."""

from __future__ import annotations

import sys
from pathlib import Path

from PyQt5.QtWidgets import QInputDialog

from descriptron_sam2pal.app.descriptron_link import descriptron_command, find_descriptron
from descriptron_sam2pal.app.qt_check import missing_from_ldd, packages_for, startup_problem
from descriptron_sam2pal.gui.project_folder import image_subfolders
from tests.helpers.workspace_project import wait_shown, write_project


LDD = """\tlinux-vdso.so.1 (0x00007ff3b18f2000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-image.so.0 => /lib/x86_64-linux-gnu/libxcb-image.so.0 (0x00007ff3b1863000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
"""


def test_ldd_output_names_the_missing_libraries_and_their_packages():
    missing = missing_from_ldd(LDD)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert packages_for(missing) == ["libxcb-icccm4", "libxcb-keysyms1"]
    assert packages_for(["libunknown.so.3"]) == ["libunknown.so.3"]


def test_startup_problem_only_for_x11_on_linux(monkeypatch):
    from descriptron_sam2pal.app import qt_check

    assert startup_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert startup_problem({}, "win32") is None
    monkeypatch.setattr(qt_check, "missing_xcb_libraries", lambda: ["libxcb-xinerama.so.0"])
    message = startup_problem({"DISPLAY": ":0"}, "linux")
    assert "libxcb-xinerama.so.0" in message and "sudo apt-get install libxcb-xinerama0" in message
    monkeypatch.setattr(qt_check, "missing_xcb_libraries", lambda: [])
    assert startup_problem({"DISPLAY": ":0"}, "linux") is None
    assert "DISPLAY" in startup_problem({}, "linux")


def test_start_page_then_canvas_and_help_guide(window, project, qtbot):
    assert window.central_view() is window.start_page
    assert window.start_page.open_button.isVisible()
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    assert window.central_view() is window.canvas
    dialog = window.show_user_guide()
    assert "SAM2" in window.guide_browser.toPlainText()
    dialog.close()


def test_photos_in_sub_folders_ask_which_to_open(window, tmp_path, monkeypatch, qtbot):
    root = tmp_path / "by_taxon"
    write_project(root / "Carabidae")
    write_project(root / "Curculionidae")
    (root / "notes.txt").write_text("not a photo")
    assert [(p.name, n) for p, n in image_subfolders(root)] == [("Carabidae", 3), ("Curculionidae", 3)]
    assert image_subfolders(root / "Carabidae") == []
    asked = {}

    def get_item(parent, title, label, items, current, editable):
        asked["items"] = items
        return items[1], True

    monkeypatch.setattr(QInputDialog, "getItem", get_item)
    assert window.open_path(root)
    assert asked["items"] == ["Carabidae  (3 photos)", "Curculionidae  (3 photos)"]
    assert "Curculionidae" in Path(window.store.path).parts
    wait_shown(qtbot, window, "ant_01.png")


def test_photos_beside_sub_folders_are_never_left_out_without_a_word(window, tmp_path, monkeypatch, qtbot):
    """A folder with its own photos and more in sub-folders asks which to open; its own photos
    leave the others named under the image list; a sub-folder's sub-folders are asked about too."""
    root = tmp_path / "beetles"
    write_project(root)
    write_project(root / "extra")
    write_project(root / "sam2pal_runs")  # our outputs: never offered
    (root / "nested" / "deeper").mkdir(parents=True)
    write_project(root / "nested" / "deeper")
    assert [(p.name, n) for p, n in image_subfolders(root)] == [("extra", 3)]
    asked = []
    answers = []

    def get_item(parent, title, label, items, current, editable):
        asked.append((label, items))
        return answers.pop(0)(items), True

    monkeypatch.setattr(QInputDialog, "getItem", get_item)
    answers.append(lambda items: items[0])
    assert window.open_path(root)
    label, items = asked[-1]
    assert label == "beetles has 3 photos and 3 photos more in 1 sub-folder. Open which?"
    assert items == ["beetles itself  (3 photos, without its sub-folders)", "extra  (3 photos)"]
    wait_shown(qtbot, window, "ant_01.png")
    assert Path(window.store.path) == root / "session.json"
    assert window.image_panel.list_summary.text() == "3 images\n+ 3 photos in sub-folders not opened: extra"
    assert window.image_panel.list_summary.isVisible()

    answers.append(lambda items: items[1])
    assert window.open_path(root)
    assert Path(window.store.path) == root / "extra" / "session.json"
    assert window.image_panel.list_summary.text() == "3 images"

    answers.append(lambda items: items[0])  # nested has only a sub-folder: asked again, one level down
    assert window.open_path(root / "nested")
    assert asked[-1][1] == ["deeper  (3 photos)"]
    assert Path(window.store.path) == root / "nested" / "deeper" / "session.json"


def test_open_in_descriptron_builds_image_then_annotation_file(window, project, qtbot):
    assert find_descriptron("no-such-descriptron-dist") is None
    launcher = find_descriptron()  # the real descriptron-gui that install.sh installs for tests/descriptron
    assert launcher is not None and launcher.version == "2.8.2"
    assert launcher.argv == (sys.executable, "-m", "descriptron_sam2pal.app.descriptron_start")
    assert descriptron_command(launcher, "/p/a.png", "/p/a.json") == [*launcher.argv, "/p/a.png", "/p/a.json"]

    window.set_descriptron_launcher(launcher)
    assert not window.descriptron_action.isEnabled()  # no photo yet
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    assert window.descriptron_action.isEnabled()
    assert window.descriptron_command() == [*launcher.argv, str(project / "ant_01.png"),
                                            str(project / "session.json")]
