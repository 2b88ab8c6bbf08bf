"""Builders for small images and Descriptron-style COCO files for the store tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from descriptron_sam2pal.imaging.masks import mask_to_polygons, mask_to_rle
from descriptron_sam2pal.store import AnnotationStore

H, W = 40, 60


def write_image(path: Path, height: int = H, width: int = W) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def write_json(path: Path, data: dict, indent: int | None = 4) -> Path:
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=False), encoding="utf-8")
    return path


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_saved(path: Path) -> dict:
    """A file we saved, without the pair token (checked: the same in its companion)."""
    from descriptron_sam2pal.store.coco import PAIR_KEY
    from descriptron_sam2pal.store.stem import companion_path

    data = read_json(path)
    token = data.pop(PAIR_KEY)
    assert token and read_json(companion_path(path))[PAIR_KEY] == token
    return data


def ring_mask(height: int = H, width: int = W) -> np.ndarray:
    """A square with a 10x10 hole (100 px) plus a separate blob: holes and several parts."""
    m = np.zeros((height, width), bool)
    m[5:30, 5:30] = True
    m[12:22, 12:22] = False
    m[8:20, 40:55] = True
    return m


def box_mask(y0, y1, x0, x1, height: int = H, width: int = W) -> np.ndarray:
    m = np.zeros((height, width), bool)
    m[y0:y1, x0:x1] = True
    return m


def saved_session(folder: Path, *image_names: str) -> Path:
    """A store ``s.json`` in ``folder`` over fresh photos (default ``a.png``), the first with
    one "scape" box, saved; returns its path."""
    for name in image_names or ("a.png",):
        write_image(folder / name)
    store = AnnotationStore.create(folder / "s.json")
    store.add_structure(store.images[0], "scape", box_mask(5, 10, 5, 10))
    store.save()
    return folder / "s.json"


def descriptron_session(folder: Path, image_name: str = "Ant 01.jpg") -> tuple[Path, dict, dict]:
    """A realistic Descriptron per-image save: string image ids (path without extension),
    keypoints (point_order), a line (is_line/line_points/line_thickness), attributes, notes,
    scale_bar, structure_status, an occluder category, a keypoints supercategory, Trash, and a
    scape with a hole (RLE in the .rlejson). Returns (json path, json data, rlejson data)."""
    image_path = write_image(folder / image_name)
    image_id = str(image_path)[: -len(image_path.suffix)]
    head = box_mask(2, 20, 2, 25)
    scape = ring_mask()
    images = [{
        "id": image_id,
        "file_name": image_path.name,
        "height": H,
        "width": W,
        "structure_status": {"eye": "absent", "mandible": "unknown"},
        "scale_px_per_mm": 123.4,
        "date_captured": "2024-05-01",
    }]
    categories = [
        {"id": 1, "name": "head", "supercategory": "ant"},
        {"id": 2, "name": "scape", "supercategory": "ant"},
        {"id": 3, "name": "pin", "supercategory": "", "occluder": True, "occludes": ["head"]},
        {"id": 4, "name": "line_keypoints", "supercategory": "keypoints"},
        {"id": 5, "name": "Trash", "supercategory": ""},
    ]
    annotations = [
        {"id": 1714000000001, "image_id": image_id, "category_id": 1,
         "segmentation": mask_to_polygons(head), "area": int(head.sum()),
         "bbox": [2.0, 2.0, 23.0, 18.0], "iscrowd": 0, "instance_id": 1,
         "attributes": {"colour": "brown", "sculpture": "rugose"}, "notes": "left side ☺"},
        {"id": 1714000000002, "image_id": image_id, "category_id": 2,
         "segmentation": mask_to_polygons(scape), "area": int(scape.sum()),
         "bbox": [5.0, 5.0, 50.0, 25.0], "iscrowd": 0, "instance_id": 1,
         "attributes": {"length_class": "long"}},
        {"id": 1714000000003, "image_id": image_id, "category_id": 4,
         "keypoints": [10.0, 10.0, 2, 20.5, 11.0, 2, 30.0, 12.0, 1], "num_keypoints": 3,
         "point_order": ["apex", "middle", "base"], "segmentation": [], "area": 0,
         "bbox": [10.0, 10.0, 20.0, 2.0], "iscrowd": 0},
        {"id": 1714000000004, "image_id": image_id, "category_id": 4, "is_line": True,
         "line_points": [[3.0, 35.0], [50.0, 35.0]], "line_thickness": 2,
         "num_line_keypoints": 2, "segmentation": [[3.0, 34.0, 50.0, 34.0, 50.0, 36.0, 3.0, 36.0]],
         "area": 94.0, "bbox": [3.0, 34.0, 47.0, 2.0], "iscrowd": 0},
        {"id": 1714000000005, "image_id": image_id, "category_id": 3,
         "segmentation": [[55.0, 0.0, 59.0, 0.0, 59.0, 39.0, 55.0, 39.0]], "area": 200,
         "bbox": [55.0, 0.0, 4.0, 39.0], "iscrowd": 0, "instance_id": 1,
         "scale_bar": {"px": 123.4, "mm": 1.0}},
        {"id": 1714000000006, "image_id": image_id, "category_id": 1, "is_trait_only": True,
         "attributes": {"setae": "present"}, "segmentation": [], "area": 0, "bbox": [0, 0, 0, 0],
         "iscrowd": 0},
        {"id": 1714000000007, "image_id": image_id, "category_id": 5,
         "segmentation": [[30.0, 30.0, 35.0, 30.0, 35.0, 35.0]], "area": 12, "bbox": [30, 30, 5, 5],
         "iscrowd": 0},
    ]
    data = {"info": {"description": "Descriptron 2.8.2"}, "images": images,
            "annotations": annotations, "categories": categories, "licenses": []}
    rle = json.loads(json.dumps(data))
    rle["annotations"][1]["segmentation"] = mask_to_rle(scape)
    json_path = folder / f"{image_id.rsplit('/', 1)[-1]}_final_1714000000.json"
    write_json(json_path, data)
    write_json(json_path.with_suffix(".rlejson"), rle)
    return json_path, data, rle
