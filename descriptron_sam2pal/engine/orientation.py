"""Orientation search: the 8 flips/rotations of a target, and mapping results back.

A specimen photographed sideways or upside down is far from the template for
SAM2's memory attention. Propagation can try every orientation of a target
(each one costs one encoder pass of the transformed image: unavoidable, the
encoder sees different pixels) and keep the one whose palindrome confidence is
best. Masks predicted on the transformed image are mapped back to the target's
own pixel grid exactly (flips and quarter turns are pixel permutations).

Names: ``rot0``, ``rot90``, ``rot180``, ``rot270`` turn the image clockwise by
that many degrees; ``flip_rotN`` first mirrors it left-right, then turns it
clockwise by N degrees. ``rot0`` is the image as it is.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

ORIENTATIONS = ("rot0", "rot90", "rot180", "rot270", "flip_rot0", "flip_rot90", "flip_rot180", "flip_rot270")
IDENTITY = "rot0"


def _parse(name: str) -> tuple[bool, int]:
    if name not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {name!r}; expected one of {', '.join(ORIENTATIONS)}")
    flip = name.startswith("flip_")
    degrees = int(name.rsplit("rot", 1)[1])
    return flip, degrees // 90


def orient(image: np.ndarray, name: str) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) as seen in orientation ``name`` (a contiguous copy)."""
    flip, quarter_turns = _parse(name)
    out = image[:, ::-1] if flip else image
    out = np.rot90(out, -quarter_turns, axes=(0, 1))  # negative: clockwise
    return np.ascontiguousarray(out)


def unorient(array: np.ndarray, name: str) -> np.ndarray:
    """Inverse of :func:`orient` on the last two axes: (..., H', W') -> (..., H, W).

    For masks (or logits) predicted on the oriented image, stacked or not.
    """
    flip, quarter_turns = _parse(name)
    out = np.rot90(array, quarter_turns, axes=(-2, -1))  # counter-clockwise undoes clockwise
    if flip:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def oriented_size(height: int, width: int, name: str) -> tuple[int, int]:
    """(height, width) of an image of that size once put in orientation ``name``."""
    _, quarter_turns = _parse(name)
    return (width, height) if quarter_turns % 2 else (height, width)


def choose_orientation(scores: Mapping[str, float]) -> str:
    """The orientation with the highest score; ties go to the earliest in :data:`ORIENTATIONS`
    (so an upright target stays ``rot0`` when nothing is better)."""
    if not scores:
        raise ValueError("choose_orientation needs at least one scored orientation")
    ordered = [n for n in ORIENTATIONS if n in scores]
    return max(ordered, key=lambda n: (scores[n], -ORIENTATIONS.index(n)))


def orientation_score(structures: Mapping[str, object]) -> float:
    """How well a target in one orientation matches the templates: the mean palindrome
    confidence over its structures, a structure predicted absent counting 0.

    ``structures`` maps names to objects with ``present`` and ``palindrome_confidence``
    (StructureResult; without a palindrome confidence, ``score`` is read).
    """
    if not structures:
        return 0.0
    total = 0.0
    for s in structures.values():
        value = getattr(s, "palindrome_confidence", None)
        if value is None:
            value = getattr(s, "score", None)
        if getattr(s, "present", False) and value is not None:
            total += float(value)
    return total / len(structures)
