"""Beetle test-bed data: the seeded split and the letterboxed training cache.

The split (``split.json`` beside this file) is a seeded permutation of the
image names: ``pretrain`` images train the test-bed model, ``eval`` images are
never seen in pretraining and are what the quality benchmark runs on. The held
out structure type is never supervised in pretraining (its pixels are plain
background there).

The cache (``data_<size>.npz``) holds every image letterboxed exactly as the
engine does (``engine.preprocess.prepare_image``), a label map (0 background,
i = the i-th structure of ``COLORS``) and the real-pixel mask, so that the
training step needs neither the imaging layer nor the original files (it can
run on a machine that only has torch and sam2).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPLIT_FILE = HERE / "split.json"
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "beetleflow-5class-train"

# The data set's colour map (its README), in label-map order (label = index + 1).
COLORS = {"head": (200, 0, 0), "pronotum": (0, 200, 0), "elytra": (0, 0, 200),
          "legs": (200, 200, 0), "antennas": (200, 0, 200)}
COLOR_SPEC = ";".join(f"{n}={','.join(map(str, c))}" for n, c in COLORS.items())
HELD_OUT = "head"  # never supervised in pretraining (see README.md for why)
N_EVAL = 72  # images held out of pretraining (200 pretrain, 72 eval)
SPLIT_SEED = 0


def image_names(data_dir: Path) -> list[str]:
    names = sorted(p.name for p in (data_dir / "images").iterdir() if p.suffix.lower() == ".png")
    missing = [n for n in names if not (data_dir / "masks" / n).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} images have no mask in {data_dir / 'masks'} (e.g. {missing[0]})")
    return names


def make_split(names: list[str], seed: int = SPLIT_SEED, n_eval: int = N_EVAL) -> dict:
    order = np.random.RandomState(seed).permutation(len(names))
    eval_names = sorted(names[i] for i in order[:n_eval])
    pretrain = sorted(names[i] for i in order[n_eval:])
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    return {"seed": seed, "held_out_structure": HELD_OUT, "colors": COLOR_SPEC,
            "all_names_sha256": digest, "pretrain": pretrain, "eval": eval_names}


def load_or_make_split(data_dir: Path) -> dict:
    """The committed split; checked against the data folder (same names), else made and written."""
    names = image_names(data_dir)
    split = make_split(names)
    if SPLIT_FILE.exists():
        saved = json.loads(SPLIT_FILE.read_text())
        if saved["all_names_sha256"] != split["all_names_sha256"]:
            raise SystemExit(f"{data_dir} does not hold the images {SPLIT_FILE} was made from")
        if saved != split:
            raise SystemExit(f"{SPLIT_FILE} differs from the seeded split; delete it to remake it")
        return saved
    SPLIT_FILE.write_text(json.dumps(split, indent=1) + "\n")
    return split


def build_cache(data_dir: Path, names: list[str], size: int, path: Path) -> None:
    """Letterbox every image (engine.preprocess) and its colour mask into ``path`` (npz)."""
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png
    from descriptron_sam2pal.engine.preprocess import prepare_image

    images = np.zeros((len(names), size, size, 3), np.uint8)
    labels = np.zeros((len(names), size, size), np.uint8)
    valid = np.zeros((len(names), size, size), bool)
    for i, name in enumerate(names):
        prepared = prepare_image(data_dir / "images" / name, size)
        lb = prepared.letterbox
        masks = masks_from_color_png(data_dir / "masks" / name, COLORS)
        images[i] = prepared.pixels
        valid[i] = lb.valid_mask()
        soft = np.stack([lb.apply_mask(masks[n]) for n in COLORS])  # (C, S, S)
        best = soft.argmax(0)
        labels[i] = np.where(soft.max(0) >= 0.5, best + 1, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, labels=labels, valid=valid, names=np.array(names))


def load_cache(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def eval_cache(data_dir: Path, size: int, out: Path) -> dict[str, np.ndarray]:
    """The held-out evaluation photos at ``size`` px, cached in ``out/eval_<size>.npz`` (built once)."""
    path = out / f"eval_{size}.npz"
    if not path.exists():
        build_cache(data_dir, load_or_make_split(data_dir)["eval"], size, path)
    return load_cache(path)
