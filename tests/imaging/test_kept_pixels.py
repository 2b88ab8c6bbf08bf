"""What an outline keeps at the model's input size: the engine's own count, and the smallest size
that keeps enough of it (checked against every size in turn)."""

from __future__ import annotations

import numpy as np
import pytest

from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.prepared_templates import Template, vanished_structures
from descriptron_sam2pal.imaging.letterbox import Letterbox
from descriptron_sam2pal.imaging.kept_pixels import (
    MIN_KEPT_PIXELS,
    kept_pixels,
    largest_useful_size,
    smallest_keeping_size,
)


def blob(h, w, y, x, side):
    m = np.zeros((h, w), bool)
    m[y : y + side, x : x + side] = True
    return m


def test_kept_pixels_is_what_the_engine_trains_on():
    h, w = 600, 800
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    masks = {
        "eye": blob(h, w, 300, 400, 3),
        "head": blob(h, w, 100, 100, 120),
        "seta": np.zeros((h, w), bool),
    }
    masks["seta"][50, 30:700] = True  # a one-pixel-wide line
    template = Template("t", prepare_image(image, 128), masks)
    for name, mask in masks.items():
        model = int(template.model_masks([name])[0].sum())
        assert kept_pixels(mask, 128) == model == template.kept_pixels(name)
    assert kept_pixels(masks["eye"], 128) == 0 and kept_pixels(masks["seta"], 128) == 0
    assert kept_pixels(masks["head"], 128) > 300
    assert vanished_structures([template]) == [
        "'eye' on template t (0 px at 128 px)",
        "'seta' on template t (0 px at 128 px)",
    ]


def test_kept_pixels_counts_as_the_whole_letterbox_does_at_every_size():
    """The two-pass count over the outline's own rows equals resizing the whole photo."""
    rng = np.random.default_rng(0)
    for trial in range(24):
        h, w = (int(v) for v in rng.integers(60, 700, 2))
        m = np.zeros((h, w), bool)
        if trial % 3 == 0:
            side = int(rng.integers(1, 6))
            y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
            m[y : y + side, x : x + side] = True
        elif trial % 3 == 1:
            m |= rng.random((h, w)) < 0.01  # scattered pixels: many partial coverages
        else:
            m[rng.integers(0, h), :] = True  # a one-pixel line across
        for size in range(64, largest_useful_size(h, w) + 1, 32):
            whole = int(np.count_nonzero(Letterbox.fit(h, w, size).apply_mask(m) >= 0.5))
            assert kept_pixels(m, size) == whole, (h, w, trial, size)


@pytest.mark.parametrize(
    "mask",
    [blob(900, 1200, 450, 600, 3), blob(900, 1200, 17, 1001, 5), blob(1000, 333, 500, 100, 2)],
    ids=["3px-eye", "5px-near-edge", "2px-tall-photo"],
)
def test_the_smallest_keeping_size_is_where_every_larger_size_keeps_enough(mask):
    """ "Use N or larger" must hold: a size just above the first one that keeps a tiny outline can
    lose it again (it falls differently on the model's pixel grid)."""
    got = smallest_keeping_size(mask, start=64)
    sizes = list(range(64, largest_useful_size(*mask.shape) + 1, 32))
    keeps = [kept_pixels(mask, s) >= MIN_KEPT_PIXELS for s in sizes]
    assert got > 64 and all(keeps[sizes.index(got) :]) and not keeps[sizes.index(got) - 1]


def test_a_line_one_pixel_wide_needs_the_photo_almost_unshrunk_and_a_lone_pixel_never_fits():
    line = np.zeros((900, 1200), bool)
    line[300, 100:1100] = True
    size = smallest_keeping_size(line, start=129)
    assert size is not None and size > 600 and kept_pixels(line, size) >= MIN_KEPT_PIXELS
    dot = np.zeros((900, 1200), bool)
    dot[10, 10] = True
    assert smallest_keeping_size(dot, start=129) is None  # one pixel: no size up to 1216 px keeps 4
    assert largest_useful_size(900, 1200) == 1216
