"""A zoom-in pass for prompts on parts too thin for the model at the photo's scale.

At the demo's 256 px input a leg or an antenna is 1-3 model pixels wide and an eye about 11 x
11: the mask decoder works on a 64 x 64 grid (4 model pixels a cell) and cannot draw them.
Interactive tools refine such parts the way a person does: look closer. After the
whole-photo prediction for a set of clicks (or a box), :class:`ZoomInSegmenter`

* **decides** whether the part is thin (:func:`proposal`, :func:`zoom_window`): the first
  pass's mask under the positive clicks (its connected parts that hold a click), or inside
  the box, is measured by its width (twice its largest distance to its border). Under
  :data:`THIN` model pixels (three cells of the decoder's 4-pixel grid), or nothing found,
  the model cannot draw the part at the photo's scale, and we zoom in. Large parts (a head,
  the pronotum, the elytra: tens of model pixels wide) keep the first pass untouched.
* **segments the crop**: a square window of the box's longer side (the clicks and the first
  pass's parts under them, without a box), at least :data:`MIN_WINDOW` of the photo's longer
  side (``small_structures.square_box``, shifted into the photo), is letterboxed to the
  model's full input, so a leg 2 model pixels wide in the photo becomes 10-20 in the crop. It
  is encoded by a crop encoder of its own (its small cache keeps the last crops, so
  corrective clicks in the same window do not encode again); the clicks and the box are
  mapped into the crop (negative clicks outside it are left out, the box is cut to it).
* **looks around** first, for a click whose close-up answer may be only a piece of the part
  (:func:`needs_look`: the answer reaches a side of its window that is not the photo's edge,
  or it is at least :data:`LOOK_ELONGATION` times longer than wide, or nothing was found
  under the click). The first pass at the photo's scale sees a leg or an antenna as specks,
  so the window it gives covers on average three quarters of a leg and half of an antenna
  (the demo model, the first 30 held-out 5-class photos). The clicks are segmented in a
  square of :data:`LOOK` of the photo's longer side around the first click (the part a few
  times larger than at the photo's scale, its whole length in view), and the window becomes
  that of what the look finds with the first window; the answer is the clicks segmented
  there. One look per prompt set (corrective clicks keep its window), never for a box. On
  the demo model it lifts one click on the held-out photos' antennae 26.5 -> 35.4 and legs
  43.2 -> 44.8 (mouthparts 42.4 -> 40.1; benchmarks/testbed/README.md, "Session 15"). Its
  cost is one or two more crop encodings: with SAM2 tiny at 512 px on one AVX2 core a crop
  encoding takes about 1.0 s, so such a click takes 2-3 s instead of 1 s.
* **takes a closer look at a smaller answer** where a click was answered with a wide part
  (:func:`smaller_window`): SAM2 answers one click three ways (a smaller and a larger part);
  a click on an eye is often answered with the head or the whole specimen (on the 9-class
  copies of the held-out photos the demo's answer was on average 1,260 times the eye's area,
  and 29 of 46 eyes were never zoomed). When the smallest other answer under the click is
  thin, it is segmented in close-up, and that is kept if it lies inside its window (a piece
  of a large part reaches the side) and SAM2 is surer of it than of the wide answer (without
  that, clicks on the 5-class pronotum took pieces: 75.4 -> 64.3). One click: eyes 17.7 ->
  29.9, mouthparts 40.1 -> 38.3, tail 40.6 -> 37.5; three clicks: eyes 39.7 -> 47.1
  (benchmarks/testbed/README.md, "Session 15"; chosen on those photos).
* **pastes** the crop's mask back at the photo's resolution (nothing outside the window),
  with the crop's predicted IoU as the score. When the crop finds nothing, the first pass's
  mask is kept.

The window is tight on purpose: on the first held-out photos, context around the part
(twice its size) or growing the window while the crop's mask touches its border made legs
worse, not better (the model outlines the dominant object in view: with room around a leg it
spreads onto the body). See benchmarks/testbed/README.md ("Issue 23: zooming in on thin
parts") for the measurements.

Corrective clicks keep the decision of the prompt set's first prompt (the first click, or the
box): a part found wide is never zoomed because a corrective click changed the first pass
(that cost the elytra 2-4 points with three clicks), and a zoomed part keeps its window while
every click lies in it, so one outlining session encodes its crop once. A positive click
outside the window grows it to the smallest square that holds the window and the click
(choosing a new window from the whole photo's answer instead spread legs onto the body:
3-click legs 15.3 instead of 22.9); a negative click outside it is left out (the pasted mask
is empty there).

Skipped (first pass returned): an image given already prepared (no full-resolution pixels),
``previous_logits`` (they belong to the whole-photo grid), and prompts with neither a
positive click nor a box.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.interactive import InteractiveSegmenter
from descriptron_sam2pal.engine.preprocess import PreparedImage
from descriptron_sam2pal.engine.small_structures import Box, mask_box, square_box, union_box
from descriptron_sam2pal.model.build import LoadedModel

#: Whether the product's click segmenter (``jobs.prompt_masks``) zooms in.
ON_BY_DEFAULT = True
#: The first pass's part is thin when it is under this many model pixels wide (twice its
#: largest inner distance; 3 cells of the decoder's 4-pixel output grid): then we zoom in.
THIN = 12.0
#: The window's side is this many times the proposal's longer side ...
CONTEXT = 1.0
#: ... and at least this share of the photo's longer side.
MIN_WINDOW = 0.1
#: The crop encoder's memory: a few crops' features, so corrective clicks do not encode again.
CROP_CACHE_BYTES = 64 << 20
#: A click's look around (see :func:`needs_look`): the side of the square around the first
#: click, as a share of the photo's longer side (0: never look around).
LOOK = 0.4
#: ... taken when the zoomed answer reaches its window's side or is at least this many times
#: longer than it is wide (a piece of a leg or an antenna; an eye is 1-2).
LOOK_ELONGATION = 3.5


def proposal(
    mask: np.ndarray, points: np.ndarray, labels: np.ndarray, box: Sequence[float] | None
) -> tuple[Box, float] | None:
    """What the first pass proposes for the prompts: the (y0, x0, y1, x1) box on the image
    grid to zoom into, and the width (image pixels: twice the largest distance to its border)
    of the first-pass mask there (0 when it found nothing). With a box: the box, and the mask
    inside it; with clicks: the positive clicks and the connected parts of the mask under them.
    None without a positive click or a box."""
    h, w = mask.shape
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        where = (
            max(0, int(np.floor(min(y0, y1)))),
            max(0, int(np.floor(min(x0, x1)))),
            min(h, int(np.ceil(max(y0, y1))) + 1),
            min(w, int(np.ceil(max(x0, x1))) + 1),
        )
        found = np.zeros_like(mask)
        found[where[0] : where[2], where[1] : where[3]] = mask[where[0] : where[2], where[1] : where[3]]
        return where, mask_width(found)
    clicked = clicked_parts(mask, points, labels)
    if clicked is None:
        return None
    where, parts = clicked
    return where, mask_width(parts)


def clicked_parts(mask: np.ndarray, points: np.ndarray, labels: np.ndarray) -> tuple[Box, np.ndarray] | None:
    """The connected parts of ``mask`` under the positive clicks (all False when no click is on
    it) and the box of the clicks and those parts; None without a positive click."""
    h, w = mask.shape
    positive = points[labels == 1]
    if not len(positive):
        return None
    xs = np.clip(np.round(positive[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(positive[:, 1]).astype(int), 0, h - 1)
    clicks = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
    _, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    hit = sorted({int(c) for c in lab[ys, xs] if c})
    parts = np.isin(lab, hit)
    return (union_box([clicks, mask_box(parts)]) if hit else clicks), parts


def mask_width(mask: np.ndarray) -> float:
    """Twice the largest distance from a pixel of the mask to its border (0 when empty)."""
    if not mask.any():
        return 0.0
    dist = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)
    return 2.0 * float(dist.max())


def reaches_side(part: np.ndarray, window: Box, height: int, width: int) -> bool:
    """Whether ``part`` (on the photo's grid) reaches a side of ``window`` that is not the
    photo's own edge: the part may go on outside the window. An empty part counts as reaching."""
    ys, xs = np.nonzero(part)
    if not len(ys):
        return True
    y0, x0, y1, x1 = window
    return bool(
        (y0 > 0 and ys.min() <= y0 + 1)
        or (y1 < height and ys.max() >= y1 - 2)
        or (x0 > 0 and xs.min() <= x0 + 1)
        or (x1 < width and xs.max() >= x1 - 2)
    )


def needs_look(answer: np.ndarray, window: Box, points: np.ndarray, labels: np.ndarray) -> bool:
    """Whether a click's zoomed ``answer`` (photo grid) may be only part of the part: its
    connected parts under the positive clicks reach the window's side, or are at least
    :data:`LOOK_ELONGATION` times longer (their box with the clicks) than wide, or are empty."""
    clicked = clicked_parts(answer, points, labels)
    if clicked is None:
        return False
    where, parts = clicked
    width = mask_width(parts)
    if width <= 0 or reaches_side(parts, window, *answer.shape):
        return True
    return max(where[2] - where[0], where[3] - where[1]) >= LOOK_ELONGATION * width


def smaller_window(
    alternatives: Sequence[tuple[np.ndarray, float]],
    points: np.ndarray,
    labels: np.ndarray,
    model_scale: float,
) -> Box | None:
    """The zoom window of the smallest of a click's other answers (``alternatives``: SAM2's
    masks it did not choose) whose part under the click is thin (under :data:`THIN` model
    pixels wide, not empty); None when none is."""
    best = None
    for alt, _ in alternatives:
        found = proposal(alt, points, labels, None)
        if found is None or not 0 < found[1] * model_scale < THIN:
            continue
        if best is None or int(alt.sum()) < best[0]:
            best = (int(alt.sum()), found)
    if best is None:
        return None
    h, w = alternatives[0][0].shape
    return zoom_window(*best[1], h, w, model_scale)


def look_window(points: np.ndarray, labels: np.ndarray, height: int, width: int) -> Box:
    """The square of :data:`LOOK` of the photo's longer side around the first positive click."""
    x, y = next((x, y) for (x, y), on in zip(points, labels) if on)
    cy = min(max(int(round(y)), 0), height - 1)
    cx = min(max(int(round(x)), 0), width - 1)
    return square_box((cy, cx, cy + 1, cx + 1), LOOK * max(height, width), height, width)


def zoom_window(where: Box, found_width: float, height: int, width: int, model_scale: float) -> Box | None:
    """The square crop window for a proposal, or None when the first pass found a part at least
    :data:`THIN` model pixels wide there (the model draws it at the photo's scale)."""
    if found_width * model_scale >= THIN:
        return None
    long_side = max(where[2] - where[0], where[3] - where[1], 1)
    side = max(long_side * CONTEXT, MIN_WINDOW * max(height, width))
    return square_box(where, side / long_side, height, width)


def prompts_in_window(
    points: np.ndarray, labels: np.ndarray, box: Sequence[float] | None, window: Box
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float] | None]:
    """The prompts in the crop's pixel coordinates: clicks outside the window left out, the box
    cut to it."""
    y0, x0, y1, x1 = window
    inside = (points[:, 0] >= x0 - 0.5) & (points[:, 0] < x1 - 0.5)
    inside &= (points[:, 1] >= y0 - 0.5) & (points[:, 1] < y1 - 0.5)
    crop_points = points[inside] - np.array([x0, y0], np.float32)
    crop_box = None
    if box is not None:
        bx0, by0, bx1, by1 = (float(v) for v in box)
        cx = np.clip([min(bx0, bx1) - x0, max(bx0, bx1) - x0], 0, x1 - x0 - 1)
        cy = np.clip([min(by0, by1) - y0, max(by0, by1) - y0], 0, y1 - y0 - 1)
        crop_box = (float(cx[0]), float(cy[0]), float(cx[1]), float(cy[1]))
    return crop_points, labels[inside], crop_box


def paste(crop_mask: np.ndarray, window: Box, height: int, width: int) -> np.ndarray:
    """The crop's mask on the photo's grid (False outside the window)."""
    y0, x0, y1, x1 = window
    out = np.zeros((height, width), dtype=bool)
    out[y0:y1, x0:x1] = crop_mask
    return out


class ZoomInSegmenter(InteractiveSegmenter):
    """An :class:`InteractiveSegmenter` that looks again, closer, at thin parts (see the module
    docstring). ``zoom=False`` makes it the plain whole-photo segmenter. ``last_window`` is
    the (y0, x0, y1, x1) window of the last prediction (None when it did not zoom) and
    ``windows`` counts the zoomed predictions, for tests and benchmarks; ``crop`` is the
    segmenter of the crops, with its own encoder."""

    def __init__(
        self,
        model: LoadedModel,
        encoder: FeatureEncoder | None = None,
        zoom: bool = ON_BY_DEFAULT,
        crop_cache_bytes: int = CROP_CACHE_BYTES,
    ) -> None:
        super().__init__(model, encoder)
        self.zoom = zoom
        self.crop = InteractiveSegmenter(model, FeatureEncoder(model, max_memory_bytes=crop_cache_bytes))
        self.last_window: Box | None = None
        self.windows = 0
        self.looks = 0
        self.smaller_looks = 0
        self._pixels: np.ndarray | None = None
        self._session: tuple[tuple, Box | None] | None = None

    def set_image(self, image: np.ndarray | PreparedImage) -> None:
        super().set_image(image)
        self._pixels = None if isinstance(image, PreparedImage) else np.ascontiguousarray(image)
        self._session = None
        self.last_window = None

    @torch.no_grad()
    def predict(
        self,
        points_xy=None,
        labels=None,
        box: Sequence[float] | None = None,
        previous_logits: torch.Tensor | None = None,
        multimask: bool | None = None,
    ) -> tuple[np.ndarray, float]:
        mask, score = super().predict(points_xy, labels, box, previous_logits, multimask)
        self.last_window = None
        if not self.zoom or self._pixels is None or previous_logits is not None:
            return mask, score
        pts = np.zeros((0, 2), np.float32) if points_xy is None else np.asarray(points_xy, np.float32)
        pts = pts.reshape(-1, 2)
        lab = np.zeros((0,), np.int32) if labels is None else np.asarray(labels, np.int32).reshape(-1)
        window, first = self._window_for(mask, pts, lab, box)
        h, w = mask.shape
        if window is None:
            if first and box is None:
                return self._smaller_part(mask, score, pts, lab, multimask)
            return mask, score
        crop_mask, crop_score = self._predict_in(window, pts, lab, box, multimask)
        answer, answer_score = mask, score
        if crop_mask.any():
            answer, answer_score = paste(crop_mask, window, h, w), crop_score
        if first and box is None and LOOK > 0 and needs_look(answer, window, pts, lab):
            wider = self._look_around(window, pts, lab, h, w)
            if wider is not None:
                wide_mask, wide_score = self._predict_in(wider, pts, lab, box, multimask)
                if wide_mask.any():
                    self._session = (self._session[0], wider)
                    window, answer, answer_score = wider, paste(wide_mask, wider, h, w), wide_score
        self.windows += 1
        self.last_window = window
        return answer, answer_score

    def _smaller_part(
        self, mask: np.ndarray, score: float, pts: np.ndarray, lab: np.ndarray, multimask: bool | None
    ) -> tuple[np.ndarray, float]:
        """A click answered with a wide part: the close-up of SAM2's smallest other answer under
        the click where that one is thin (:func:`smaller_window`), kept when it lies inside its
        window and SAM2 is surer of it than of the wide answer; else the wide answer."""
        window = smaller_window(self.alternatives(), pts, lab, self.image.letterbox.scale)
        if window is None:
            return mask, score
        h, w = mask.shape
        crop_mask, crop_score = self._predict_in(window, pts, lab, None, multimask)
        self.smaller_looks += 1
        if not crop_mask.any():
            return mask, score
        answer = paste(crop_mask, window, h, w)
        if reaches_side(answer, window, h, w) or crop_score <= score:
            return mask, score
        self._session = (self._session[0], window)
        self.windows += 1
        self.last_window = window
        return answer, crop_score

    def _look_around(self, window: Box, pts: np.ndarray, lab: np.ndarray, h: int, w: int) -> Box | None:
        """A click's window found by looking around: the clicks segmented in :func:`look_window`
        (the part a few times larger than at the photo's scale, its whole length in view), and
        the window of what that finds with the first window (None when it finds nothing)."""
        around = look_window(pts, lab, h, w)
        found_mask, _ = self._predict_in(around, pts, lab, None, None)
        self.looks += 1
        if not found_mask.any():
            return None
        found = proposal(paste(found_mask, around, h, w), pts, lab, None)
        if found is None or found[1] <= 0:
            return None
        return zoom_window(union_box([found[0], window]), 0.0, h, w, self.image.letterbox.scale)

    def _window_for(
        self, mask: np.ndarray, pts: np.ndarray, lab: np.ndarray, box: Sequence[float] | None
    ) -> tuple[Box | None, bool]:
        """The crop window (None: no zoom) and whether the prompts start a new prompt set. A
        prompt set (the same first click or box) keeps the decision of its first prompt: no zoom
        for a part found wide; for a zoomed part its window (the look around's, where it looked),
        grown to hold positive clicks outside it."""
        first = (tuple(np.round(pts[0], 2)) if len(pts) else None, None if box is None else tuple(box))
        if self._session is not None and self._session[0] == first:
            if self._session[1] is None:
                return None, False
            window = self._session[1]
            y0, x0, y1, x1 = window
            outside = [
                (x, y)
                for (x, y), on in zip(pts, lab)
                if on and not (x0 - 0.5 <= x < x1 - 0.5 and y0 - 0.5 <= y < y1 - 0.5)
            ]
            if outside:  # the smallest square holding the window and the new positive clicks
                h, w = mask.shape
                clicks = [
                    (int(round(y)), int(round(x)), int(round(y)) + 1, int(round(x)) + 1) for x, y in outside
                ]
                window = square_box(union_box([window, *clicks]), 1.0, h, w)
                self._session = (first, window)
            return window, False
        found = proposal(mask, pts, lab, box)
        if found is None:
            return None, True
        h, w = mask.shape
        window = zoom_window(*found, h, w, self.image.letterbox.scale)
        self._session = (first, window)
        return window, True

    def _predict_in(
        self,
        window: Box,
        pts: np.ndarray,
        lab: np.ndarray,
        box: Sequence[float] | None,
        multimask: bool | None,
    ) -> tuple[np.ndarray, float]:
        """The crop's mask (on the window's grid) and predicted IoU for the mapped prompts."""
        y0, x0, y1, x1 = window
        crop_points, crop_labels, crop_box = prompts_in_window(pts, lab, box, window)
        if not (crop_labels == 1).any() and crop_box is None:
            return np.zeros((y1 - y0, x1 - x0), dtype=bool), 0.0
        self.crop.set_image(np.ascontiguousarray(self._pixels[y0:y1, x0:x1]))
        return self.crop.predict(
            crop_points if len(crop_points) else None,
            crop_labels if len(crop_labels) else None,
            box=crop_box,
            multimask=multimask,
        )
