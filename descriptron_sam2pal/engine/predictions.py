"""Writing propagation results: a COCO predictions file, or into a Descriptron store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .. import UserError
from ..imaging.masks import has_hole, mask_area, mask_bbox, mask_to_polygons, mask_to_rle, polygons_to_mask
from ..store.coco import write_pair
from ..store.stem import basename, companion_path
from .propagate import TargetResult


def _needs_rle(mask: np.ndarray, polygons: list) -> bool:
    """Same rule as the store: holes, or polygons that do not give the mask back."""
    return has_hole(mask) or not np.array_equal(polygons_to_mask(polygons, *mask.shape), mask)


def predictions_document(results: Iterable[TargetResult], categories: Mapping[str, int] | None = None
                         ) -> tuple[dict, dict]:
    """(COCO document, {annotation id: RLE}) of the results' present structures.

    images: ``id`` (the result's image id, else 1, 2, ...), ``file_name``, ``height``,
    ``width``; annotations: every component's polygon, ``bbox``, ``area``,
    ``category_id``, ``score`` (palindrome confidence, null when not computed),
    ``object_score``, ``predicted_iou``, ``orientation``; targets that failed are
    listed in ``info.errors``. ``categories`` fixes ids (e.g. the store's); new names get
    ids after the largest.
    """
    results = list(results)
    cats: dict[str, int] = dict(categories or {})
    for r in results:
        for name in r.structures:
            if name not in cats:
                cats[name] = max(cats.values(), default=0) + 1
    images, annotations, rle, errors = [], [], {}, []
    for index, r in enumerate(results, 1):
        if not r.ok:
            errors.append({"path": r.path, "image_id": r.image_id, "error": r.error})
            continue
        image_id = r.image_id if r.image_id is not None else index
        images.append({"id": image_id, "file_name": basename(r.path) if r.path else f"image_{index}",
                       "height": r.height, "width": r.width})
        for name, s in r.structures.items():
            if not s.present:
                continue
            polygons = [[float(v) for v in p] for p in mask_to_polygons(s.mask)]
            ann_id = len(annotations) + 1
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": cats[name], "segmentation": polygons,
                "area": mask_area(s.mask), "bbox": mask_bbox(s.mask), "iscrowd": 0, "instance_id": 1,
                "score": s.score, "object_score": s.object_score, "predicted_iou": s.predicted_iou,
                "orientation": r.orientation,
            })
            if _needs_rle(s.mask, polygons):
                rle[ann_id] = mask_to_rle(s.mask)
    doc = {"info": {"description": "SAM2-PAL predictions", "errors": errors},
           "images": images, "annotations": annotations,
           "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in sorted(cats.items(), key=lambda x: x[1])]}
    return doc, rle


def write_predictions(results: Iterable[TargetResult], path: str | Path,
                      categories: Mapping[str, int] | None = None) -> list[Path]:
    """Write ``path`` (.json, polygons) and its ``.rlejson`` companion (RLE for masks with
    holes) atomically, keeping a backup of files replaced. Returns the written paths."""
    path = Path(path)
    if path.suffix.lower() == ".rlejson":
        path = companion_path(path)
    doc, rle = predictions_document(results, categories)
    rle_doc = {**doc, "annotations": [{**a, "segmentation": rle[a["id"]]} if a["id"] in rle else a
                                      for a in doc["annotations"]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_pair([(path, doc), (companion_path(path), rle_doc)], indent=None, backup=path.exists())


@dataclass
class MergeSummary:
    """What ``merge_into_store`` did."""

    added: int = 0  # new annotations
    replaced: int = 0  # of those, how many replaced an earlier sam2pal prediction
    kept_user: list[str] = field(default_factory=list)  # "file: structure" left alone

    def __str__(self) -> str:
        text = f"merged {self.added} structure(s) into the store"
        if self.replaced:
            text += f" ({self.replaced} replacing earlier sam2pal predictions)"
        if self.kept_user:
            text += (f"; kept your own annotation and skipped the prediction for {len(self.kept_user)}: "
                     + ", ".join(self.kept_user[:5]) + (" ..." if len(self.kept_user) > 5 else ""))
        return text


def _is_ours(record) -> bool:
    attributes = record.raw.get("attributes")
    return isinstance(attributes, dict) and attributes.get("source") == "sam2pal"


def merge_into_store(store: Any, results: Iterable[TargetResult], min_score: float | None = None,
                     save: bool = False) -> MergeSummary:
    """Add each present structure of each result to a Descriptron store as an annotation
    with ``attributes`` {"source": "sam2pal", "score", "object_score", "predicted_iou",
    "orientation"}. Images are found by id, else by file (normalised stem), else added.

    The user's work is never replaced: where an image already has an annotation of that
    structure not made by sam2pal, the prediction is skipped (and listed); earlier sam2pal
    predictions of it are replaced, so merging twice does not pile up. ``min_score`` skips
    less confident predictions."""
    summary = MergeSummary()
    for r in results:
        if not r.ok or not r.structures:
            continue
        record = None
        if r.image_id is not None:
            try:
                record = store.image(r.image_id)
            except UserError:
                record = None
        if record is None and r.path:
            record = store.image_by_file(r.path) or store.add_image(r.path)
        if record is None:
            raise UserError(f"result {r.image_id!r} names no image file and no image of the store")
        if (record.height, record.width) != (r.height, r.width):
            raise UserError(f"{record.file_name}: the store says {record.width}x{record.height} px but the "
                            f"prediction is {r.width}x{r.height} px; was the image replaced? Propagate again")
        existing = [a for a in store.annotations_for(record.id) if a.is_structure]
        for name, s in r.structures.items():
            if not s.present or (min_score is not None and (s.score is None or s.score < min_score)):
                continue
            mine = [a for a in existing if a.category == name]
            if any(not _is_ours(a) for a in mine):
                summary.kept_user.append(f"{record.file_name}: {name}")
                continue
            store.add_structure(record.id, name, s.mask, attributes={
                "source": "sam2pal", "score": s.score, "object_score": s.object_score,
                "predicted_iou": s.predicted_iou, "orientation": r.orientation}, replace=bool(mine))
            summary.added += 1
            summary.replaced += bool(mine)
    if save:
        store.save()
    return summary
