"""A small project on disk for the workspace-window tests, and waiting for an image to show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from descriptron_sam2pal.imaging.masks import mask_to_polygons
from tests.helpers.masks import box


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


def wait_shown(qtbot, win, file_name: str) -> None:
    """Until ``file_name`` is the current image and no load is pending."""
    qtbot.waitUntil(lambda: win.current_image() is not None and win.current_image().file_name == file_name
                    and not win.image_loader.busy, timeout=20000)
