"""Provenance of annotations in a store: what sam2pal predicted, what a person outlined.

An annotation's ``attributes.source`` says who made it. Predictions (merged by
``propagate --write-to`` or written back from a review) are never used as
templates, so unverified predictions never become training labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np


PREDICTION_SOURCE = "sam2pal"  # attributes.source of predictions written into a store
TEMPLATE_SOURCE = "sam2pal-template"  # attributes.source of outlines accepted in the Templates panel


def is_prediction(annotation: Any) -> bool:
    """A store annotation that sam2pal predicted (merged or written back from a review),
    as opposed to an outline the user drew or accepted as a template."""
    attributes = annotation.raw.get("attributes")
    return isinstance(attributes, dict) and attributes.get("source") == PREDICTION_SOURCE


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
