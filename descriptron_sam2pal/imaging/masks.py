"""Mask geometry: binary masks <-> COCO polygons and RLE, holes, boxes.

Pixel convention for polygons (OpenCV's, and what ``cv2.findContours`` /
``cv2.fillPoly`` use): the integer point (x, y) is the **centre** of the pixel
in column x, row y. A polygon covers the pixels whose centres lie inside it or
on its boundary. :func:`mask_to_polygons` traces the boundary pixel centres of
every 8-connected component, so :func:`polygons_to_mask` (``cv2.fillPoly``)
reproduces a hole-free mask exactly, thin parts included. Consequences:

- A one-pixel-wide line or a single pixel gives a polygon of zero area
  (its vertices are repeated to have at least 3 points: a single pixel (x, y)
  is ``[x, y, x, y, x, y]``). It still rasterises to exactly those pixels.
- Tools using the pixel-*corner* convention (pycocotools' ``frPyObjects``)
  rasterise these polygons about half a pixel smaller on the right and bottom
  edges.
- "Hole-free" means no background region enclosed by the mask, with
  background regions 4-connected (the dual of 8-connected components). Holes
  are filled by the polygons: COCO polygon rings are unioned by every consumer.

RLE is COCO's: column-major (Fortran) order, alternating runs starting with
background; the uncompressed form has a list of ints as ``counts``, the
pycocotools-compressed form a string (or bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon

from descriptron_sam2pal import UserError

# fillPoly fixed-point bits for fractional polygon coordinates; the limit keeps
# coordinate * 2**bits inside int32.
_FILL_SHIFT = 8
_MAX_ABS_COORD = float(2 ** (31 - _FILL_SHIFT - 1))


class SegmentationError(UserError, ValueError):
    """A COCO segmentation that cannot be turned into a mask (says what is wrong)."""


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[list[float]]:
    """Flat ``[x1, y1, x2, y2, ...]`` polygons, one per 8-connected component.

    Each is the component's external contour (holes are not represented), with
    at least 3 points; the largest comes first. ``tolerance`` > 0 simplifies
    each polygon (see :func:`simplify_polygon`); with 0 the result is exact:
    ``polygons_to_mask(mask_to_polygons(m), h, w)`` equals ``m`` with its holes
    filled. ``mask`` is 2-D; nonzero is foreground.
    """
    binary = _as_bool_mask(mask).astype(np.uint8)
    if not binary.any():
        return []
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    ordered = sorted(contours, key=lambda c: -abs(cv2.contourArea(c)))
    polygons = []
    for contour in ordered:
        points = contour.reshape(-1, 2)
        if len(points) == 1:
            points = np.repeat(points, 3, axis=0)
        elif len(points) == 2:
            points = points[[0, 1, 0]]  # there and back along a two-pixel segment
        flat = [float(v) for v in points.reshape(-1)]
        if tolerance > 0:
            flat = simplify_polygon(flat, tolerance)
        polygons.append(flat)
    return polygons


def polygons_to_mask(
    polygons: Sequence[Sequence[float]], height: int, width: int
) -> np.ndarray:
    """Rasterise flat polygons (union of all rings) into an (height, width) bool mask.

    Uses ``cv2.fillPoly`` with the pixel-centre convention of this module;
    fractional coordinates are honoured to 1/256 px. Parts of a polygon outside
    the image are clipped (the caller may warn). Polygons with fewer than 3
    points still mark their point or segment. Raises :class:`SegmentationError`
    for an odd number of coordinates or non-finite values.
    """
    canvas = np.zeros((int(height), int(width)), np.uint8)
    rings = []
    for index, poly in enumerate(polygons):
        try:
            coords = np.asarray(poly, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise SegmentationError(
                f"Polygon {index} is not a flat list of numbers [x1, y1, x2, y2, ...]: {err}"
            ) from err
        if coords.size == 0:
            continue
        if coords.size % 2:
            raise SegmentationError(
                f"Polygon {index} has an odd number of coordinates ({coords.size}); "
                "expected [x1, y1, x2, y2, ...]."
            )
        if not np.isfinite(coords).all():
            raise SegmentationError(f"Polygon {index} contains NaN or infinite coordinates.")
        points = coords.reshape(-1, 2)
        if np.abs(points).max() > _MAX_ABS_COORD:
            points = _clip_far_polygon(points, height, width)
            if points is None:
                continue
        rings.append(np.rint(points * (1 << _FILL_SHIFT)).astype(np.int32))
    if rings and canvas.size:
        cv2.fillPoly(canvas, rings, 1, lineType=cv2.LINE_8, shift=_FILL_SHIFT)
    return canvas.astype(bool)


def has_hole(mask: np.ndarray, min_area: int = 64) -> bool:
    """True when a background region (4-connected) not touching the image border
    has at least ``min_area`` pixels."""
    return bool((_enclosed_background_areas(_as_bool_mask(mask)) >= min_area).any())


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every enclosed background region (any size) set to foreground."""
    binary = _as_bool_mask(mask)
    padded = np.pad(binary, 1).astype(np.uint8)
    cv2.floodFill(padded, None, (0, 0), 2, flags=4)
    return padded[1:-1, 1:-1] != 2


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE ``{"size": [h, w], "counts": [ints]}``.

    Column-major order; the first count is the number of leading background
    pixels (0 when the first pixel is foreground).
    """
    binary = _as_bool_mask(mask)
    height, width = binary.shape
    flat = binary.ravel(order="F")
    if flat.size == 0:
        return {"size": [height, width], "counts": [0]}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds)
    counts = ([0] if flat[0] else []) + runs.tolist()
    return {"size": [height, width], "counts": [int(c) for c in counts]}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (uncompressed list counts or compressed string/bytes).

    Raises :class:`SegmentationError` when ``size`` is malformed or the runs do
    not add up to height * width.
    """
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise SegmentationError(
            "An RLE segmentation must be a dict with 'size' [h, w] and 'counts'."
        )
    height, width = _rle_size(rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        runs = _decode_compressed_counts(counts)
    elif isinstance(counts, (list, tuple, np.ndarray)):
        try:
            runs = np.asarray(counts, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise SegmentationError(f"RLE counts must be integers: {err}") from err
    else:
        raise SegmentationError(
            f"RLE counts must be a list of ints or a compressed string, got {type(counts).__name__}."
        )
    if (runs < 0).any():
        raise SegmentationError("RLE counts must not be negative.")
    total = int(runs.sum())
    if total != height * width:
        raise SegmentationError(
            f"RLE counts add up to {total} pixels but size {height}x{width} has "
            f"{height * width}; the segmentation belongs to an image of another size."
        )
    values = (np.arange(runs.size) % 2).astype(bool)
    flat = np.repeat(values, runs)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygon list or either RLE form) as an (h, w) bool mask.

    A list of RLE dicts is unioned. Raises :class:`SegmentationError` for an
    RLE whose size is not (height, width) and for anything unrecognised.
    """
    height, width = int(height), int(width)
    if isinstance(segmentation, dict):
        mask = rle_to_mask(segmentation)
        if mask.shape != (height, width):
            raise SegmentationError(
                f"RLE size {list(mask.shape)} does not match the image's "
                f"{height}x{width}; the annotation belongs to an image of another size."
            )
        return mask
    if isinstance(segmentation, (list, tuple)):
        if not segmentation:
            return np.zeros((height, width), bool)
        if all(isinstance(part, dict) for part in segmentation):
            mask = np.zeros((height, width), bool)
            for part in segmentation:
                mask |= segmentation_to_mask(part, height, width)
            return mask
        if all(_is_number(v) for v in segmentation):
            return polygons_to_mask([segmentation], height, width)  # one unwrapped polygon
        if all(isinstance(part, (list, tuple, np.ndarray)) for part in segmentation):
            return polygons_to_mask(segmentation, height, width)
    raise SegmentationError(
        "Unrecognised segmentation: expected a list of polygons [[x1, y1, ...], ...] "
        f"or an RLE dict, got {type(segmentation).__name__}."
    )


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` of the foreground in whole pixels; zeros when empty."""
    binary = _as_bool_mask(mask)
    rows = np.flatnonzero(binary.any(axis=1))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    cols = np.flatnonzero(binary.any(axis=0))
    return [
        float(cols[0]),
        float(rows[0]),
        float(cols[-1] - cols[0] + 1),
        float(rows[-1] - rows[0] + 1),
    ]


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``mask`` as a (height, width) bool array, nearest neighbour (unchanged when it already is)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def mask_area(mask: np.ndarray) -> int:
    """Foreground pixel count."""
    return int(np.count_nonzero(_as_bool_mask(mask)))


def simplify_polygon(flat: Sequence[float], tolerance: float) -> list[float]:
    """Douglas-Peucker simplification (shapely, topology preserved) of a flat polygon.

    Never returns fewer than 3 points: when simplification would collapse the
    polygon, or the polygon has no area (a line or a point), it is returned
    unchanged. ``tolerance`` is in pixels.
    """
    coords = np.asarray(flat, dtype=np.float64).reshape(-1)
    original = [float(v) for v in coords]
    if tolerance <= 0 or coords.size < 8:
        return original
    points = coords.reshape(-1, 2)
    try:
        polygon = Polygon(points)
        if polygon.area == 0:
            return original
        simplified = shapely.simplify(polygon, tolerance, preserve_topology=True)
    except (ValueError, shapely.errors.GEOSException):
        return original
    if simplified.is_empty or not isinstance(simplified, Polygon):
        return original
    ring = np.asarray(simplified.exterior.coords)[:-1]  # drop the closing point
    if len(ring) < 3:
        return original
    return [float(v) for v in ring.reshape(-1)]


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2-D (height, width), got shape {arr.shape}")
    return arr if arr.dtype == np.bool_ else arr != 0


def _enclosed_background_areas(binary: np.ndarray) -> np.ndarray:
    """Pixel counts of the 4-connected background regions not touching the border."""
    if binary.size == 0:
        return np.zeros(0, np.int64)
    background = (~binary).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=4)
    border = np.unique(
        np.concatenate((labels[0], labels[-1], labels[:, 0], labels[:, -1]))
    )
    enclosed = np.setdiff1d(np.arange(1, count), border)
    return stats[enclosed, cv2.CC_STAT_AREA].astype(np.int64)


def _clip_far_polygon(points: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """Clip a polygon with enormous coordinates to a box around the image (or None)."""
    box = shapely.box(-2.0, -2.0, width + 1.0, height + 1.0)
    try:
        clipped = shapely.make_valid(Polygon(points)).intersection(box)
    except (ValueError, shapely.errors.GEOSException):
        return None
    polygons = [g for g in getattr(clipped, "geoms", [clipped]) if isinstance(g, Polygon)]
    if not polygons or polygons[0].is_empty:
        return None
    largest = max(polygons, key=lambda g: g.area)
    return np.asarray(largest.exterior.coords)[:-1]


def _rle_size(size: Any) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError) as err:
        raise SegmentationError(f"RLE size must be [height, width], got {size!r}.") from err
    if height < 0 or width < 0:
        raise SegmentationError(f"RLE size must not be negative, got {size!r}.")
    return height, width


def _decode_compressed_counts(counts: str | bytes) -> np.ndarray:
    """Run lengths of a pycocotools-compressed RLE string (LEB128-like, delta coded)."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    pos = 0
    while pos < len(data):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(data):
                raise SegmentationError("Compressed RLE counts end in the middle of a number.")
            chunk = data[pos] - 48
            if not 0 <= chunk < 64:
                raise SegmentationError("Compressed RLE counts contain an invalid character.")
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            pos += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return np.asarray(runs, dtype=np.int64)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
