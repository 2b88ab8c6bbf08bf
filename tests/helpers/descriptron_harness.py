"""Descriptron's own load / decode / save functions, run unchanged outside its window.

``descriptron-gui`` 2.8.2 (PyPI, Apache-2.0) is one Tk script that builds its window at
import. Its annotation I/O is plain module-level functions, so we parse the installed
script with ``ast``, take those functions (and the later redefinitions that wrap them,
in file order, exactly as the script runs them) and execute them in a namespace that
holds the script's own state variables. Only Tk widgets and drawing are stubbed
(message boxes, the canvas, redraw/zoom/dropdown helpers); every line that reads,
decodes, builds or writes annotations is Descriptron's.
"""

from __future__ import annotations

import ast
import copy
import csv
import importlib.util
import json
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SCRIPT = "descriptron-v2-v97.py"

# The script's own I/O functions (every definition of each, in file order).
FUNCTIONS = {
    "_sync_kp_vis", "_image_file_name", "_display_image_path",
    "_mask_has_interior_holes", "_mask_to_uncompressed_rle", "_segmentation_from_mask",
    "save_mask_and_contour_via2", "save_line_annotation_to_accumulate", "extract_evenly_spaced_keypoints",
    "save_final_via2_json", "_status_key", "_strip_image_ext", "_attach_structure_status",
    "_load_structure_status", "load_json_contours", "_folder_store_points", "_folder_store_masks",
    "save_points_to_via2", "_folder_autosave_current",
}
CONSTANTS = {"IMAGE_EXTS", "KP_STATUS"}


def tools_folder() -> Path:
    spec = importlib.util.find_spec("descriptron_gui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "descriptron-gui is not installed; run `bash install.sh` (it installs descriptron-gui==2.8.2)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "tools"


_CODE: dict[Path, list] = {}


def _extracted(script: Path) -> list:
    """The script's I/O definitions, compiled one by one in file order (parsed once per process):
    each function in FUNCTIONS (every redefinition too), the aliases that chain them
    (`_v89_save_final_prev = save_final_via2_json`) and the constants in CONSTANTS."""
    if script not in _CODE:
        tree = ast.parse(script.read_text(encoding="utf-8", errors="replace"))
        code = []
        for node in tree.body:
            if (isinstance(node, ast.FunctionDef) and node.name in FUNCTIONS) or (
                    isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and ((isinstance(node.value, ast.Name) and node.value.id in FUNCTIONS)
                         or node.targets[0].id in CONSTANTS)):
                code.append(compile(ast.Module(body=[node], type_ignores=[]), str(script), "exec"))
        _CODE[script] = code
    return _CODE[script]


class _Stub:
    """Any Tk widget / dialog: every attribute is a no-op callable returning a stub."""

    def __init__(self, log=None):
        self._log = log if log is not None else []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self._log.append((name, args))
            return _Stub(self._log)
        return call

    def __call__(self, *args, **kwargs):
        return _Stub(self._log)


class _Clock:
    """``time`` for the script: a save's `_final_<unix seconds>` name is under the test's control."""

    def __init__(self, start=1_700_000_000):
        self.now = float(start)

    def time(self):
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


class Descriptron:
    """One Descriptron session (its global state lives in ``ns``)."""

    def __init__(self, clock_start: int = 1_700_000_000):
        tools = tools_folder()
        self.clock = _Clock(clock_start)
        self.messages: list = []
        ns = {
            "__name__": "descriptron_extracted", "np": np, "cv2": cv2, "json": json, "os": os, "copy": copy,
            "csv": csv, "logging": logging, "time": self.clock, "Image": Image, "Path": Path,
            "messagebox": _Stub(self.messages), "filedialog": _Stub(), "simpledialog": _Stub(),
            "tk": _Stub(), "canvas": _Stub(), "button_frame": _Stub(),
            "apply_zoom": lambda *a, **k: None, "redraw_masks": lambda *a, **k: None,
            "redraw_points": lambda *a, **k: None, "update_label_dropdown": lambda *a, **k: None,
            "toggle_bbox_mode": lambda *a, **k: None,
        }
        # the script's module-level state, as initialised in the script
        ns.update({
            "coco_output_accumulate": {"images": [], "annotations": [], "categories": []},
            "coco_output_mask": {"images": [], "annotations": [], "categories": []},
            "category_id_to_name": {}, "category_name_to_id": {}, "category_id_to_supercategory": {},
            "categories": [], "category_occlusion": {}, "instance_counters": {}, "image": None,
            "segmentation_masks": [], "current_mask_index": 0, "labels": {}, "file_path_base": None,
            "bounding_boxes": [], "bbox_rects": [], "bbox_mode": False, "mode": "prompt", "zoom_level": 1.0,
            "point_coords": [], "point_labels": [], "point_orders": [], "keypoint_labels": [],
            "keypoint_visibility": [], "keypoint_bank": [], "structure_status": {},
            "folder_images": [], "folder_index": 0, "folder_kp_cache": {}, "folder_mask_cache": {},
            "folder_coco": {"path": None}, "folder_autosave": {"on": True}, "_sam3_points_used": 0,
        })
        for code in _extracted(tools / SCRIPT):
            exec(code, ns)
        spec = importlib.util.spec_from_file_location(
            "descriptron_folder_save_v1", tools / "descriptron_folder_save_v1.py"
        )
        folder_save = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(folder_save)
        ns["_v89_fs"] = folder_save              # `import descriptron_folder_save_v1 as _v89_fs`
        missing = FUNCTIONS - set(ns)
        assert not missing, f"not found in {SCRIPT}: {missing}"
        self.ns = ns

    # ---------------------------------------------------------------- the user's actions

    def open_image(self, path: Path) -> np.ndarray:
        """Show an image (Descriptron's _display_image_path: PIL, no EXIF transpose)."""
        self.ns["_display_image_path"](str(path))
        return self.ns["image"]

    def load(self, annotation_path: Path) -> list[tuple[str, np.ndarray, dict]]:
        """Load Annotations for the image on screen: [(label, mask bool, mask_data)] as Descriptron
        decodes them (load_json_contours)."""
        self.ns["load_json_contours"](str(annotation_path))
        out = []
        for i, m in enumerate(self.ns["segmentation_masks"]):
            out.append((self.ns["labels"].get(i, "unlabeled"), np.asarray(m["segmentation"]).astype(bool), m))
        return out

    def _category(self, name: str, supercategory: str = "none") -> int:
        ns = self.ns
        if name not in ns["category_name_to_id"]:
            used = [c["id"] for c in ns["categories"]] + [
                c["id"] for c in ns["coco_output_accumulate"]["categories"]
            ]
            cid = max(used + [0]) + 1
            ns["categories"].append({"id": cid, "name": name, "supercategory": supercategory})
            ns["category_name_to_id"][name] = cid
            ns["category_id_to_name"][cid] = name
        return ns["category_name_to_id"][name]

    def add_mask(self, name: str, mask: np.ndarray, attributes: dict | None = None) -> None:
        """A labelled mask (apply_label -> save_mask_and_contour_via2)."""
        ns = self.ns
        data = {"segmentation": mask.astype(np.uint8), "category_id": self._category(name)}
        if attributes:
            data["attributes"] = attributes
        ns["segmentation_masks"].append(data)
        ns["labels"][len(ns["segmentation_masks"]) - 1] = name
        ns["current_mask_index"] = len(ns["segmentation_masks"]) - 1
        ns["save_mask_and_contour_via2"]()
        self.clock.now += 0.01

    def add_line(self, name: str, points: list, thickness: int = 3, keypoints: int = 3) -> None:
        """A line annotation (drawn line -> save_line_annotation_to_accumulate)."""
        h, w = self.ns["image"].shape[:2]
        mask = np.zeros((h, w), np.uint8)
        cv2.polylines(mask, [np.array(points, np.int32)], False, 1, thickness)
        self.ns["save_line_annotation_to_accumulate"](
            {"segmentation": mask}, name, self._category(name, "line"), points, thickness, keypoints
        )
        self.clock.now += 0.01

    def set_keypoints(self, coords: list, visibility: list | None = None) -> None:
        self.ns["point_coords"][:] = [list(c) for c in coords]
        self.ns["point_orders"][:] = list(range(1, len(coords) + 1))
        self.ns["point_labels"][:] = [1] * len(coords)
        self.ns["keypoint_visibility"][:] = list(visibility or [2] * len(coords))

    def set_status(self, structure: str, status: str) -> None:
        """Record absent / not visible for the image on screen."""
        self.ns["structure_status"].setdefault(self.ns["_status_key"](), {})[structure] = status

    def save(self, at: int | None = None) -> Path:
        """The final save (marmot): `<image on screen>_final_<ts>.json` + `.rlejson`."""
        if at is not None:
            self.clock.now = float(at)
        base = self.ns["file_path_base"]
        ts = int(self.clock.now)
        self.ns["save_final_via2_json"]()
        path = Path(f"{base}_final_{ts}.json")
        assert path.exists(), self.messages[-3:]
        return path

    def start_folder(self, images: list[Path], source: Path | None = None) -> None:
        """Load Folder (a folder session), optionally with the annotation file it was loaded from."""
        self.ns["folder_images"][:] = [str(p) for p in images]
        self.ns["folder_coco"]["path"] = str(source) if source else None

    def visit(self, index: int) -> list[tuple[str, np.ndarray, dict]]:
        """Next / Prev as folder_goto does it: goto, then on a first visit the image's own
        annotations from the file the session was loaded from (load_annotations)."""
        ns = self.ns
        path = ns["folder_images"][index]
        first = path not in ns["folder_mask_cache"] and path not in ns["folder_kp_cache"]
        self.goto(index)
        if ns["folder_coco"]["path"] and first:
            return self.load(Path(ns["folder_coco"]["path"]))
        return []

    def goto(self, index: int) -> None:
        """Next / Prev in a folder session (folder_goto: autosave, then the session's caches)."""
        ns = self.ns
        if ns["file_path_base"] is not None:
            ns["_folder_autosave_current"]()
        ns["_folder_store_points"]()
        ns["_folder_store_masks"]()
        ns["folder_index"] = index
        self.open_image(Path(ns["folder_images"][index]))
