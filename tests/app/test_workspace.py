import numpy as np
from PyQt5.QtWidgets import QMessageBox

from descriptron_sam2pal.gui.workers import EngineWorker
from descriptron_sam2pal.host.api import Host
from tests.helpers.workspace_project import wait_shown


def _labels(win):
    return [win.image_list.item(r).text() for r in range(win.image_list.count())]


def test_workspace_implements_the_host_contract(window):
    assert isinstance(window, Host)
    members = [m for m in dir(Host) if not m.startswith("_")]
    assert {"add_menu_action", "add_dock_panel", "store", "open_store", "save_store", "images",
            "current_image", "set_current_image", "on_store_changed", "on_current_image_changed",
            "notify_store_changed", "main_window", "show_error", "register_worker"} <= set(members)
    for name in members:
        assert hasattr(window, name), name


def test_opens_a_folder_and_shows_list_counts_and_overlays(qtbot, window, project):
    assert window.open_path(project)
    assert _labels(window) == ["ant_01.png  (2)", "ant_02.png  (1)", "beetle_03.png  (0)"]
    assert window.image_panel.list_summary.text() == "3 images"
    wait_shown(qtbot, window, "ant_01.png")
    assert window.canvas.image().shape == (60, 80, 3)
    assert window.current_image_array() is window.canvas.image()
    assert set(window.canvas.masks()) == {"scape", "eye"}
    assert window.canvas.legend.names() == ["scape", "eye"]
    rgba = window.canvas.overlay_rgba()
    assert rgba[20, 25, 3] > 0 and tuple(rgba[20, 25, :3]) == window.canvas.colors.color("scape")
    assert rgba[0, 0, 3] == 0
    assert "session.json" in window.windowTitle()


def test_switching_images_updates_canvas_and_tells_plugins(qtbot, window, project):
    seen = []
    window.on_current_image_changed(lambda rec: seen.append(rec and rec.file_name))
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    window.image_list.setCurrentRow(1)
    wait_shown(qtbot, window, "ant_02.png")
    assert window.canvas.image().shape == (50, 70, 3)
    assert list(window.canvas.masks()) == ["eye"]
    # The eye keeps its colour on every image.
    assert tuple(window.canvas.overlay_rgba()[10, 10, :3]) == window.canvas.colors.color("eye")
    window.set_current_image(3)
    wait_shown(qtbot, window, "beetle_03.png")
    assert window.canvas.masks() == {} and window.canvas.legend.names() == []
    assert window.image_list.currentRow() == 2
    window.prev_action.trigger()
    wait_shown(qtbot, window, "ant_02.png")
    assert seen == ["ant_01.png", "ant_02.png", "beetle_03.png", "ant_02.png"]


def test_fast_switching_shows_the_last_choice(qtbot, window, project):
    window.open_path(project)
    for row in (1, 2, 0, 2, 1):
        window.image_list.setCurrentRow(row)
    wait_shown(qtbot, window, "ant_02.png")
    assert window.canvas.image().shape == (50, 70, 3)


def test_filter_box(qtbot, window, project):
    window.open_path(project)
    window.image_panel.filter_edit.setText("ANT")
    hidden = [window.image_list.item(r).isHidden() for r in range(3)]
    assert hidden == [False, False, True]
    assert window.image_panel.list_summary.text() == "2 of 3 images"


def test_opens_a_single_store_file(qtbot, window, project):
    assert window.open_path(project / "session.json")
    assert len(window.images()) == 3
    wait_shown(qtbot, window, "ant_01.png")


def test_bad_store_file_is_a_dialog_and_the_window_stays_usable(qtbot, window, project, dialogs, tmp_path):
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    assert not window.open_path(bad)
    assert dialogs.titles() == ["Cannot open"]
    assert "broken.json" in dialogs.seen[0][1]
    assert window.store is not None and len(window.images()) == 3  # the old project stays open
    window.image_list.setCurrentRow(1)
    wait_shown(qtbot, window, "ant_02.png")


def test_corrupt_image_is_a_dialog_and_browsing_goes_on(qtbot, window, project, dialogs):
    (project / "ant_02.png").write_bytes(b"this is no png")
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    window.image_list.setCurrentRow(1)
    wait_shown(qtbot, window, "ant_02.png")
    assert dialogs.titles() == ["Cannot load image"]
    assert "ant_02.png" in dialogs.seen[0][1]
    assert window.canvas.image() is None and window.current_image_array() is None
    window.image_list.setCurrentRow(2)
    wait_shown(qtbot, window, "beetle_03.png")
    assert window.canvas.image().shape == (40, 40, 3)


def test_store_change_redraws_counts_overlays_and_marks_unsaved(qtbot, window, project):
    stores = []
    window.on_store_changed(stores.append)
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    assert not window.isWindowModified()
    mask = np.zeros((60, 80), bool)
    mask[45:55, 5:20] = True
    window.store.add_structure(1, "antenna", mask)
    window.notify_store_changed()
    assert _labels(window)[0] == "ant_01.png  (3)"
    assert set(window.canvas.masks()) == {"scape", "eye", "antenna"}
    assert window.isWindowModified()
    assert stores == [window.store, window.store]
    window.save_store()
    assert not window.isWindowModified() and not window.store.is_dirty


def _make_dirty(window):
    window.store.add_structure(1, "antenna", np.pad(np.ones((5, 5), bool), ((0, 55), (0, 75))))
    window.notify_store_changed()


def test_close_with_unsaved_changes_asks(qtbot, window, project, dialogs):
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    _make_dirty(window)
    before = (project / "session.json").read_text()

    dialogs.answers = [QMessageBox.Cancel]
    assert not window.close()
    assert window.isVisible() and dialogs.titles() == ["Unsaved changes"]

    dialogs.answers = [QMessageBox.Save]
    assert window.close()
    assert not window.store.is_dirty
    assert "antenna" in (project / "session.json").read_text()
    assert before != (project / "session.json").read_text()


def test_close_discarding_changes_writes_nothing(qtbot, window, project, dialogs):
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    _make_dirty(window)
    before = (project / "session.json").read_text()
    dialogs.answers = [QMessageBox.Discard]
    assert window.close()
    assert (project / "session.json").read_text() == before


def test_opening_another_project_asks_about_unsaved_changes(qtbot, window, project, dialogs):
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    _make_dirty(window)
    dialogs.answers = [QMessageBox.Cancel]
    assert window.open_store(str(project / "session.json")) is None
    assert window.store.is_dirty


def test_close_while_a_worker_runs_asks_then_stops_it_cleanly(qtbot, window, dialogs):
    def long_job(progress, cancel, log_fn):
        while not cancel.cancelled:
            cancel._event.wait(0.01)

    worker = EngineWorker(long_job, description="Train SAM2-PAL", job=True)
    window.register_worker(worker)
    worker.start()
    assert "Train SAM2-PAL" in window.tasks_label.text()

    dialogs.answers = [QMessageBox.No]
    window.close()
    assert window.isVisible() and worker.is_running()
    assert dialogs.seen[-1][0] == "Work in progress" and "Train SAM2-PAL" in dialogs.seen[-1][1]

    dialogs.answers = [QMessageBox.Yes]
    with qtbot.waitSignal(worker.finished, timeout=5000):
        window.close()
        assert window.isVisible()  # stopping does not block; the window closes when it ends
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert worker.token.cancelled and not worker.is_running()


def test_close_asks_only_about_announced_work(qtbot, window, dialogs):
    """One registry holds every running worker; the window lists and asks about the ones announced
    through register_worker, not background calls such as image decoding (joined at exit)."""
    import threading

    from descriptron_sam2pal.gui.workers import running_workers

    gate = threading.Event()
    background = EngineWorker(gate.wait, 10, description="loading an image")
    background.start()
    assert background in running_workers() and window.tasks_label.text() == ""
    window.close()
    assert not window.isVisible() and "Work in progress" not in dialogs.titles()
    with qtbot.waitSignal(background.finished, timeout=5000):
        gate.set()


def test_opens_descriptron_per_image_final_files(qtbot, window, tmp_path):
    """Descriptron's own layout: <image without extension>_final_<ts>.json next to each image,
    string image ids; an image without a file yet is listed too."""
    import json

    from PIL import Image

    from descriptron_sam2pal.imaging.masks import mask_to_polygons

    folder = tmp_path / "pinned"
    folder.mkdir()
    for name in ("Ant 01.jpg", "Ant 02.jpg"):
        Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(folder / name)
    image_id = str(folder / "Ant 01")
    mask = np.zeros((30, 40), bool)
    mask[5:15, 5:20] = True
    coco = {"images": [{"id": image_id, "file_name": "Ant 01.jpg", "height": 30, "width": 40}],
            "annotations": [{"id": 1714000000001, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                             "segmentation": mask_to_polygons(mask), "area": int(mask.sum()),
                             "bbox": [5.0, 5.0, 15.0, 10.0], "instance_id": 1}],
            "categories": [{"id": 1, "name": "head", "supercategory": "ant"}]}
    (folder / "Ant 01_final_1714000000.json").write_text(json.dumps(coco))
    assert window.open_path(folder)
    assert sorted(_labels(window)) == ["Ant 01.jpg  (1)", "Ant 02.jpg  (0)"]
    window.set_current_image(image_id)
    wait_shown(qtbot, window, "Ant 01.jpg")
    assert list(window.canvas.masks()) == ["head"]
    assert window.canvas.masks()["head"].sum() == mask.sum()


def test_saving_while_a_sam2pal_run_writes_the_store_says_so_and_keeps_the_changes(qtbot, window, project,
                                                                                   dialogs, monkeypatch):
    import subprocess
    import sys

    from descriptron_sam2pal.app import workspace

    monkeypatch.setattr(workspace, "SAVE_LOCK_WAIT_S", 0)  # do not wait for the other run in a test
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    _make_dirty(window)
    before = (project / "session.json").read_bytes()
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",  # `sam2pal propagate --write-to` writing this store
            "import time; from descriptron_sam2pal.store import store_lock\n"
            f"with store_lock({str(project / 'session.json')!r}, timeout=0):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline().strip() == "held"
        window.save_action.trigger()
    finally:
        other.kill()
        other.wait()
    [(title, text)] = dialogs.seen
    assert title == "Cannot save" and "another program" in text
    assert (project / "session.json").read_bytes() == before
    assert window.isWindowModified() and window.store.is_dirty  # nothing of the user's is lost
    window.save_action.trigger()  # the other run is done: saving works
    assert not window.store.is_dirty
