"""benchmarks/testbed/demo.py: the demo model's zoom-in crops are the product's zoom-in windows."""

import sys
from argparse import Namespace

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal.engine import zoom_in
from descriptron_sam2pal.engine.small_structures import mask_box
from tests.helpers.benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def demo():
    # demo.py puts benchmarks/testbed on sys.path and imports its `data`, `pretrain` and `pseudo`;
    # `data` is also the name of benchmarks/data.py, which other benchmark tests import: restore both.
    path, modules = list(sys.path), dict(sys.modules)
    for name in ("data", "pretrain", "pseudo", "clicks", "quality"):
        sys.modules.pop(name, None)
    yield load_benchmark("benchmarks/testbed/demo.py", "demo_recipe")
    sys.path[:] = path
    for name in set(sys.modules) - set(modules):
        del sys.modules[name]
    sys.modules.update(modules)


def photo_with_a_leg(h=200, w=300):
    """A light photo, a dark body and a thin dark 'leg' 2 pixels wide and 20 long."""
    img = np.full((h, w, 3), 230, np.uint8)
    body = np.zeros((h, w), bool)
    body[60:140, 100:200] = True
    leg = np.zeros((h, w), bool)
    leg[150:170, 220:222] = True
    img[body | leg] = (40, 30, 20)
    return img, body, leg


def test_zoom_crop_is_the_products_window_at_full_input(demo):
    img, _, leg = photo_with_a_leg()
    size = 256
    pixels, truth, valid = demo.zoom_crop(img, leg, mask_box(leg), size, np.random.RandomState(0))
    assert pixels.shape == (size, size, 3) and truth.shape == valid.shape == (size, size)
    # the window is at least a tenth of the photo's longer side (30 px) and square: the leg
    # (2 x 20 photo pixels, 1.7 model pixels wide at the photo's scale) is about 17 wide here
    assert valid.all()
    scale = size / (zoom_in.MIN_WINDOW * 300)
    assert truth.sum() == pytest.approx(leg.sum() * scale**2, rel=0.35)
    assert zoom_in.mask_width(truth) >= zoom_in.THIN
    # the crop shows the leg where the truth says
    assert pixels[truth].mean() < 100 and pixels[~truth & valid].mean() > 150


def test_thin_parts_are_the_parts_the_product_zooms_into(demo, tmp_path):
    root = tmp_path / "five"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img, body, leg = photo_with_a_leg()
    colors = demo.tbdata.COLORS
    mask = np.zeros(img.shape, np.uint8)
    mask[body] = colors["elytra"]
    mask[leg] = colors["legs"]
    Image.fromarray(img).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.png")
    args = Namespace(data=root, data9=tmp_path / "nine", size=256)
    parts = demo.thin_parts(args, ["5class/a.png"])
    assert len(parts) == 1  # the leg; the elytra are 80 photo pixels wide
    pixels, part, box = parts[0]
    assert (part == leg).all() and box == mask_box(leg) and pixels.shape == img.shape


def test_small_crops_are_the_second_pass_crops_of_the_small_structures(demo, tmp_path):
    from descriptron_sam2pal.engine import small_structures as ss

    root = tmp_path / "nine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    h, w = 400, 600
    img = np.full((h, w, 3), 230, np.uint8)
    head, eye = np.zeros((h, w), bool), np.zeros((h, w), bool)
    head[100:300, 100:400] = True
    eye[150:170, 200:220] = True  # 20 x 20 photo pixels: 8.5 model pixels at 256 px
    img[head] = (90, 60, 40)
    img[eye] = (10, 10, 10)
    mask = np.zeros(img.shape, np.uint8)
    mask[head & ~eye] = demo.COLORS9["head"]
    mask[eye] = demo.COLORS9["eyes"]
    Image.fromarray(img).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.png")
    args = Namespace(data=tmp_path / "five", data9=root, size=256)
    groups = demo.small_groups(args, ["9class/a.png"])
    assert len(groups) == 1  # the eye; the head is large
    pixels, masks = groups[0]
    assert list(masks) == ["eyes"] and (masks["eyes"] == eye).all()
    # unmoved, the crop is the product's: CONTEXT times the eye's side, the eye in its middle
    crop, labels, valid = demo.small_crop(pixels, masks, ["eyes"], 256, np.random.RandomState(0), 0.0)
    y0, x0, y1, x1 = ss.square_box(ss.mask_box(eye), ss.CONTEXT, h, w)
    assert (y1 - y0, x1 - x0) == (32, 32) and valid.all()
    shown = labels == 1 + list(demo.COLORS9).index("eyes")
    assert shown.sum() == pytest.approx(256**2 / ss.CONTEXT**2, rel=0.1)
    assert crop[shown].mean() < 40 and crop[~shown].mean() > 60
    # placed roughly, the eye stays in the crop
    for seed in range(5):
        _, labels, _ = demo.small_crop(pixels, masks, ["eyes"], 256, np.random.RandomState(seed), 0.15)
        assert (labels > 0).sum() > 0.3 * 256**2 / ss.CONTEXT**2
