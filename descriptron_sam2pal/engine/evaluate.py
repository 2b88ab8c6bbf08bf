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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import cv2
import numpy as np
from PIL import Image

from .. import UserError
from ..store.stem import normalized_stem

Color = tuple[int, ...]
_MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_labelmap", "_gt", "_seg", "_segmentation")


# --------------------------------------------------------------------------- mask PNGs

def parse_colors(spec: str) -> dict[str, Color]:
    """``"head=200,0,0;pronotum=0,200,0"`` -> ``{"head": (200, 0, 0), ...}``.

    A single number (``"eye=3"``) is a palette index or grey value. Raises
    UserError for malformed entries, values outside 0..255 (0..65535 for a single
    value), and repeated names or colours.
    """
    out: dict[str, Color] = {}
    for part in (p.strip() for p in re.split(r"[;\n]", spec or "")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"colour map entry {part!r} is not 'name=R,G,B' (e.g. 'head=200,0,0;eye=0,0,255')")
        try:
            color = tuple(int(v) for v in value.replace(" ", "").split(","))
        except ValueError:
            raise UserError(f"colour map entry {part!r}: the colour must be integers 'R,G,B' or one index") from None
        limit = 65535 if len(color) == 1 else 255
        if len(color) not in (1, 3) or not all(0 <= v <= limit for v in color):
            raise UserError(f"colour map entry {part!r}: give R,G,B in 0..255 or a single index/grey value")
        if name in out:
            raise UserError(f"colour map names {name!r} twice; give each structure one colour")
        if color in out.values():
            other = next(n for n, c in out.items() if c == color)
            raise UserError(f"colour map gives {name!r} and {other!r} the same colour {value}; colours must differ")
        out[name] = color
    if not out:
        raise UserError("the colour map is empty; give e.g. 'head=200,0,0;eye=0,0,255'")
    return out


def _read_png(path: str | Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise UserError(f"{path}: mask file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read as an image ({exc}); give a PNG mask") from None


def masks_from_color_png(path: str | Path, colors: Mapping[str, Color] | str) -> dict[str, np.ndarray]:
    """{structure: (H, W) bool} of the pixels of each colour (exact match) in a colour or
    indexed mask PNG; a structure whose colour does not occur gets an empty mask.
    RGB colours are compared on the RGB rendering (palettes resolved, alpha ignored);
    single values on the palette index (indexed PNGs) or the grey value."""
    if isinstance(colors, str):
        colors = parse_colors(colors)
    img = _read_png(path)
    rgb = None
    raw = None
    out = {}
    for name, color in colors.items():
        if len(color) == 3:
            if rgb is None:
                rgb = np.asarray(img.convert("RGB"))
            out[name] = np.all(rgb == np.asarray(color, rgb.dtype), axis=-1)
        else:
            if raw is None:
                raw = np.asarray(img) if img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1") \
                    else np.asarray(img.convert("L"))
                if raw.ndim == 3:
                    raw = raw[..., 0]
            out[name] = raw == color[0]
    return out


def mask_from_binary_png(path: str | Path) -> np.ndarray:
    """(H, W) bool of a binary mask PNG: foreground where the grey value is at least half
    the image's maximum (0/255, 0/1 and antialiased masks alike); all False when blank."""
    img = _read_png(path)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(img).astype(np.float64)
    elif img.mode in ("LA", "RGBA", "PA") and np.asarray(img.convert("L")).max() == 0:
        values = np.asarray(img.getchannel("A")).astype(np.float64)  # mask drawn in alpha only
    else:
        values = np.asarray(img.convert("L")).astype(np.float64)
    top = values.max() if values.size else 0
    if top <= 0:
        return np.zeros(values.shape[:2], bool)
    return values >= top / 2.0


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


def _stem_of_mask_png(path: Path) -> str:
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
    if isinstance(pngs, (str, Path)) and Path(pngs).is_dir():
        pngs = sorted(p for p in Path(pngs).iterdir() if p.suffix.lower() == ".png")
    elif isinstance(pngs, (str, Path)):
        pngs = [pngs]
    out = {}
    for p in map(Path, pngs):
        masks = masks_from_color_png(p, colors)
        h, w = next(iter(masks.values())).shape
        out[_stem_of_mask_png(p)] = AnnotatedImage(h, w, {n: m for n, m in masks.items()}, exhaustive=True,
                                                   name=p.name)
    if not out:
        raise UserError(f"no mask PNG found in {pngs}")
    return out


def images_from_store(store: Any) -> dict[str, AnnotatedImage]:
    """Every image of a Descriptron store (or a path to one) with its structure masks."""
    from ..store import AnnotationStore

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
        lines = [f"{'structure':<20} {'mean IoU':>8} {'scored':>6} {'missed':>6} {'false+':>6} {'absent ok':>9}"]
        for n, s in self.structures.items():
            iou = f"{s.mean_iou:.3f}" if s.mean_iou is not None else "-"
            lines.append(f"{n:<20} {iou:>8} {len(s.ious):>6} {s.missed:>6} {s.false_present:>6} {s.true_absent:>9}")
        miou = f"{self.mean_iou:.3f}" if self.mean_iou is not None else "-"
        lines.append(f"mean IoU {miou} over {len(self.matched)} matched images"
                     f" ({len(self.unmatched_truth)} truth images without prediction,"
                     f" {len(self.unmatched_predictions)} predictions without truth)")
        return "\n".join(lines)


def _at_size(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    if mask.shape == (h, w):
        return mask
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


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
        from ..store import AnnotationStore

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
    report = EvaluationReport({n: StructureEvaluation(n) for n in names},
                              sorted(set(pred) & set(gt)), sorted(set(gt) - set(pred)), sorted(set(pred) - set(gt)))
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
                ev.ious[stem] = iou(_at_size(pmask, t.height, t.width), tmask)
            elif truth_present:
                ev.ious[stem] = 0.0
                ev.missed += 1
            elif pred_present:
                ev.ious[stem] = 0.0
                ev.false_present += 1
            else:
                ev.true_absent += 1
    return report
