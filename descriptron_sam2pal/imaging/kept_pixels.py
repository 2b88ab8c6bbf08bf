"""How many pixels of an outline survive at the model's input size, and the smallest size that
keeps enough of them.

A template's mask reaches the model letterboxed to a ``size`` square (area averaging when the
photo shrinks) and binarised at one half, as ``engine.prepared_templates.Template.model_masks`` does. A
structure small in a large photo (a 3 px eye on a 4000 px photo at 256 px) keeps no pixel
there: it is then "absent" to the model, is predicted as nothing, and training cannot learn it.
:data:`MIN_KEPT_PIXELS` is the least we accept: a structure must keep at least a 2 x 2 block
(SAM2's masks come out at a quarter of the input size, so anything smaller is below one of
its output cells).
"""

from __future__ import annotations

import cv2
import numpy as np

from descriptron_sam2pal.imaging.letterbox import Letterbox

#: Fewer pixels than this at the model's input size: the structure vanishes there.
MIN_KEPT_PIXELS = 4

#: The model's input sizes are multiples of this (SAM2 needs it), from :data:`SMALLEST_SIZE`.
SIZE_STEP = 32
SMALLEST_SIZE = 64


def kept_pixels(mask: np.ndarray, size: int) -> int:
    """Foreground pixels of ``mask`` (a photo's full-size outline) at a ``size`` px model input:
    letterboxed as the engine does (``Letterbox.apply_mask``), then binarised at 0.5.

    When the photo shrinks, only the outline's own rows and the model columns they reach are
    resized, in two passes (columns, then rows) of the same area averaging: the same numbers
    as resizing the whole photo, without its cost (a search tries many sizes)."""
    mask = np.asarray(mask)
    height, width = mask.shape[:2]
    letterbox = Letterbox.fit(height, width, int(size))
    if letterbox.new_h > height or letterbox.new_w > width or letterbox.is_identity_resize:
        return int(np.count_nonzero(letterbox.apply_mask(mask) >= 0.5))
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    band = np.ascontiguousarray(mask[top:bottom], dtype=np.float32)
    across = cv2.resize(band, (letterbox.new_w, bottom - top), interpolation=cv2.INTER_AREA)
    cols = np.flatnonzero(across.any(axis=0))
    if cols.size == 0:
        return 0
    left, right = int(cols[0]), int(cols[-1]) + 1
    tall = np.zeros((height, right - left), np.float32)
    tall[top:bottom] = across[:, left:right]
    down = cv2.resize(tall, (right - left, letterbox.new_h), interpolation=cv2.INTER_AREA)
    return int(np.count_nonzero(np.clip(down, 0.0, 1.0) >= 0.5))


def largest_useful_size(height: int, width: int) -> int:
    """The input size at which the photo is no longer shrunk (its longer side, rounded up to
    :data:`SIZE_STEP`): larger sizes only enlarge it."""
    side = max(int(height), int(width))
    return max(SMALLEST_SIZE, -(-side // SIZE_STEP) * SIZE_STEP)


def smallest_keeping_size(mask: np.ndarray, min_pixels: int = MIN_KEPT_PIXELS, start: int = SMALLEST_SIZE
                          ) -> int | None:
    """The smallest input size N (a multiple of :data:`SIZE_STEP`, at least ``start``) such that
    ``mask`` keeps ``min_pixels`` at N *and at every size above it* up to
    :func:`largest_useful_size`, so that "N or larger" holds; None when that size itself does
    not keep them (the outline is that small on its photo). Every size is tried, from the top:
    what a size keeps does not grow steadily (a line one pixel wide vanishes or not as it falls
    on the model's pixel grid)."""
    mask = np.asarray(mask)
    low = max(SMALLEST_SIZE, -(-int(start) // SIZE_STEP) * SIZE_STEP)
    size = max(low, largest_useful_size(*mask.shape[:2]))
    if kept_pixels(mask, size) < min_pixels:
        return None
    while size - SIZE_STEP >= low and kept_pixels(mask, size - SIZE_STEP) >= min_pixels:
        size -= SIZE_STEP
    return size
