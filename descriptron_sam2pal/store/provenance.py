"""Provenance of annotations in a store: what sam2pal predicted, what a person outlined.

An annotation's ``attributes.source`` says who made it. Predictions (merged by
``propagate --write-to`` or written back from a review) are never used as
templates, so unverified predictions never become training labels.

**Descriptron's edits win.** Descriptron keeps an annotation's ``attributes`` when a person
corrects or relabels the outline, so ``source`` alone cannot tell our outline from theirs.
Every prediction we write therefore records a fingerprint of what we wrote: its category,
a hash of its mask bit for bit, and a coarse record of its shape (box, area and pixel counts
on an 8 x 8 grid over the box) in ``attributes.sam2pal_fingerprint``. Descriptron's load and
save of an untouched outline from the ``.json`` (its polygons) moves a few pixels along the
outline (1-3 px on 6 of 30 blob masks of 2,000-6,000 px, none on 26 small ones of 5-200 px;
measured with its own functions), so an outline still
counts as ours when, holes filled (a .json polygon cannot hold a hole, so Descriptron shows
our outline from the .json without them), its box is within 2 px and its pixel counts on the
recorded grid (plus any pixel outside the recorded box) differ by at most ``max(4 px, 0.5% of
its area)`` in all. An annotation whose mask or category no longer matches its
fingerprint was changed by a person: it is theirs, used as an outline of theirs (a template)
and never replaced. Predictions of earlier versions carry
no fingerprint and are treated as before.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from descriptron_sam2pal.imaging.masks import fill_holes


PREDICTION_SOURCE = "sam2pal"  # attributes.source of predictions written into a store
TEMPLATE_SOURCE = "sam2pal-template"  # attributes.source of outlines accepted in the Templates panel


FINGERPRINT = "sam2pal_fingerprint"  # attributes key: what we wrote (see the module docstring)


GRID = 8                 # cells per side of the coarse shape record
NUDGE_PX = 2             # how far Descriptron's polygon round trip may move the box
NUDGE_AREA = (4, 0.005)  # ... and change the area / grid counts: max(4 px, 0.5% of the area)


def _category_hash(category: str) -> str:
    return hashlib.sha256(category.encode()).hexdigest()[:8]


def _exact(mask: np.ndarray, category: str) -> str:
    h = hashlib.sha256(f"{category}|{mask.shape[0]}x{mask.shape[1]}|".encode())
    h.update(np.packbits(mask, axis=None).tobytes())
    return h.hexdigest()[:24]


def _filled_pixels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of the mask's pixels with its holes filled (Descriptron's .json polygons cannot
    hold holes), worked out on the mask's box only: a 12-megapixel photo costs its box, not
    the whole frame (filling inside the box with a one-pixel margin is the same fill)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return np.empty(0, np.intp), np.empty(0, np.intp)
    ys, xs = np.nonzero(fill_holes(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]))
    return ys + rows[0], xs + cols[0]


def _box(ys: np.ndarray, xs: np.ndarray) -> list[int]:
    if not len(ys):
        return [-1, -1, -1, -1]
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _grid_counts(ys: np.ndarray, xs: np.ndarray, box: list[int]) -> tuple[list[int], int]:
    """Pixel counts of a GRID x GRID grid over ``box``, and the pixels outside it."""
    x0, y0, x1, y1 = box
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    rows = np.minimum((ys[inside] - y0) * GRID // max(1, y1 - y0), GRID - 1)
    cols = np.minimum((xs[inside] - x0) * GRID // max(1, x1 - x0), GRID - 1)
    counts = np.bincount(rows * GRID + cols, minlength=GRID * GRID)
    return [int(c) for c in counts], int((~inside).sum())


def fingerprint(mask: np.ndarray, category: str) -> str:
    """The record of an outline we write: its category, every bit of its mask, and its coarse
    shape (see the module docstring): ``v2:<exact>:<category>:<x0,y0,x1,y1>:<grid counts>``."""
    mask = np.asarray(mask, dtype=bool)
    ys, xs = _filled_pixels(mask)
    box = _box(ys, xs)
    counts, _ = _grid_counts(ys, xs, box)
    return (f"v2:{_exact(mask, category)}:{_category_hash(category)}:{','.join(map(str, box))}:"
            + ".".join(map(str, counts)))


def matches(recorded: str, mask: np.ndarray, category: str) -> bool:
    """Whether ``mask`` of ``category`` is still the outline ``recorded`` describes: bit for bit,
    or (v2) moved no more than Descriptron's own polygon round trip moves an untouched outline."""
    mask = np.asarray(mask, dtype=bool)
    if recorded.startswith("v1:"):
        return recorded == "v1:" + _exact(mask, category)
    parts = recorded.split(":")
    if len(parts) != 5 or parts[0] != "v2" or parts[2] != _category_hash(category):
        return False
    if parts[1] == _exact(mask, category):
        return True
    try:
        box = [int(v) for v in parts[3].split(",")]
        counts = [int(v) for v in parts[4].split(".")]
    except ValueError:
        return False
    if len(box) != 4 or len(counts) != GRID * GRID:
        return False
    ys, xs = _filled_pixels(mask)
    now_counts, outside = _grid_counts(ys, xs, box)
    allowed = max(NUDGE_AREA[0], NUDGE_AREA[1] * sum(counts))
    return (max(abs(a - b) for a, b in zip(box, _box(ys, xs))) <= NUDGE_PX
            and outside + sum(abs(a - b) for a, b in zip(counts, now_counts)) <= allowed)


def is_edited(annotation: Any) -> bool:
    """A prediction of ours that a person changed since we wrote it (its mask or category no
    longer matches the fingerprint we recorded). False without a fingerprint."""
    attributes = annotation.raw.get("attributes")
    recorded = attributes.get(FINGERPRINT) if isinstance(attributes, dict) else None
    if not isinstance(recorded, str):
        return False
    if annotation.category is None or annotation.kind != "mask":
        return True
    try:
        mask = annotation.mask()
    except Exception:  # noqa: BLE001 - a geometry we cannot read is not what we wrote
        return True
    return not matches(recorded, mask, annotation.category)


def is_prediction(annotation: Any) -> bool:
    """A store annotation that sam2pal predicted (merged or written back from a review) and
    nobody changed since, as opposed to an outline the user drew, accepted as a template, or
    corrected in Descriptron (``is_edited``)."""
    attributes = annotation.raw.get("attributes")
    return (isinstance(attributes, dict) and attributes.get("source") == PREDICTION_SOURCE
            and not is_edited(annotation))


def template_masks(store: Any, image_id: Any) -> dict[str, np.ndarray]:
    """The user's outlines on an image, one mask per structure (union of instances).

    Predictions are left out: otherwise every reviewed specimen would silently become a
    template (and unverified predictions would become training labels)."""
    masks: dict[str, np.ndarray] = {}
    for ann in store.annotations_for(image_id):
        if not ann.is_structure or is_prediction(ann):
            continue
        mask = ann.mask()
        masks[ann.category] = masks[ann.category] | mask if ann.category in masks else mask
    return masks


def template_images(store: Any) -> list[tuple[Any, list[str]]]:
    """(image record, structure names) of every image with at least one outline of the user's."""
    out = []
    for record in store.images if store is not None else []:
        names = list(dict.fromkeys(a.category for a in store.annotations_for(record.id)
                                   if a.is_structure and not is_prediction(a)))
        if names:
            out.append((record, names))
    return out


def is_reviewed(annotation: Any) -> bool:
    """A sam2pal prediction that a person accepted or corrected in Review: it is the
    user's now, and no later run replaces it."""
    attributes = annotation.raw.get("attributes")
    return is_prediction(annotation) and isinstance(attributes, dict) and bool(attributes.get("reviewed"))


def is_replaceable(annotation: Any) -> bool:
    """Only an unreviewed sam2pal prediction may be replaced by a later run."""
    return is_prediction(annotation) and not is_reviewed(annotation)
