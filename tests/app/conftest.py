"""A small project on disk (images + a Descriptron session file) and a workspace window."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QMessageBox

from descriptron_sam2pal.imaging.masks import mask_to_polygons


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def write_project(folder: Path) -> Path:
    """Three specimen photos; a session COCO file with scape+eye on the first, eye on the second."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"ant_01.png": (60, 80), "ant_02.png": (50, 70), "beetle_03.png": (40, 40)}
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i, (name, (h, w)) in enumerate(sizes.items(), start=1):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
        images.append({"id": i, "file_name": name, "height": h, "width": w})
    structures = [(1, 1, box(60, 80, 10, 30, 10, 40)), (1, 2, box(60, 80, 40, 50, 50, 70)),
                  (2, 2, box(50, 70, 5, 15, 5, 25))]
    for ann_id, (image_id, cat, mask) in enumerate(structures, start=1):
        ys, xs = np.nonzero(mask)
        anns.append({"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                     "segmentation": mask_to_polygons(mask), "area": int(mask.sum()),
                     "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                     "instance_id": 1})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "scape", "supercategory": ""},
                           {"id": 2, "name": "eye", "supercategory": ""}]}
    path = folder / "session.json"
    path.write_text(json.dumps(coco, indent=2))
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    write_project(tmp_path / "specimens")
    return tmp_path / "specimens"


class Dialogs:
    """Answers every QMessageBox.exec_ with the next queued button and records what was asked."""

    def __init__(self) -> None:
        self.answers: list = []
        self.seen: list[tuple[str, str]] = []

    def exec_(self, box: QMessageBox):
        self.seen.append((box.windowTitle(), box.text()))
        return self.answers.pop(0) if self.answers else QMessageBox.Ok

    def titles(self) -> list[str]:
        return [t for t, _ in self.seen]


@pytest.fixture
def dialogs(monkeypatch) -> Dialogs:
    d = Dialogs()
    monkeypatch.setattr(QMessageBox, "exec_", lambda box: d.exec_(box))
    return d


@pytest.fixture
def window(qtbot, tmp_path, dialogs):
    from descriptron_sam2pal.app.workspace import Workspace

    win = Workspace(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    dialogs.answers = [QMessageBox.Yes, QMessageBox.Discard]
    win.close()
    win.image_loader.wait(5000)
