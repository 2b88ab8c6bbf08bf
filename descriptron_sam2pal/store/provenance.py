"""Provenance of annotations in a store: what sam2pal predicted, what a person outlined.

An annotation's ``attributes.source`` says who made it. Predictions (merged by
``propagate --write-to`` or written back from a review) are never used as
templates, so unverified predictions never become training labels.

**Descriptron's edits win.** Descriptron keeps an annotation's ``attributes`` when a person
corrects or relabels the outline, so ``source`` alone cannot tell our outline from theirs.
Every prediction we write therefore records a fingerprint of what we wrote: its category
and its mask, bit for bit (``attributes.sam2pal_fingerprint``; Descriptron's load and save
of an untouched outline gives the same mask back). An annotation whose mask or category
no longer matches its fingerprint was changed by a person: it is theirs, used as an
outline of theirs (a template) and never replaced. Predictions of earlier versions carry
no fingerprint and are treated as before.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


PREDICTION_SOURCE = "sam2pal"  # attributes.source of predictions written into a store
TEMPLATE_SOURCE = "sam2pal-template"  # attributes.source of outlines accepted in the Templates panel


FINGERPRINT = "sam2pal_fingerprint"  # attributes key: what we wrote (see the module docstring)


def fingerprint(mask: np.ndarray, category: str) -> str:
    """The record of an outline we write: its category and every bit of its mask."""
    mask = np.asarray(mask, dtype=bool)
    h = hashlib.sha256(f"{category}|{mask.shape[0]}x{mask.shape[1]}|".encode())
    h.update(np.packbits(mask, axis=None).tobytes())
    return "v1:" + h.hexdigest()[:24]


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
    return fingerprint(mask, annotation.category) != recorded


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
