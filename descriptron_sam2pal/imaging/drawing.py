"""Hand-drawing geometry for masks: polygons, brush strokes, vertex edits, SAM2 prompts from an outline.

Pure functions on numpy arrays (no Qt): the GUI's drawing tools
(``gui/drawing_tools.py``) keep the state, these do the maths. Coordinates are
image pixels, x to the right and y down, pixel (col, row) covering
[col, col+1) x [row, row+1), as everywhere in the canvas. Masks are (H, W) bool.
A polygon is a list of (x, y) vertices (closed implicitly).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from descriptron_sam2pal.imaging.masks import fill_holes, mask_to_polygons, polygons_to_mask

Point = tuple[float, float]

__all__ = [
    "polygon_to_mask",
    "stroke_mask",
    "paint",
    "fill_mask_holes",
    "mask_to_vertex_polygons",
    "vertex_polygons_to_mask",
    "nearest_vertex",
    "nearest_edge",
    "move_vertex",
    "insert_vertex",
    "delete_vertex",
    "refine_prompt",
    "mask_to_polygons_ring",
    "edit_scale",
    "fragment_area",
    "drop_fragments",
    "parts_apart_from",
]


def polygon_to_mask(points: Sequence[Point], shape: tuple[int, int]) -> np.ndarray:
    """The filled polygon (image-pixel vertices, at least 3) as an (H, W) bool mask, clipped to the image.

    Vertices are pixel-edge coordinates as the canvas reports them: a vertex at
    (10, 10) is the top-left corner of pixel (10, 10), so they are shifted by half
    a pixel to the pixel-centre convention of :func:`polygons_to_mask`.
    """
    h, w = shape
    if len(points) < 3:
        return np.zeros((h, w), bool)
    flat = [c - 0.5 for x, y in points for c in (x, y)]
    return polygons_to_mask([flat], h, w)


def stroke_mask(points: Sequence[Point], radius: float, shape: tuple[int, int]) -> np.ndarray:
    """Pixels within ``radius`` of the polyline through ``points`` (a brush stroke), (H, W) bool."""
    h, w = shape
    out = np.zeros((h, w), np.uint8)
    if not points:
        return out.astype(bool)
    r = max(float(radius), 0.5)
    shift = 4
    scale = 1 << shift
    pts = [(int(round((x - 0.5) * scale)), int(round((y - 0.5) * scale))) for x, y in points]
    rr = max(int(round(r * scale)), 1)
    for p in pts:
        cv2.circle(out, p, rr, 1, thickness=-1, lineType=cv2.LINE_8, shift=shift)
    thickness = max(int(round(2 * r)), 1)
    for a, b in zip(pts, pts[1:]):
        cv2.line(out, a, b, 1, thickness=thickness, lineType=cv2.LINE_8, shift=shift)
    return out.astype(bool)


def paint(mask: np.ndarray, region: np.ndarray, erase: bool = False) -> np.ndarray:
    """A new mask: ``mask`` with ``region`` added (brush) or removed (eraser)."""
    mask = np.asarray(mask, bool)
    region = np.asarray(region, bool)
    if mask.shape != region.shape:
        raise ValueError(f"mask {mask.shape} and region {region.shape} differ in shape")
    return mask & ~region if erase else mask | region


def fill_mask_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every enclosed background region filled (see :func:`fill_holes`)."""
    return fill_holes(np.asarray(mask, bool))


def mask_to_vertex_polygons(
    mask: np.ndarray, tolerance: float = 1.0, max_vertices: int = 200, min_area: float = 0.0
) -> list[list[Point]]:
    """Editable outlines of a mask: one vertex polygon per connected part of at least
    ``min_area`` px, largest first, simplified (``tolerance`` px, raised until each has at
    most ``max_vertices``) so that a few dozen handles can be dragged. Vertices are
    pixel-edge coordinates (as :func:`polygon_to_mask` takes them). Holes are not kept."""
    out = []
    for flat in mask_to_polygons(np.asarray(mask, bool), 0.0):
        if min_area > 0 and len(flat) >= 6:
            pts = np.asarray(flat, np.float32).reshape(-1, 2)
            if abs(float(cv2.contourArea(pts))) < min_area:
                continue
        tol = float(tolerance)
        while True:
            simple = mask_to_polygons_ring(flat, tol)
            if len(simple) <= max_vertices or tol > 64:
                break
            tol *= 1.6
        if len(simple) >= 3:
            out.append(simple)
    return out


def mask_to_polygons_ring(flat: Sequence[float], tolerance: float) -> list[Point]:
    """One flat pixel-centre polygon simplified (Douglas-Peucker, closed) into pixel-edge vertices."""
    pts = np.asarray(flat, np.float32).reshape(-1, 1, 2)
    if tolerance > 0 and len(pts) > 3:
        approx = cv2.approxPolyDP(pts, float(tolerance), True)
        if len(approx) >= 3:
            pts = approx
    return [(float(x) + 0.5, float(y) + 0.5) for x, y in pts.reshape(-1, 2)]


def edit_scale(shape: tuple[int, int]) -> tuple[float, float]:
    """(simplification tolerance px, smallest part in px^2) for vertex editing on an image of
    ``shape``: about 1/300 of its long side, and parts smaller than (1/60 of it)^2 get no handles."""
    side = float(max(shape))
    return max(1.0, side / 300.0), max(9.0, (side / 60.0) ** 2)


def fragment_area(shape: tuple[int, int]) -> float:
    """The smallest part (px^2 of its outline) a hand-edited mask keeps on an image of ``shape``:
    about (1/300 of the long side)^2, at least 9 px^2. Smaller parts (a pixel left by an edit,
    a one-pixel line) would be written as polygons of (nearly) zero area."""
    return max(9.0, (float(max(shape)) / 300.0) ** 2)


def drop_fragments(mask: np.ndarray, min_area: float | None = None) -> np.ndarray:
    """``mask`` without its 8-connected parts whose outline (the polygon a file gets) encloses
    less than ``min_area`` px^2 (default :func:`fragment_area`); the rest is unchanged."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask.copy()
    limit = fragment_area(mask.shape) if min_area is None else float(min_area)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = mask.copy()
    for i in range(1, n):
        x, y, w, h, pixels = (int(v) for v in stats[i])
        if pixels >= limit:  # the outline encloses less than the pixel count: check it
            part = (labels[y : y + h, x : x + w] == i).astype(np.uint8)
            contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            if max(abs(cv2.contourArea(c)) for c in contours) >= limit:
                continue
        out[y : y + h, x : x + w][labels[y : y + h, x : x + w] == i] = False
    return out


def parts_apart_from(mask: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """The 8-connected parts of ``mask`` that share no pixel with ``covered`` (whole parts:
    the pixels of a part that ``covered`` only nearly covers are not among them)."""
    mask = np.asarray(mask, bool)
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    touched = np.unique(labels[mask & np.asarray(covered, bool)])
    return mask & ~np.isin(labels, touched)


def vertex_polygons_to_mask(polygons: Sequence[Sequence[Point]], shape: tuple[int, int]) -> np.ndarray:
    """The union of vertex polygons as an (H, W) bool mask."""
    h, w = shape
    mask = np.zeros((h, w), bool)
    for poly in polygons:
        mask |= polygon_to_mask(poly, shape)
    return mask


def nearest_vertex(
    polygons: Sequence[Sequence[Point]], x: float, y: float, tolerance: float
) -> tuple[int, int] | None:
    """(polygon index, vertex index) of the vertex nearest (x, y) within ``tolerance`` px, or None."""
    best, best_d = None, float(tolerance)
    for pi, poly in enumerate(polygons):
        for vi, (vx, vy) in enumerate(poly):
            d = float(np.hypot(vx - x, vy - y))
            if d <= best_d:
                best, best_d = (pi, vi), d
    return best


def nearest_edge(
    polygons: Sequence[Sequence[Point]], x: float, y: float, tolerance: float
) -> tuple[int, int] | None:
    """(polygon index, index of the edge's first vertex) of the edge nearest (x, y) within
    ``tolerance`` px, or None. Edge i runs from vertex i to vertex i+1 (the last closes the ring)."""
    best, best_d = None, float(tolerance)
    p = np.array([x, y], float)
    for pi, poly in enumerate(polygons):
        n = len(poly)
        for i in range(n):
            a, b = np.array(poly[i], float), np.array(poly[(i + 1) % n], float)
            ab = b - a
            t = 0.0 if not ab.any() else float(np.clip(np.dot(p - a, ab) / np.dot(ab, ab), 0.0, 1.0))
            d = float(np.linalg.norm(a + t * ab - p))
            if d <= best_d:
                best, best_d = (pi, i), d
    return best


def move_vertex(
    polygons: Sequence[Sequence[Point]], index: tuple[int, int], x: float, y: float
) -> list[list[Point]]:
    """New polygons with vertex ``index`` = (polygon, vertex) at (x, y)."""
    out = [list(p) for p in polygons]
    pi, vi = index
    out[pi][vi] = (float(x), float(y))
    return out


def insert_vertex(
    polygons: Sequence[Sequence[Point]], edge: tuple[int, int], x: float, y: float
) -> list[list[Point]]:
    """New polygons with a vertex at (x, y) inserted on edge ``edge`` = (polygon, first vertex)."""
    out = [list(p) for p in polygons]
    pi, i = edge
    out[pi].insert(i + 1, (float(x), float(y)))
    return out


def delete_vertex(polygons: Sequence[Sequence[Point]], index: tuple[int, int]) -> list[list[Point]]:
    """New polygons without vertex ``index``; a polygon left with fewer than 3 vertices is dropped."""
    out = [list(p) for p in polygons]
    pi, vi = index
    del out[pi][vi]
    return [p for p in out if len(p) >= 3]


def refine_prompt(
    mask: np.ndarray, n_points: int = 3
) -> tuple[tuple[float, float, float, float] | None, list[Point]]:
    """A SAM2 prompt that says "this outline": its bounding box (x0, y0, x1, y1) and up to
    ``n_points`` interior points, each as deep inside the outline as possible and
    spread apart (greedy farthest-from-the-edge picks on the distance transform).
    (None, []) for an empty mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None, []
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    points: list[Point] = []
    work = dist.copy()
    for _ in range(max(int(n_points), 0)):
        r, c = np.unravel_index(int(np.argmax(work)), work.shape)
        if work[r, c] <= 0:
            break
        points.append((float(c) + 0.5, float(r) + 0.5))
        # Keep the next point away from this one (at least the local depth, and a tenth of the box).
        radius = max(float(dist[r, c]), 0.1 * max(box[2] - box[0], box[3] - box[1]), 2.0)
        cv2.circle(work, (int(c), int(r)), int(np.ceil(radius)), 0.0, thickness=-1)
    return box, points
