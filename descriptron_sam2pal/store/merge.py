"""How predictions meet the store: ONE rule for finding a result's image, for what may be
written, and for what a write replaces. ``propagate --write-to`` and the Review's
Write back both go through here (no torch, no Qt).

* **Which image.** By file first (Descriptron's normalised stem of the file name, its own
  matching rule); by id only for a result without a file: the ids of a predictions
  file need not be the store's (integer ids especially).
* **What may be written.** Never over a person's work: an outline the user drew, or a
  prediction a person accepted or corrected in Review (``reviewed``), is kept unless the
  caller explicitly asks to replace the user's outline; never where the project marks
  the structure ``absent`` or ``unknown`` on that specimen (``structure_status``); never
  into a keypoint/line category; never a mask of another size than the store's image.
* **What a write replaces.** Unreviewed sam2pal predictions of that structure on that
  image (so merging twice does not pile up), without inheriting their attributes or
  notes; the user's outline only on explicit request (its notes then carry over). A
  prediction a person changed in Descriptron is theirs (``provenance.is_edited``: its
  mask or category no longer matches the fingerprint recorded when we wrote it).
* **What a status removes.** A structure the project marks ``absent``/``unknown`` on a
  specimen after we predicted it: our unreviewed, unchanged prediction of it there goes
  (``remove_stale_predictions``), and the summary says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from descriptron_sam2pal.store.provenance import FINGERPRINT, PREDICTION_SOURCE, fingerprint, is_edited, \
    is_prediction, is_replaceable

#: structure_status values that mean "do not predict or write this structure on this image".
SKIP_STATUSES = ("absent", "unknown")


def find_image(store: Any, image_id: Any = None, path: Any = None, file_name: Any = None) -> Any:
    """The store's image record for a result, or None (see the module docstring).
    A StoreError (several images match one file) propagates: it needs the user."""
    from descriptron_sam2pal.store.coco import StoreError

    for key in (path, file_name):
        if key:
            record = store.image_by_file(key)
            if record is not None:
                return record
    if not path and not file_name and image_id is not None:
        try:
            return store.image(image_id)
        except StoreError:
            return None
    return None


def skip_status(record: Any, name: str) -> str | None:
    """The record's structure_status of ``name`` when it says not to write it, else None."""
    status = (record.structure_status or {}).get(name)
    return status if status in SKIP_STATUSES else None


def why_not_writable(store: Any, record: Any, name: str, shape: tuple[int, int] | None,
                     replace_user: bool = False) -> str:
    """"" when a mask of ``shape`` for structure ``name`` may be written on ``record``;
    otherwise the reason, in words for the user. ``shape`` None: a structure recorded
    absent (no mask), which may not contradict an outline the store has."""
    if name in store.categories and name not in store.structure_names():
        return f'"{name}" is a keypoint (or Trash) category in the store'
    status = skip_status(record, name)
    outlines = [a for a in store.annotations_for(record.id) if a.kind == "mask" and a.category == name]
    if shape is None:
        if outlines:
            return "predicted absent, but the store has an outline of it on this specimen"
        if status not in (None, "absent"):
            return f'the project marks it "{status}" on this specimen'
        return ""
    if status is not None:
        return f'the project marks it "{status}" on this specimen'
    if (record.height, record.width) != tuple(shape):
        return (f"the mask is {shape[1]} x {shape[0]} px but the store's image is "
                f"{record.width} x {record.height} px (was the photo replaced? segment it again)")
    kept = [a for a in outlines if not is_replaceable(a)]
    if kept and not replace_user:
        if any(is_edited(a) for a in kept):
            return "changed by a person in Descriptron since it was predicted (theirs now, kept)"
        reviewed = any(is_prediction(a) for a in kept)
        return ("already reviewed in an earlier session (kept)" if reviewed
                else "already outlined in the store (kept; choose Replace to overwrite)")
    return ""


def write_structure(store: Any, record: Any, name: str, mask: np.ndarray, attributes: dict,
                    replace_user: bool = False) -> Any:
    """Write ``mask`` as structure ``name`` on ``record`` (checked with ``why_not_writable``
    first), replacing unreviewed sam2pal predictions of it, and the user's outline only
    with ``replace_user``. Returns the new annotation id."""
    for old in [a for a in store.annotations_for(record.id) if a.kind == "mask" and a.category == name]:
        if is_replaceable(old):
            store.remove_annotation(record.id, old.id)  # nothing of it is inherited
    if attributes.get("source") == PREDICTION_SOURCE:
        attributes = {**attributes, FINGERPRINT: fingerprint(mask, name)}  # what we wrote, to tell edits
    return store.add_structure(record.id, name, mask, attributes=attributes, replace=replace_user)


def remove_stale_predictions(store: Any, record: Any) -> list[str]:
    """Remove our unreviewed, unchanged predictions of the structures ``record`` marks
    absent/unknown (``structure_status``, set in Descriptron after we predicted them).
    Returns "file: structure: why" for each, for the summary."""
    removed = []
    status = record.structure_status or {}
    for ann in list(store.annotations_for(record.id)):
        if ann.kind == "mask" and status.get(ann.category) in SKIP_STATUSES and is_replaceable(ann):
            store.remove_annotation(record.id, ann.id)
            removed.append(f"{record.file_name}: {ann.category}: "
                           f"marked \"{status[ann.category]}\" since it was "
                           "predicted; the unreviewed prediction was removed")
    return removed


class MergeSummary:
    """What ``merge_results`` did: ``added`` annotations (``replaced`` of them replaced an
    earlier unreviewed prediction) and ``kept`` ("file: structure: why") left alone;
    ``written`` [(image id, structure, annotation id)] of what was added (as the Review's
    write-back summary lists it), so a caller can find those annotations again; ``session_files``
    the Descriptron folder-session files the save wrote (set by the caller after saving)."""

    def __init__(self) -> None:
        self.added = 0
        self.replaced = 0
        self.kept: list[str] = []
        self.removed: list[str] = []
        self.written: list[tuple] = []
        self.session_files: list = []

    def __iadd__(self, other: "MergeSummary") -> "MergeSummary":
        self.added += other.added
        self.replaced += other.replaced
        self.kept.extend(other.kept)
        self.removed.extend(other.removed)
        self.written.extend(other.written)
        return self

    def __str__(self) -> str:
        text = f"merged {self.added} structure(s) into the store"
        if self.replaced:
            text += f" ({self.replaced} replacing earlier unreviewed sam2pal predictions)"
        if self.kept:
            text += (f"; kept what the store had and skipped {len(self.kept)} prediction(s): "
                     + "; ".join(self.kept[:5]) + (" ..." if len(self.kept) > 5 else ""))
        if self.removed:
            text += (f"; removed {len(self.removed)} earlier prediction(s): "
                     + "; ".join(self.removed[:5]) + (" ..." if len(self.removed) > 5 else ""))
        for path in self.session_files:
            text += (f"; in Descriptron's folder session they are in {path.name}: after Load Folder, "
                     "Load Annotations that file")
        return text


def merge_results(store: Any, results: Any, min_score: float | None = None) -> MergeSummary:
    """Add each present structure of each propagation result to ``store`` (unsaved) with
    ``attributes`` {"source": "sam2pal", "score", "object_score", "predicted_iou", "palindrome_confidence",
    "orientation"}; an image the store lacks is added. Nothing of a person's is replaced
    (see the module docstring); ``min_score`` skips less confident predictions."""
    summary = MergeSummary()
    for r in results:
        if not r.ok:
            continue
        record = find_image(store, r.image_id, r.path)
        if record is not None:
            summary.removed += remove_stale_predictions(store, record)
        if not r.structures:
            continue
        if record is None:
            if not r.path:
                raise ValueError(f"result {r.image_id!r} names no image file and no image of the store")
            record = store.add_image(r.path)
        for name, s in r.structures.items():
            if not s.present or (min_score is not None and (s.score is None or s.score < min_score)):
                continue
            reason = why_not_writable(store, record, name, s.mask.shape)
            if reason:
                summary.kept.append(f"{record.file_name}: {name}: {reason}")
                continue
            replaced = any(a.kind == "mask" and a.category == name for a in store.annotations_for(record.id))
            ann_id = write_structure(store, record, name, s.mask, {
                "source": PREDICTION_SOURCE, "score": s.score, "object_score": s.object_score,
                "predicted_iou": s.predicted_iou, "palindrome_confidence": s.palindrome_confidence,
                "orientation": r.orientation})
            summary.written.append((record.id, name, ann_id))
            summary.added += 1
            summary.replaced += replaced
    return summary
