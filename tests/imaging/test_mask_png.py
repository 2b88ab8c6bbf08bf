"""Mask PNGs given the wrong way get a message that says what to do."""

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.mask_png import mask_from_binary_png, masks_from_color_png


def test_a_colour_mask_given_as_binary_is_refused_with_its_colour_map(tmp_path):
    colour = np.zeros((20, 30, 3), np.uint8)
    colour[2:8, 2:8] = (200, 0, 0)
    colour[10:18, 10:25] = (0, 200, 0)
    path = tmp_path / "colour.png"
    Image.fromarray(colour).save(path)
    with pytest.raises(UserError, match=r"colour mask with 2 colours.*--colors \"structure1=.*structure2="):
        mask_from_binary_png(path)
    masks = masks_from_color_png(path, "head=200,0,0;eye=0,200,0")          # what the message says works
    assert masks["head"].sum() == 36 and masks["eye"].sum() == 120


@pytest.mark.parametrize("kind", ["white", "red", "red antialiased", "grey levels", "palette"])
def test_binary_masks_in_any_single_colour_are_read(tmp_path, kind):
    m = np.zeros((20, 30), bool)
    m[4:15, 5:20] = True
    if kind == "white":
        img = Image.fromarray(m.astype(np.uint8) * 255)
    elif kind == "grey levels":
        img = Image.fromarray((m * 200 + np.pad(m, 1)[2:, 1:-1] * 40).clip(0, 255).astype(np.uint8))
    elif kind == "palette":
        img = Image.fromarray(m.astype(np.uint8), "L").convert("P")
        img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    else:
        rgb = np.zeros((20, 30, 3), np.uint8)
        rgb[m] = (255, 0, 0)
        if kind == "red antialiased":
            rgb[3, 5:20] = (90, 0, 0)                                       # a soft edge: a shade of red
        img = Image.fromarray(rgb)
    path = tmp_path / "m.png"
    img.save(path)
    assert np.array_equal(mask_from_binary_png(path), m)
