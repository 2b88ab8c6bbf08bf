"""Evaluation: IoU per structure and mean IoU against ground truth (ALGORITHM.md).

Ground truth is a Descriptron/COCO annotation file (or folder store), or colour /
indexed mask PNGs with a colour -> structure map such as
``"head=200,0,0;pronotum=0,200,0"`` (RGB) or ``"head=1;eye=2"`` (palette index
or grey value). Predictions are propagation results or a COCO predictions file.
Images are matched by Descriptron's normalised stem; IoU is computed at the
ground truth's resolution (a prediction of another size is resized to it,
nearest neighbour).

Per image and structure:
* truth present, prediction present -> their IoU;
* truth present, prediction absent -> IoU 0 (a *miss*);
* truth absent (``structure_status`` "absent", or not drawn on an exhaustive
  colour PNG), prediction absent -> no IoU, counted as *true absent*;
* truth absent, prediction present -> IoU 0 (a *false present*);
* truth "unknown", or a COCO image without that structure and without a
  status (not annotated) -> not scored, counted.
The mean IoU is the mean over structures of their mean IoU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.mask_png import Color, masks_from_color_png, parse_colors
from descriptron_sam2pal.imaging.masks import resize_mask
from descriptron_sam2pal.store.stem import normalized_stem

_MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_labelmap", "_gt", "_seg", "_segmentation")


# --------------------------------------------------------------------------- inputs

@dataclass
class AnnotatedImage:
    """Masks of one image (truth or prediction). ``masks[name]`` None = predicted absent.
    ``exhaustive``: every structure not drawn is absent (colour PNGs)."""

    height: int
    width: int
    masks: dict[str, np.ndarray | None]
    status: dict[str, str] = field(default_factory=dict)
    exhaustive: bool = False
    name: str = ""


def mask_png_stem(path: Path) -> str:
    stem = normalized_stem(path.name)
    for suffix in _MASK_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def truth_from_color_pngs(pngs: str | Path | Iterable[str | Path], colors: Mapping[str, Color] | str
                          ) -> dict[str, AnnotatedImage]:
    """Ground truth from colour/indexed mask PNGs (a folder, or a list of files), keyed by
    the normalised stem of each PNG without a ``_mask``/``_label``/``_gt``... suffix."""
    if isinstance(colors, str):
        colors = parse_colors(colors)
    folder = Path(pngs) if isinstance(pngs, (str, Path)) and Path(pngs).is_dir() else None
    if folder is not None:
        pngs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
        if not pngs:
            raise UserError(f"the ground truth folder {folder} holds no mask PNG"
                            + (" (it is empty)" if not any(folder.iterdir()) else "")
                            + ": give the folder of mask PNGs named like the photos (s0.png or s0_mask.png), "
                            "or a COCO annotation file")
    elif isinstance(pngs, (str, Path)):
        pngs = [pngs]
    out = {}
    for p in map(Path, pngs):
        masks = masks_from_color_png(p, colors)
        h, w = next(iter(masks.values())).shape
        out[mask_png_stem(p)] = AnnotatedImage(h, w, {n: m for n, m in masks.items()}, exhaustive=True,
                                                   name=p.name)
    if not out:
        raise UserError(f"no mask PNG found in {pngs}")
    if not any(m.any() for image in out.values() for m in image.masks.values()):
        listed = ", ".join(f"{n}={','.join(map(str, c))}" for n, c in colors.items())
        raise UserError(
            f"none of the colours {listed} occurs in the {len(out)} mask PNG(s); check the colour "
            "map against the masks (exact colours; masks saved as JPEG have altered colours)"
        )
    return out


def images_from_store(store: Any) -> dict[str, AnnotatedImage]:
    """Every image of a Descriptron store (or a path to one) with its structure masks."""
    from descriptron_sam2pal.store import AnnotationStore

    if not hasattr(store, "images"):
        store = AnnotationStore.open(store)
    out = {}
    for rec in store.images:
        masks = store.structure_masks(rec.id)
        h, w = rec.height, rec.width
        if (h is None or w is None) and masks:
            h, w = next(iter(masks.values())).shape
        out[normalized_stem(rec.file_name)] = AnnotatedImage(int(h or 0), int(w or 0), dict(masks),
                                                             dict(rec.structure_status or {}),
                                                             name=rec.file_name)
    return out


def images_from_results(results: Iterable[Any]) -> dict[str, AnnotatedImage]:
    """Propagation results (TargetResult) keyed by the stem of their file (or image id)."""
    out = {}
    for r in results:
        if not r.ok:
            continue
        key = normalized_stem(r.path if r.path else str(r.image_id))
        out[key] = AnnotatedImage(r.height, r.width, {n: (s.mask if s.present else None)
                                                      for n, s in r.structures.items()},
                                  name=Path(r.path).name if r.path else str(r.image_id))
    return out


def _as_images(value: Any, colors=None) -> dict[str, AnnotatedImage]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, Path)):
        p = Path(value)
        if p.suffix.lower() == ".png" or (p.is_dir() and colors is not None):
            if colors is None:
                raise UserError(f"{p}: colour mask PNGs need a colour map, e.g. 'head=200,0,0;eye=0,0,255'")
            return truth_from_color_pngs(p, colors)
        return images_from_store(p)
    if hasattr(value, "images") and hasattr(value, "structure_masks"):
        return images_from_store(value)
    return images_from_results(value)


# --------------------------------------------------------------------------- scoring

@dataclass
class StructureEvaluation:
    name: str
    ious: dict[str, float] = field(default_factory=dict)  # image stem -> IoU
    missed: int = 0  # truth present, predicted absent (IoU 0)
    false_present: int = 0  # truth absent, predicted present (IoU 0)
    true_absent: int = 0  # truth absent, predicted absent (not scored)
    not_scored: int = 0  # truth unknown or not annotated

    @property
    def mean_iou(self) -> float | None:
        return float(np.mean(list(self.ious.values()))) if self.ious else None


@dataclass
class EvaluationReport:
    structures: dict[str, StructureEvaluation]
    matched: list[str]
    unmatched_truth: list[str]
    unmatched_predictions: list[str]

    @property
    def mean_iou(self) -> float | None:
        means = [s.mean_iou for s in self.structures.values() if s.mean_iou is not None]
        return float(np.mean(means)) if means else None

    def to_dict(self) -> dict:
        return {"mean_iou": self.mean_iou, "matched_images": len(self.matched),
                "unmatched_truth": self.unmatched_truth, "unmatched_predictions": self.unmatched_predictions,
                "structures": {n: {"mean_iou": s.mean_iou, "scored": len(s.ious), "missed": s.missed,
                                   "false_present": s.false_present, "true_absent": s.true_absent,
                                   "not_scored": s.not_scored, "ious": s.ious}
                               for n, s in self.structures.items()}}

    def format(self) -> str:
        lines = [
            f"{'structure':<20} {'mean IoU':>8} {'scored':>6} {'missed':>6} {'false+':>6} {'absent ok':>9}"
        ]
        for n, s in self.structures.items():
            iou = f"{s.mean_iou:.3f}" if s.mean_iou is not None else "-"
            lines.append(
                f"{n:<20} {iou:>8} {len(s.ious):>6} {s.missed:>6} {s.false_present:>6} {s.true_absent:>9}"
            )
        miou = f"{self.mean_iou:.3f}" if self.mean_iou is not None else "-"
        lines.append(f"mean IoU {miou} over {len(self.matched)} matched images"
                     f" ({len(self.unmatched_truth)} truth images without prediction,"
                     f" {len(self.unmatched_predictions)} predictions without truth)")
        return "\n".join(lines)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def evaluate(predictions: Any, truth: Any, colors: Mapping[str, Color] | str | None = None,
             structures: Iterable[str] | None = None) -> EvaluationReport:
    """Score ``predictions`` (TargetResults, a COCO predictions file/store, or a
    {stem: AnnotatedImage} dict) against ``truth`` (a COCO file/store, colour mask PNGs
    (a folder or file) with ``colors``, or a dict). ``structures`` defaults to every
    structure the predictions name."""
    names: list[str] = []
    if isinstance(predictions, (str, Path)) and Path(predictions).suffix.lower() != ".png":
        from descriptron_sam2pal.store import AnnotationStore

        predictions = AnnotationStore.open(predictions)
    if hasattr(predictions, "structure_names"):
        # A predictions file lists every structure it predicted among its categories, also
        # those predicted absent everywhere (they have no annotation to name them).
        names = list(predictions.structure_names())
    pred = _as_images(predictions)
    gt = _as_images(truth, colors)
    if structures is None:
        for p in pred.values():
            names.extend(n for n in p.masks if n not in names)
    else:
        names = list(structures)
    report = EvaluationReport(
        {n: StructureEvaluation(n) for n in names},
        sorted(set(pred) & set(gt)),
        sorted(set(gt) - set(pred)),
        sorted(set(pred) - set(gt)),
    )
    for stem in report.matched:
        p, t = pred[stem], gt[stem]
        for name in names:
            ev = report.structures[name]
            status = t.status.get(name)
            tmask = t.masks.get(name)
            if tmask is not None and tmask.any():
                truth_present = True
            elif status == "absent" or (t.exhaustive and status != "unknown"):
                truth_present = False
            else:  # "unknown", or nobody annotated it on that image
                ev.not_scored += 1
                continue
            pmask = p.masks.get(name)
            pred_present = pmask is not None and bool(pmask.any())
            if truth_present and pred_present:
                ev.ious[stem] = iou(resize_mask(pmask, t.height, t.width), tmask)
            elif truth_present:
                ev.ious[stem] = 0.0
                ev.missed += 1
            elif pred_present:
                ev.ious[stem] = 0.0
                ev.false_present += 1
            else:
                ev.true_absent += 1
    return report
