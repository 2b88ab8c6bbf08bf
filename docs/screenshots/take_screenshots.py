"""Take the user guide's screenshots from the running program, the way a user drives it.

Run it under a virtual display from the repository root:

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/screenshots/take_screenshots.py

It builds a throw-away project folder (copies of a few BeetleFlow / NEON ground
beetle photos, read from ``--data``; two of them outlined beforehand, as if in
Descriptron), starts the real standalone workspace with the plugins loaded
through their entry point, and then clicks and types: picks a specimen, outlines
a structure with SAM2 clicks and accepts it, draws one by hand with the polygon
tool, opens Train SAM2-PAL (Ctrl+Shift+T)
and trains a short run (screenshot while it runs), lets it segment the other
specimens, reviews them worst first with the keys (the structure large in the
central area), edits an outline's vertices there, and writes the accepted
outlines back. The window is 1366 x 768 (a laptop screen) by default. PNGs go to
``--out`` (default: this folder), each made smaller than ``--max-kb`` with
pngquant/optipng when they are installed.

The model: ``--checkpoint FILE`` when given; else a beetle demo checkpoint
shipped in ``descriptron_sam2pal/resources/`` (the checkpoint picker's button for
it, or the file itself); else the untrained demo model (random weights: the
masks in the pictures are then meaningless, which the guide's captions say).
Nothing is written outside ``--workdir`` (a temporary folder, removed at the end
unless ``--keep``) and ``--out``; Qt settings go to the work folder too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_DATA = Path("/work/shared/data/beetleflow-5class-train")
# BeetleFlow masks: structure -> RGB (see the data set's README)
MASK_COLORS = {"head": (200, 0, 0), "pronotum": (0, 200, 0), "elytra": (0, 0, 200),
               "legs": (200, 200, 0), "antennas": (200, 0, 200)}
# All from the "eval" half of benchmarks/testbed's split: photos the beetle demo model never saw.
OUTLINED_BEFORE = ("0055.png", "0054.png")          # templates made earlier "in Descriptron"
OUTLINED_HERE = "0257.png"                          # outlined with clicks in the Templates panel
TARGETS = ("0200.png", "0251.png", "0292.png", "0045.png", "0250.png", "0114.png", "0091.png",
           "0156.png", "0301.png")
TEMPLATE_STRUCTURES = ("head", "pronotum", "elytra")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="BeetleFlow folder with images/ and masks/"
    )
    p.add_argument("--out", type=Path, default=HERE, help="where the PNGs go (default: docs/screenshots)")
    p.add_argument("--workdir", type=Path, help="project and settings folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (to look at the written files)")
    p.add_argument("--checkpoint", help="a SAM2 checkpoint to use instead of the demo models")
    p.add_argument("--steps", type=int, default=120, help="training steps of the short run (default 120)")
    p.add_argument("--size", type=int, default=256, help="training image size in px (default 256)")
    p.add_argument("--width", type=int, default=1366, help="workspace width (default 1366)")
    p.add_argument("--height", type=int, default=768, help="workspace height (default 768)")
    p.add_argument("--max-kb", type=int, default=250, help="largest PNG size in KB (default 250)")
    p.add_argument("--keep-template", dest="undo_template", action="store_false",
                   help="keep the structure outlined with clicks as a template (default: Ctrl+Z takes it "
                        "back after its screenshot, because the demo models' click proposals are poor)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the project

def make_project(data: Path, folder: Path) -> Path:
    """Copy the photos into ``folder`` and outline OUTLINED_BEFORE from the data set's masks,
    saved as Descriptron per-image ``_final_`` files (as if a user had outlined them there)."""
    import numpy as np
    from PIL import Image

    from descriptron_sam2pal.store import AnnotationStore

    folder.mkdir(parents=True, exist_ok=True)
    for name in OUTLINED_BEFORE + (OUTLINED_HERE,) + TARGETS:
        src = data / "images" / name
        if not src.is_file():
            raise SystemExit(f"{src} is missing: pass --data with the BeetleFlow images/ and masks/")
        shutil.copyfile(src, folder / name)
    store = AnnotationStore.open(folder)
    for name in OUTLINED_BEFORE:
        rgb = np.asarray(Image.open(data / "masks" / name).convert("RGB"))
        record = store.image_by_file(name)
        for structure in TEMPLATE_STRUCTURES:
            mask = (rgb == MASK_COLORS[structure]).all(-1)
            store.add_structure(record.id, structure, mask)
    store.save()
    return folder


# --------------------------------------------------------------------------- helpers

class Shooter:
    def __init__(self, app, out: Path, max_kb: int) -> None:
        self.app, self.out, self.max_kb = app, out, max_kb
        self.saved: list[Path] = []

    def wait(self, ms: int) -> None:
        from PyQt5.QtTest import QTest
        QTest.qWait(ms)

    def wait_until(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.wait(50)

    def save(self, widget, name: str) -> Path:
        """Render ``widget`` (a window, dialog or message box) to ``out/name``, kept under max_kb."""
        from PyQt5.QtCore import Qt

        self.app.processEvents()
        pixmap = widget.grab()
        path = self.out / name
        scale = 1.0
        while True:
            shot = pixmap if scale == 1.0 else pixmap.scaledToWidth(int(pixmap.width() * scale),
                                                                      Qt.SmoothTransformation)
            shot.save(str(path), "PNG")
            shrink_png(path)
            kb = path.stat().st_size / 1024
            if kb <= self.max_kb or scale < 0.5:
                break
            scale *= 0.85
        print(f"  {name}: {shot.width()}x{shot.height()}, {kb:.0f} KB")
        self.saved.append(path)
        return path


def shrink_png(path: Path) -> None:
    """pngquant (lossy palette, visually the same for UI screenshots), then optipng, when installed."""
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--quality", "65-90", "--speed", "1",
                        "--output", str(path), str(path)], check=False)
    if shutil.which("optipng"):
        subprocess.run(["optipng", "-quiet", "-o2", str(path)], check=False)


def click(widget, button=None, pos=None) -> None:
    from PyQt5.QtCore import QPoint, Qt
    from PyQt5.QtTest import QTest
    QTest.mouseClick(widget, Qt.LeftButton if button is None else button, Qt.NoModifier,
                     QPoint() if pos is None else pos)


def click_image(canvas, x: float, y: float, button=None) -> None:
    """A click on image pixel (x, y) of an ImageCanvas."""
    click(canvas.view.viewport(), button, canvas.map_to_widget(x, y))


def click_list_item(list_widget, text_start: str) -> None:
    for row in range(list_widget.count()):
        item = list_widget.item(row)
        if item.text().startswith(text_start):
            list_widget.scrollToItem(item)
            click(list_widget.viewport(), pos=list_widget.visualItemRect(item).center())
            return
    raise SystemExit(f"no list entry starting with {text_start!r}")


def mask_center(data: Path, name: str, structure: str) -> tuple[float, float]:
    """A point well inside ``structure`` of the data set's mask (where a user would click)."""
    import cv2
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(data / "masks" / name).convert("RGB"))
    mask = (rgb == MASK_COLORS[structure]).all(-1)
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    return float(x) + 0.5, float(y) + 0.5


def mask_outline_points(data: Path, name: str, structure: str, n: int = 14) -> list[tuple[float, float]]:
    """About ``n`` vertices around a structure of the data set's mask (to draw it as a polygon)."""
    import numpy as np
    from PIL import Image

    from descriptron_sam2pal.imaging.drawing import mask_to_vertex_polygons

    rgb = np.asarray(Image.open(data / "masks" / name).convert("RGB"))
    mask = (rgb == np.array(MASK_COLORS[structure], np.uint8)).all(axis=2)
    polys = mask_to_vertex_polygons(mask, tolerance=2.0, max_vertices=200)
    ring = polys[0]
    step = max(1, len(ring) // n)
    return ring[::step]


def choose_model(picker, checkpoint: str | None) -> str:
    """Pick the model in the Templates panel's checkpoint line, as a user would."""
    if checkpoint:
        picker._choose(str(Path(checkpoint).resolve()))  # what Browse... does with the chosen file
        return Path(checkpoint).name
    from PyQt5.QtWidgets import QPushButton
    for button in picker.findChildren(QPushButton):
        if "beetle" in button.text().lower() and button.isEnabled():
            click(button)
            return f"beetle demo checkpoint ({button.text()})"
    shipped = sorted((REPO / "descriptron_sam2pal" / "resources").rglob("*.pt"))
    if shipped:
        picker._choose(str(shipped[0]))
        return f"shipped checkpoint {shipped[0].name}"
    click(picker.demo_button)
    return "UNTRAINED demo model (random weights)"


# --------------------------------------------------------------------------- the tour

def run(args: argparse.Namespace) -> int:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sam2pal_screens_")).resolve()
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")  # QSettings of this run only
    os.environ.setdefault("XDG_RUNTIME_DIR", str(work / "runtime"))
    (work / "runtime").mkdir(parents=True, exist_ok=True, mode=0o700)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch
    torch.set_num_threads(args.threads)
    from PyQt5.QtCore import QCoreApplication, QSettings, Qt, QTimer
    from PyQt5.QtTest import QTest
    from PyQt5.QtWidgets import QApplication, QDockWidget, QMessageBox

    QCoreApplication.setAttribute(Qt.AA_UseHighDpiPixmaps, True)
    app = QApplication.instance() or QApplication(["sam2pal"])
    app.setOrganizationName("Descriptron")
    app.setApplicationName("sam2pal")
    project = make_project(args.data, work / "ground_beetles")
    shots = Shooter(app, args.out, args.max_kb)

    from descriptron_sam2pal import plugin as plugin_module
    from descriptron_sam2pal.gui.review_panel import ReviewPanel
    from descriptron_sam2pal.gui.templates_panel import TemplatesPanel
    from descriptron_sam2pal.gui.train_dialog import TrainDialog
    from descriptron_sam2pal.app.workspace import Workspace

    window = Workspace(settings=QSettings(str(work / "workspace.ini"), QSettings.IniFormat))
    results = window.load_plugins()  # the entry point, exactly as `sam2pal gui` does
    if not any(r.ok and r.name == "sam2pal" for r in results):
        print("the sam2pal entry point did not load; registering the plugin directly:",
              [(r.name, r.error) for r in results])
        plugin_module.register(window)
    window.setGeometry(0, 0, args.width, args.height)
    window.show()
    QTest.qWaitForWindowExposed(window)
    window.activateWindow()

    # Unexpected message boxes are answered (and reported) so the tour never hangs.
    expected_box = {"handler": None}

    def watch_boxes() -> None:
        box = app.activeModalWidget()
        if isinstance(box, QMessageBox):
            handler = expected_box["handler"]
            if handler is not None:
                expected_box["handler"] = None
                handler(box)
            else:
                print(f"  message box: {box.windowTitle()}: {box.text()} {box.informativeText()}")
                box.done(QMessageBox.Ok)
    watchdog = QTimer()
    watchdog.timeout.connect(watch_boxes)
    watchdog.start(300)

    templates = window.findChildren(TemplatesPanel)[0]
    review = window.findChildren(ReviewPanel)[0]
    docks = {d.windowTitle(): d for d in window.findChildren(QDockWidget)}

    def image_shown(name: str) -> bool:
        return (window.current_image() is not None and window.current_image().file_name == name
                and window.current_image_array() is not None and not window.image_loader.busy)

    print(f"project {project}")
    shots.wait(300)
    shots.save(window, "00_start.png")  # what a new user sees first
    # 1. the workspace: open the folder (as `sam2pal gui FOLDER` does), pick a template
    window.open_path(project)
    shots.wait_until(
        lambda: window.current_image() is not None and not window.image_loader.busy, 20, "the first image"
    )
    click_list_item(window.image_list, OUTLINED_BEFORE[0])
    shots.wait_until(lambda: image_shown(OUTLINED_BEFORE[0]), 20, "the template image")
    window.canvas.view.setFocus()
    QTest.mouseMove(window.canvas.view.viewport(), window.canvas.map_to_widget(320, 460))
    shots.wait(300)
    shots.save(window, "01_workspace.png")

    # 2. Templates panel: model, outline on, two clicks, a name; then accept
    docks[plugin_module.TEMPLATES_PANEL].raise_()
    model_used = choose_model(templates.picker, args.checkpoint)
    print(f"model: {model_used}")
    click_list_item(window.image_list, OUTLINED_HERE)
    shots.wait_until(lambda: image_shown(OUTLINED_HERE), 20, "the specimen to outline")
    click(templates.active_button)
    shots.wait_until(lambda: templates.session.is_ready and templates._encoder is None
                     and templates._encoded_id is not None, 180, "SAM2 to load and read the image")
    x, y = mask_center(args.data, OUTLINED_HERE, "elytra")
    click_image(window.canvas, x, y)                    # one click on the elytra
    shots.wait_until(lambda: templates.proposal is not None and not templates.prompter.busy, 30,
                     "a SAM2 proposal")
    combo = templates.name_combo
    click(combo.lineEdit())
    QTest.keyClicks(combo.lineEdit(), "elytra")
    shots.wait(300)
    shots.save(window, "02_templates_proposal.png")
    QTest.keyClick(combo.lineEdit(), Qt.Key_Return)     # Enter accepts
    shots.wait_until(lambda: templates.template_list.count() == 3, 10, "the accepted structure")
    shots.wait(300)
    shots.save(window, "03_templates_accepted.png")
    if args.undo_template:  # a demo model's poor proposal would spoil the training: take it back
        QTest.keyClick(window.canvas.view, Qt.Key_Z, Qt.ControlModifier)
        shots.wait_until(lambda: templates.template_list.count() == 2, 10, "Undo of the accepted structure")
    # 2a. one click on the head: what the shipped model proposes for another part
    hx, hy = mask_center(args.data, OUTLINED_HERE, "head")
    click_image(window.canvas, hx, hy)
    shots.wait_until(lambda: templates.proposal is not None and not templates.prompter.busy, 30,
                     "a SAM2 proposal for the head")
    templates.name_combo.setEditText("head")
    shots.wait(300)
    shots.save(window, "02b_one_click_head.png")
    templates.clear_prompts()
    click(templates.active_button)  # done outlining: clicks on the image no longer go to SAM2

    # 2b. Drawing by hand: the polygon tool (P) on the main canvas, no model needed
    window.canvas.view.setFocus()
    QTest.keyClick(window.canvas.view, Qt.Key_P)
    templates.name_combo.setEditText("head")
    points = mask_outline_points(args.data, OUTLINED_HERE, "head")
    for px, py in points[:-3]:
        click_image(window.canvas, px, py)
        shots.wait(60)
    QTest.mouseMove(window.canvas.view.viewport(), window.canvas.map_to_widget(*points[-3]))
    shots.wait(300)
    shots.save(window, "03b_templates_drawing.png")
    for px, py in points[-3:]:
        click_image(window.canvas, px, py)
        shots.wait(60)
    QTest.keyClick(window.canvas.view, Qt.Key_Return)   # closes the polygon: the outline is the proposal
    shots.wait_until(lambda: templates.proposal is not None, 10, "the drawn outline")
    QTest.keyClick(window.canvas.view, Qt.Key_V)        # its vertices can be dragged now
    shots.wait(300)
    shots.save(window, "03c_templates_vertices.png")
    QTest.keyClick(window.canvas.view, Qt.Key_Escape)
    templates.clear_prompts()                           # not kept: the guide's templates stay as they were
    templates.name_combo.setEditText("")

    # 3. Train SAM2-PAL (Ctrl+Shift+T): a short run, photographed while it runs
    window.activateWindow()
    QTest.keyClick(window, Qt.Key_T, Qt.ControlModifier | Qt.ShiftModifier)
    shots.wait(300)
    dialogs = [w for w in app.topLevelWidgets() if isinstance(w, TrainDialog) and w.isVisible()]
    if not dialogs:  # no window manager gave the window the focus: use the menu entry itself
        for action in window.menuBar().actions():
            if action.text().replace("&", "") == plugin_module.MENU:
                next(a for a in action.menu().actions() if a.text() == plugin_module.TRAIN_ACTION).trigger()
        shots.wait(300)
        dialogs = [w for w in app.topLevelWidgets() if isinstance(w, TrainDialog) and w.isVisible()]
    dialog = dialogs[0]
    dialog.move(window.x() + 60, window.y() + 40)
    dialog.resize(1180, 780)
    dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findText("Quick"))
    click(dialog.advanced_box)  # unfold Advanced settings (a click on its check box title)
    if not dialog.advanced_box.isChecked():
        dialog.advanced_box.setChecked(True)
    for spin, value in ((dialog.steps_spin, args.steps), (dialog.size_spin, args.size)):
        spin.selectAll()
        spin.setFocus()
        QTest.keyClick(spin, Qt.Key_A, Qt.ControlModifier)
        QTest.keyClicks(spin, str(value))
        QTest.keyClick(spin, Qt.Key_Tab)
    dialog.output_edit.setText(str(work / "runs" / "run-demo"))
    shots.wait(200)
    state = {"shot": False}
    threshold = int(args.steps * 0.6)

    def on_progress(report) -> None:
        if state["shot"] or getattr(report, "stage", "") != "train" or report.done < threshold:
            return
        state["shot"] = True
        shots.save(dialog, "04_train_running.png")
    click(dialog.start_button)
    dialog.monitor.worker.progress.connect(on_progress)
    shots.wait_until(lambda: state["shot"], 600, "training to pass 60%")
    # training ends, then the specimens are segmented and the results go to the Review panel
    shots.wait_until(lambda: review.session is not None and dialog.monitor.worker is None, 900,
                     "training and segmentation to finish")
    shots.wait(300)
    shots.save(dialog, "05_train_finished.png")
    click(dialog.close_button)

    # 4. Review: worst first; accept, reject, move with the keys
    docks[plugin_module.REVIEW_PANEL].raise_()
    window.activateWindow()
    review.table.setFocus()
    shots.wait_until(lambda: not review.image_loading(), 20, "the review image")
    for key in (Qt.Key_A, Qt.Key_R, Qt.Key_A, Qt.Key_Down, Qt.Key_A, Qt.Key_A, Qt.Key_R):
        QTest.keyClick(review.table, key)
        shots.wait_until(lambda: not review.image_loading(), 20, "the review image")
        shots.wait(150)
    QTest.keyClick(review.table, Qt.Key_A, Qt.ShiftModifier)  # the whole specimen
    shots.wait_until(lambda: not review.image_loading(), 20, "the review image")
    review.filter_combo.setCurrentIndex(0)
    review.table.setFocus()
    shots.wait(300)
    shots.save(window, "06_review.png")
    # 4b. Editing the outline under review: the vertices tool in the central view
    review.table.setFocus()
    QTest.keyClick(review.table, Qt.Key_Down)
    shots.wait_until(lambda: not review.image_loading(), 20, "the review image")
    review.toolbar.buttons["vertices"].click()
    shots.wait(400)
    shots.save(window, "06b_review_edit.png")
    review.tools.set_tool("")

    # 5. Write back: the confirmation, then "Write and save"
    def confirm(box) -> None:
        shots.save(box, "07_write_back.png")
        click(box.button(QMessageBox.Save))
    expected_box["handler"] = confirm
    click(review.write_button)
    shots.wait_until(lambda: not window.is_modified(), 30, "the project to be saved")
    shots.wait(500)
    docks[plugin_module.TEMPLATES_PANEL].raise_()  # its narrower width leaves the image more room
    written = {}
    for item in review.session.items:
        if item.written:
            written[item.target.file_name] = written.get(item.target.file_name, 0) + 1
    best = max(written, key=written.get) if written else TARGETS[0]
    click_list_item(window.image_list, best)
    shots.wait_until(lambda: image_shown(best), 20, "a written specimen")
    shots.wait(500)
    shots.save(window, "08_after_write_back.png")

    finals = sorted(p.name for p in project.glob("*_final_*.json"))
    print(f"model used: {model_used}")
    print(f"annotation files in the project after write-back: {len(finals)}")
    watchdog.stop()
    window._close_plan = None
    window.setWindowModified(False)
    for w in app.topLevelWidgets():
        w.hide()
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print("saved:", ", ".join(p.name for p in shots.saved))
    return 0


if __name__ == "__main__":
    sys.exit(run(parse_args()))
