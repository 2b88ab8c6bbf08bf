"""Click benchmark: how well does the model outline a part from clicks or a box, as a user does?

    python benchmarks/clicks.py --images DIR --masks DIR [--colors "head=200,0,0;..."] [--checkpoint PT]

The product's own prompt path (``engine.interactive.InteractiveSegmenter``, what the
Templates panel's click tool and the Review's Fix call): the photo is encoded once, then
every prompt is one ``predict`` with all clicks so far, exactly as the panel sends them
(no previous mask). For every photo, structure and connected part of it (8-connected; six
legs are six parts; parts under 0.1% of the photo's pixels are skipped):

* **one click**: one positive click at the part's most interior point (the maximum of its
  distance transform);
* **three clicks**: then up to two corrective clicks, each at the most interior point of the
  largest error region of the mask shown (positive on a missed region of the part, negative
  on a false-positive region), as interactive-segmentation benchmarks do; none when the
  mask has no error left;
* **box**: separately, a box around the part (its pixel bounding box).

A structure's predicted mask is the union of its parts' masks; IoU against the structure's
mask at the masks' resolution. mIoU per structure (mean over the photos that have it) and
overall (mean over the structures). The last line printed is exactly:

    clicks: one_click_miou=A.A three_click_miou=B.B box_miou=C.C

Photos: with a checkpoint that records its evaluation photos (the test-bed checkpoints),
only photos never used in its training: those evaluation photos, or in another folder
(e.g. the 9-class one) the copies of them, found by pixels (``--all-images``: every photo).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from quality import BEETLE_COLORS, CHECKPOINT_HELP, PACKAGED, checkpoint_meta, checkpoint_path, pair_images  # noqa: E402

MIN_SHARE = 0.001  # parts under 0.1% of the photo are skipped
CORRECTIONS = 2


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) pixel indices of the most interior pixel of a bool mask: the maximum of its
    distance transform, the image border counting as outside (of several, the one nearest
    the mask's centroid)."""
    m = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(m, cv2.DIST_L2, 5)[1:-1, 1:-1]
    ys, xs = np.nonzero(dist >= dist.max())
    cy, cx = np.argwhere(mask).mean(0)
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return float(xs[k]), float(ys[k])


def components(mask: np.ndarray, min_pixels: int = 1) -> list[np.ndarray]:
    """The 8-connected parts of a bool mask with at least ``min_pixels`` pixels, largest first."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    order = sorted(range(1, n), key=lambda c: -int(stats[c, cv2.CC_STAT_AREA]))
    return [lab == c for c in order if stats[c, cv2.CC_STAT_AREA] >= min_pixels]


def corrective_click(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, int] | None:
    """(x, y, label) at the most interior point of the largest error region of ``pred``:
    label 1 on a missed region of ``truth``, 0 on a false-positive region; None without error."""
    missed = components(truth & ~pred)[:1]
    extra = components(pred & ~truth)[:1]
    if not missed and not extra:
        return None
    positive = bool(missed) and (not extra or missed[0].sum() >= extra[0].sum())
    x, y = interior_point(missed[0] if positive else extra[0])
    return x, y, int(positive)


def count_prompts(segmenter) -> dict[str, float]:
    """Wrap ``segmenter.predict`` to count its calls and their seconds (the zoom-in pass's crops
    included, the whole photo's encoding not)."""
    counts = {"prompts": 0, "seconds": 0.0}
    predict = segmenter.predict

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return predict(*args, **kwargs)
        finally:
            counts["prompts"] += 1
            counts["seconds"] += time.perf_counter() - t

    segmenter.predict = timed
    return counts


def part_box(part: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(part)
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def outline_part(segmenter, part: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The three prompt settings for one part -> {setting: (H, W) bool on the mask grid}."""

    def predict(points, labels, box=None):
        mask, _ = segmenter.predict(points, labels, box=box)
        if mask.shape != shape:
            mask = (
                cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            )
        return mask

    scale = np.array([segmenter.image_shape[1] / shape[1], segmenter.image_shape[0] / shape[0]])
    to_image = lambda x, y: tuple((np.array([x, y]) + 0.5) * scale - 0.5)  # noqa: E731 mask px -> image px
    points, labels = [to_image(*interior_point(part))], [1]
    out = {"one_click": predict(points, labels)}
    mask = out["one_click"]
    for _ in range(CORRECTIONS):
        click = corrective_click(mask, part)
        if click is None:
            break
        points.append(to_image(click[0], click[1]))
        labels.append(click[2])
        mask = predict(points, labels)
    out["three_click"] = mask
    x0, y0, x1, y1 = part_box(part)
    (bx0, by0), (bx1, by1) = to_image(x0, y0), to_image(x1, y1)
    out["box"] = predict(None, None, box=(bx0, by0, bx1, by1))
    return out


def held_out_pairs(pairs, meta: dict, all_images: bool, data5: Path):
    """The photos never used in the checkpoint's training (see the module docstring)."""
    held = set(meta.get("eval_images") or [])
    if all_images or not held:
        return pairs, "all photos"
    names = {p[0].name for p in pairs}
    if held <= names:
        return [p for p in pairs if p[0].name in held], "the checkpoint's evaluation photos"
    if not (data5 / "images").is_dir():
        return pairs, "all photos (the checkpoint's evaluation photos are not here to compare)"
    from descriptron_sam2pal.engine.preprocess import prepare_image

    def thumb(path):
        g = prepare_image(path, 256).pixels.astype(np.float32).mean(2)
        return g.reshape(32, 8, 32, 8).mean((1, 3))

    ref = np.stack([thumb(data5 / "images" / n) for n in sorted(held) if (data5 / "images" / n).is_file()])
    keep = [p for p in pairs if np.abs(ref - thumb(p[0])[None]).mean((1, 2)).min() < 6.0]
    if not keep:
        return pairs, "all photos (none is a copy of the checkpoint's evaluation photos)"
    return keep, "copies of the checkpoint's evaluation photos"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, required=True, help="folder of photos")
    p.add_argument(
        "--masks", type=Path, required=True, help="folder of colour/indexed mask PNGs (same names)"
    )
    p.add_argument(
        "--colors", default=BEETLE_COLORS, help="structure=R,G,B;... (default: the 5-class beetle map)"
    )
    p.add_argument(
        "--checkpoint", type=checkpoint_path, default=PACKAGED, help=CHECKPOINT_HELP
    )
    p.add_argument(
        "--all-images", action="store_true", help="every photo, also those the checkpoint trained on"
    )
    p.add_argument("--max-images", type=int, default=0, help="at most this many photos (0: all)")
    p.add_argument(
        "--data5",
        type=Path,
        default=REPO.parent / "shared" / "data" / "beetleflow-5class-train",
        help="the test-bed's 5-class folder, to find copies of its evaluation photos",
    )
    p.add_argument(
        "--zoom",
        choices=("on", "off"),
        default=None,
        help="the zoom-in pass for small parts (engine/zoom_in.py; default: what the product does)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine import zoom_in
    from descriptron_sam2pal.imaging.io import load_image
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png, parse_colors
    from descriptron_sam2pal.model.build import build_model

    colors = parse_colors(args.colors)
    pairs, which = held_out_pairs(
        pair_images(args.images, args.masks), checkpoint_meta(args.checkpoint), args.all_images, args.data5
    )
    if args.max_images:
        pairs = pairs[: args.max_images]
    print(f"{len(pairs)} photos ({which}), checkpoint {args.checkpoint}", flush=True)
    model = build_model(checkpoint=args.checkpoint, device=args.device)
    zoom = zoom_in.ON_BY_DEFAULT if args.zoom is None else args.zoom == "on"
    segmenter = zoom_in.ZoomInSegmenter(model, FeatureEncoder(model, max_memory_bytes=64 << 20), zoom=zoom)
    print(f"zoom-in pass: {'on' if zoom else 'off'}", flush=True)
    prompts = count_prompts(segmenter)
    settings = ("one_click", "three_click", "box")
    scores = {n: {s: [] for s in settings} for n in colors}
    n_parts = {n: 0 for n in colors}
    t0 = time.time()
    for image_path, mask_path in pairs:
        masks = masks_from_color_png(mask_path, colors)
        segmenter.set_image(load_image(image_path))
        for name, truth in masks.items():
            parts = components(truth, max(1, int(np.ceil(MIN_SHARE * truth.size))))
            if not parts:
                continue
            union = {s: np.zeros_like(truth) for s in settings}
            for part in parts:
                for s, m in outline_part(segmenter, part, truth.shape).items():
                    union[s] |= m
            n_parts[name] += len(parts)
            for s in settings:
                scores[name][s].append(iou(union[s], truth))
    seconds = time.time() - t0
    per = {
        n: {s: round(100 * float(np.mean(v)), 1) for s, v in scores[n].items()}
        for n in colors
        if scores[n]["box"]
    }
    print(f"{'structure':<12} {'photos':>6} {'parts':>6} {'1 click':>8} {'3 clicks':>9} {'box':>6}")
    for n, v in per.items():
        print(
            f"{n:<12} {len(scores[n]['box']):>6} {n_parts[n]:>6} {v['one_click']:>8.1f} "
            f"{v['three_click']:>9.1f} {v['box']:>6.1f}"
        )
    overall = {s: round(float(np.mean([v[s] for v in per.values()])), 1) if per else 0.0 for s in settings}
    per_prompt = prompts["seconds"] / max(1, prompts["prompts"])
    print(f"({len(pairs)} photos, {seconds:.0f} s; mIoU = mean over the {len(per)} structures)")
    print(
        f"{prompts['prompts']} prompts, {per_prompt:.3f} s per prompt (photo encoding not included), "
        f"{segmenter.windows} zoomed crops ({segmenter.looks} looked around first, "
        f"{segmenter.smaller_looks} closer looks at a smaller answer), "
        f"{torch.get_num_threads()} thread(s)"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "checkpoint": str(args.checkpoint),
                    "photos": [p[0].name for p in pairs],
                    "which": which,
                    "per_structure": per,
                    "overall": overall,
                    "parts": n_parts,
                    "seconds": round(seconds, 1),
                    "zoom": zoom,
                    "prompts": prompts["prompts"],
                    "seconds_per_prompt": round(per_prompt, 4),
                    "zoomed_crops": segmenter.windows,
                    "looks": segmenter.looks,
                    "smaller_looks": segmenter.smaller_looks,
                    "threads": torch.get_num_threads(),
                },
                indent=1,
            )
            + "\n"
        )
    print(
        f"clicks: one_click_miou={overall['one_click']:.1f} three_click_miou={overall['three_click']:.1f} "
        f"box_miou={overall['box']:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
