"""Synthetic propagation results (the engine's real TargetResult/StructureResult) and a
Descriptron-style project on disk (session COCO file with keypoints, lines and traits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.imaging.masks import mask_to_polygons
from tests.helpers.masks import box

SIZES = {"ant_01.png": (60, 80), "ant_02.png": (50, 70), "beetle_03.png": (40, 48)}


def write_project(folder: Path) -> Path:
    """Three photos; a session file (string ids, as Descriptron saves them) with a scape
    outline on ant_01, a keypoint annotation, a line annotation and a trait-only entry."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
        images.append({"id": str(folder / Path(name).stem), "file_name": name, "height": h, "width": w})
    scape = box(60, 80, 10, 30, 10, 40)
    anns = [
        {"id": 1700000000001, "image_id": images[0]["id"], "category_id": 1, "iscrowd": 0,
         "segmentation": mask_to_polygons(scape), "area": int(scape.sum()), "bbox": [10.0, 10.0, 30.0, 20.0],
         "instance_id": 1, "attributes": {"colour": "brown"}, "notes": "drawn by hand"},
        {"id": 1700000000002, "image_id": images[0]["id"], "category_id": 3, "keypoints": [5, 5, 2, 9, 9, 2],
         "num_keypoints": 2, "point_order": ["a", "b"], "iscrowd": 0, "area": 0, "bbox": [5, 5, 4, 4]},
        {"id": 1700000000003, "image_id": images[1]["id"], "category_id": 4, "is_line": True,
         "line_points": [[1, 1], [20, 20]], "line_thickness": 2, "iscrowd": 0, "segmentation": [],
         "area": 0, "bbox": [1, 1, 19, 19]},
        {"id": 1700000000004, "image_id": images[2]["id"], "category_id": 5, "is_trait_only": True,
         "attributes": {"setae": "dense"}, "iscrowd": 0, "area": 0, "bbox": [0, 0, 0, 0]},
    ]
    coco = {"info": {"description": "Descriptron session"}, "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "scape", "supercategory": ""},
                           {"id": 2, "name": "eye", "supercategory": "", "occluder": True},
                           {"id": 3, "name": "line_keypoints", "supercategory": "keypoints"},
                           {"id": 4, "name": "length", "supercategory": "lines"},
                           {"id": 5, "name": "setae", "supercategory": "traits"}]}
    path = folder / "session.json"
    path.write_text(json.dumps(coco, indent=2))
    return path


def make_results(folder: Path, store=None) -> list[TargetResult]:
    """Predictions for the three photos (scape, eye, head), with chosen scores.

    Worst first: beetle_03/eye (absent), ant_02/head 0.31, ant_01/eye 0.42, beetle_03/scape 0.55
    (object 0.6), ant_02/scape 0.55 (object 0.9), ant_02/eye 0.7, ant_01/head 0.8, ant_01/scape 0.9,
    beetle_03/head 0.95.
    """
    spec = {
        "ant_01.png": {"scape": (0.9, 0.95, box(60, 80, 12, 28, 12, 38)),
                       "eye": (0.42, 0.8, box(60, 80, 40, 50, 50, 70)),
                       "head": (0.8, 0.9, box(60, 80, 35, 58, 40, 78))},
        "ant_02.png": {"scape": (0.55, 0.9, box(50, 70, 5, 15, 5, 25)),
                       "eye": (0.7, 0.85, box(50, 70, 20, 30, 40, 50)),
                       "head": (0.31, 0.7, box(50, 70, 15, 45, 30, 68))},
        "beetle_03.png": {"scape": (0.55, 0.6, box(40, 48, 2, 10, 2, 20)),
                          "eye": (None, 0.2, None),
                          "head": (0.95, 0.99, box(40, 48, 10, 38, 10, 46))},
    }
    results = []
    for name, structures in spec.items():
        h, w = SIZES[name]
        path = folder / name
        image_id = str(folder / Path(name).stem) if store is None else store.image_by_file(path).id
        r = TargetResult(image_id, str(path), h, w)
        for s_name, (score, obj, mask) in structures.items():
            r.structures[s_name] = StructureResult(s_name, mask is not None, mask, score, obj,
                                                   0.5 if mask is None else 0.88)
        results.append(r)
    return results


WORST_FIRST = [("beetle_03.png", "eye"), ("ant_02.png", "head"), ("ant_01.png", "eye"),
               ("beetle_03.png", "scape"), ("ant_02.png", "scape"), ("ant_02.png", "eye"),
               ("ant_01.png", "head"), ("ant_01.png", "scape"), ("beetle_03.png", "head")]
