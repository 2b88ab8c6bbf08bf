"""Reading a predictions file of ``sam2pal propagate`` into a review (:class:`ReviewSession`).

* A COCO file (``.json``/``.rlejson``; its companion is used for RLE masks): one structure
  per category per image (several annotations of a category are unioned); ``score``,
  ``object_score``, ``predicted_iou``, ``orientation`` are read from the annotation or its
  ``attributes``. A structure of the file's categories with no annotation on an image was
  predicted absent there (an image's optional ``predicted_absent`` {name: {"object_score":,
  "predicted_iou":}} adds SAM2's scores for those). Targets listed in ``info.errors`` are
  counted as not read.
* A ``.jsonl`` propagation journal (``TargetResult.to_json`` per line, possibly wrapped as
  ``{"result": ...}``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from descriptron_sam2pal.jobs.review import (
    ReviewError,
    ReviewItem,
    ReviewSession,
    ReviewTarget,
    optional_float,
)


def read_predictions(path: str | os.PathLike) -> ReviewSession:
    """The review of a predictions file (every item unreviewed); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"{path}: predictions file not found.")
    if path.suffix.lower() == ".jsonl":
        return session_from_journal(path)
    return session_from_coco(path)


def session_from_journal(path: Path) -> ReviewSession:
    """A ``.jsonl`` propagation journal: ``TargetResult.to_json`` per line (or ``{"result": ...}``)."""
    from descriptron_sam2pal.engine.results import TargetResult

    results = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                results.append(TargetResult.from_json(d.get("result", d)))
            except (ValueError, KeyError, TypeError) as e:
                raise ReviewError(f"{path}:{lineno}: not a propagation result ({e}).") from e
    return ReviewSession.from_results(results, path)


def session_from_coco(path: Path) -> ReviewSession:
    """A COCO predictions file; see :func:`read_predictions`."""
    from descriptron_sam2pal.store import AnnotationStore, StoreError

    try:
        preds = AnnotationStore.open(path)
    except StoreError as e:
        raise ReviewError(f"Cannot read the predictions: {e}") from e
    targets, items = [], []
    # Every structure the run propagated, in category order (absent ones have no annotation).
    structures = [n for n in preds.structure_names()]
    for rec in preds.images:
        t = ReviewTarget(
            rec.id,
            str(rec.path) if rec.path is not None else None,
            rec.height or 0,
            rec.width or 0,
            file_name=rec.file_name,
        )
        targets.append(t)
        by_name: dict[str, ReviewItem] = {}
        masks: dict[str, list] = {}
        for ann in preds.annotations_for(rec.id):
            if not ann.is_structure:
                continue
            try:
                mask = ann.mask()
            except StoreError as e:
                raise ReviewError(str(e)) from e
            attrs = ann.raw.get("attributes") if isinstance(ann.raw.get("attributes"), dict) else {}

            def value(key: str, ann=ann, attrs=attrs) -> Optional[float]:
                return optional_float(ann.raw.get(key, attrs.get(key)))

            found = masks.get(ann.category)
            if found is None:
                masks[ann.category] = [mask, value("score"), value("object_score"), value("predicted_iou")]
            else:  # several instances: one structure, the union, the worst score
                found[0] = found[0] | mask
                if value("score") is not None:
                    found[1] = value("score") if found[1] is None else min(found[1], value("score"))
            t.orientation = str(ann.raw.get("orientation", attrs.get("orientation")) or t.orientation)
        absent = rec.raw.get("predicted_absent") or {}
        if isinstance(absent, list):
            absent = {n: {} for n in absent}
        for name in structures:
            if name in masks:
                mask, score, obj, piou = masks[name]
                by_name[name] = ReviewItem(t, name, True, mask, score, obj, piou)
                by_name[name].compact()
            else:
                info = absent.get(name) if isinstance(absent.get(name), dict) else {}
                by_name[name] = ReviewItem(
                    t,
                    name,
                    False,
                    None,
                    None,
                    optional_float(info.get("object_score")),
                    optional_float(info.get("predicted_iou")),
                )
        items.extend(by_name.values())
    info = _info_of(path)
    info = info if isinstance(info, dict) else {}
    for err in info.get("errors") or []:
        if isinstance(err, dict):
            targets.append(
                ReviewTarget(
                    err.get("image_id"),
                    err.get("path"),
                    0,
                    0,
                    error=str(err.get("error") or "could not be read"),
                )
            )
    return ReviewSession(targets, items, path)


def _info_of(path: Path) -> Any:
    """The ``info`` of a COCO file (the store does not expose it)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("info")
    except (OSError, ValueError, AttributeError):
        return None
