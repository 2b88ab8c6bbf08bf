"""Benchmark inputs: the template (image + colour mask), the targets, and the
reference's COCO template file. Imports numpy/PIL/cv2 only (no torch), so the
orchestrating process stays small.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

# BeetleFlow 5-class colour map (shared/data/beetleflow-5class-train/README.md).
BEETLE_COLORS = {
    "head": (200, 0, 0),
    "pronotum": (0, 200, 0),
    "elytra": (0, 0, 200),
    "legs": (200, 200, 0),
    "antennas": (200, 0, 200),
}


@dataclass
class Dataset:
    source: str  # "beetleflow", "folder" or "generated"
    images_dir: Path
    template_image: Path
    template_mask: Path  # RGB colour mask, same size as the template image
    colors: dict[str, tuple[int, int, int]]
    targets: list[Path]  # never contains the template
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (w, h) of the targets used

    @property
    def structures(self) -> list[str]:
        return list(self.colors)

    def colors_arg(self) -> str:
        """``--colors`` value for sam2pal: "head=200,0,0;pronotum=0,200,0;..."."""
        return ";".join(f"{k}={r},{g},{b}" for k, (r, g, b) in self.colors.items())


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _colour_areas(mask: np.ndarray, colors: dict) -> dict[str, int]:
    return {k: int((mask == np.array(c, dtype=np.uint8)).all(-1).sum()) for k, c in colors.items()}


def _find_masks_dir(images_dir: Path) -> Path | None:
    for cand in (images_dir.parent / "masks", images_dir / "masks"):
        if cand.is_dir():
            return cand
    return None


def load_dataset(images_dir: Path, n_targets: int, cache: Path, seed: int = 0) -> Dataset:
    """Template + ``n_targets`` targets from ``images_dir`` (beetle photos with their
    colour masks when present), else generated images of similar sizes."""
    if images_dir.is_dir() and _images_in(images_dir):
        images = _images_in(images_dir)
        masks_dir = _find_masks_dir(images_dir)
        if masks_dir is not None:
            # The first image (sorted) whose mask has every structure is the template.
            colors = dict(BEETLE_COLORS)
            for img in images:
                mpath = masks_dir / img.name
                if not mpath.exists():
                    continue
                m = _rgb(mpath)
                areas = _colour_areas(m, colors)
                if min(areas.values()) >= 50:
                    targets = [p for p in images if p != img][:n_targets]
                    return Dataset("beetleflow" if "beetleflow" in str(images_dir) else "folder",
                                   images_dir, img, mpath, colors, targets, _sizes(targets))
        # A folder without usable masks: outline generated parts on its first image.
        template = images[0]
        mask_path = cache / "generated_template_masks" / (template.stem + ".png")
        _write_generated_mask(_rgb(template).shape[:2], mask_path, seed)
        targets = images[1:1 + n_targets]
        return Dataset(
            "folder", images_dir, template, mask_path, dict(BEETLE_COLORS), targets, _sizes(targets)
        )
    return _generated(n_targets, cache / "generated_images", seed)


def _sizes(paths: list[Path]) -> list[tuple[int, int]]:
    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(im.size)
    return out


def _write_generated_mask(hw: tuple[int, int], path: Path, seed: int) -> None:
    """Five elliptical 'structures' (beetle colour map) inside an image of size hw."""
    import cv2

    if path.exists():
        return
    h, w = hw
    mask = np.zeros((h, w, 3), np.uint8)
    cx = w // 2
    parts = [("elytra", 0.62, 0.22, 0.20), ("pronotum", 0.36, 0.16, 0.08), ("head", 0.24, 0.10, 0.06),
             ("legs", 0.55, 0.42, 0.03), ("antennas", 0.12, 0.25, 0.02)]
    for name, fy, fw, fh in parts:
        cv2.ellipse(mask, (cx, int(fy * h)), (max(3, int(fw * w)), max(3, int(fh * h))), 0, 0, 360,
                    tuple(int(v) for v in BEETLE_COLORS[name]), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)


def _generated(n_targets: int, folder: Path, seed: int) -> Dataset:
    """Textured 'specimens' of the beetle photos' size range (106-744 x 128-1219 px)."""
    import cv2

    rng = random.Random(seed)
    img_dir = folder / "images"
    mask_dir = folder / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_targets + 1):
        p = img_dir / f"gen_{i:04d}.png"
        paths.append(p)
        if p.exists():
            continue
        w = rng.randint(106, 744)
        h = rng.randint(max(128, int(w * 1.2)), min(1219, max(129, int(w * 2.2))))
        nrng = np.random.default_rng(seed * 100003 + i)
        img = (200 + nrng.integers(-20, 20, (h, w, 3))).astype(np.uint8)
        cv2.ellipse(img, (w // 2, int(h * 0.55)), (int(w * 0.3), int(h * 0.35)), 0, 0, 360,
                    tuple(int(v) for v in nrng.integers(20, 90, 3)), -1)
        Image.fromarray(img).save(p)
        _write_generated_mask((h, w), mask_dir / p.name, seed + i)
    return Dataset("generated", img_dir, paths[0], mask_dir / paths[0].name, dict(BEETLE_COLORS),
                   paths[1:], _sizes(paths[1:]))


def link_targets(targets: list[Path], folder: Path) -> Path:
    """A folder holding exactly these targets (symbolic links: no data is copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for p in targets:
        os.symlink(p.resolve(), folder / p.name)
    return folder


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major, first run counts zeros), as Descriptron writes."""
    h, w = mask.shape
    flat = mask.astype(np.uint8).T.reshape(-1)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return {"size": [int(h), int(w)], "counts": [int(r) for r in runs]}


def write_reference_template(ds: Dataset, path: Path) -> Path:
    """The template's structures as a COCO file (one RLE annotation per structure),
    for the reference's ``--template_json``: the only way it takes several structures."""
    mask = _rgb(ds.template_mask)
    h, w = mask.shape[:2]
    anns, cats = [], []
    for i, (name, colour) in enumerate(ds.colors.items(), start=1):
        m = (mask == np.array(colour, dtype=np.uint8)).all(-1)
        cats.append({"id": i, "name": name, "supercategory": "object"})
        ys, xs = np.nonzero(m)
        bbox = [
            float(xs.min()),
            float(ys.min()),
            float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1),
        ]
        rle = uncompressed_rle(m)
        if not np.array_equal(_decode_like_reference(rle), m):
            raise AssertionError(f"RLE of {name} does not decode to its mask")
        anns.append({"id": i, "image_id": 1, "category_id": i, "segmentation": rle,
                     "area": int(m.sum()), "bbox": bbox, "iscrowd": 0})
    coco = {"images": [{"id": 1, "file_name": ds.template_image.name, "height": h, "width": w}],
            "annotations": anns, "categories": cats}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco))
    return path


def _decode_like_reference(rle: dict) -> np.ndarray:
    """Uncompressed RLE decoded the way the reference's _coco_segmentation_to_mask does."""
    h, w = rle["size"]
    flat = np.zeros(h * w, dtype=np.uint8)
    idx, val = 0, 0
    for run in rle["counts"]:
        flat[idx:idx + run] = val
        idx += run
        val = 1 - val
    return flat.reshape((w, h)).T.astype(bool)
