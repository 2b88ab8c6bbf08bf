"""The zoom-in pass for thin parts (engine/zoom_in.py): when it zooms, how the window is chosen,
how prompts are mapped into the crop and the crop's mask pasted back, on a real mini SAM2."""

import numpy as np
import pytest

from descriptron_sam2pal.engine import zoom_in
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.interactive import InteractiveSegmenter
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.zoom_in import (
    ZoomInSegmenter,
    mask_width,
    paste,
    prompts_in_window,
    proposal,
    zoom_window,
)


def _photo(h=120, w=200, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    img[40:44, 30:150] = 230  # a thin bright "leg"
    img[60:110, 120:190] = 180  # a large "elytron"
    return img


def test_a_thin_part_is_zoomed_a_wide_one_is_not():
    mask = np.zeros((100, 200), bool)
    mask[40:43, 30:90] = True  # 3 px wide
    mask[60:100, 100:180] = True  # 40 px wide
    pts, labels = np.array([[50.0, 41.0]], np.float32), np.array([1])
    where, width = proposal(mask, pts, labels, None)
    assert where == (40, 30, 43, 90) and width == pytest.approx(mask_width(mask[35:48, 25:95]))
    # model pixels: 200 px photo -> 256 px input, scale 1.28; 3 px is under THIN model pixels
    window = zoom_window(where, width, 100, 200, 1.28)
    assert window is not None
    y0, x0, y1, x1 = window
    assert y1 - y0 == x1 - x0 == 60 and x0 <= 30 and x1 >= 90  # a square of the part's length
    where, width = proposal(mask, np.array([[140.0, 80.0]], np.float32), labels, None)
    assert width * 1.28 >= zoom_in.THIN and zoom_window(where, width, 100, 200, 1.28) is None
    # nothing under the click: a window of MIN_WINDOW of the photo around it
    where, width = proposal(mask, np.array([[10.0, 10.0]], np.float32), labels, None)
    assert width == 0.0
    y0, x0, y1, x1 = zoom_window(where, width, 100, 200, 1.28)
    assert y1 - y0 == x1 - x0 == round(zoom_in.MIN_WINDOW * 200) and x0 <= 10 < x1 and y0 <= 10 < y1
    # a box: its window, measured by the first pass's mask inside it
    where, width = proposal(mask, np.zeros((0, 2), np.float32), np.zeros(0, int), (20, 35, 95, 50))
    assert where == (35, 20, 51, 96) and width == pytest.approx(mask_width(mask[40:43, 30:90]))
    # only negative clicks: nothing to zoom on
    assert proposal(mask, pts, np.array([0]), None) is None


def test_prompts_are_mapped_into_the_window_and_the_mask_pasted_back():
    window = (20, 40, 80, 100)
    pts = np.array([[50.0, 30.0], [10.0, 10.0], [99.0, 79.0]], np.float32)
    crop_pts, crop_labels, crop_box = prompts_in_window(pts, np.array([1, 0, 0]), (30, 10, 70, 50), window)
    np.testing.assert_allclose(crop_pts, [[10, 10], [59, 59]])  # the click outside is left out
    assert crop_labels.tolist() == [1, 0]
    assert crop_box == (0.0, 0.0, 30.0, 30.0)  # cut to the window
    crop = np.zeros((60, 60), bool)
    crop[5:10, 50:60] = True
    out = paste(crop, window, 120, 200)
    assert out.shape == (120, 200) and out.sum() == crop.sum() and out[25:30, 90:100].all()


@pytest.fixture
def thin_everywhere(monkeypatch):
    """Every first-pass mask counts as thin, so the random mini model's answers are zoomed."""
    monkeypatch.setattr(zoom_in, "THIN", float("inf"))


def test_a_zoomed_click_is_the_crop_segmenters_answer_pasted(present_model, thin_everywhere, monkeypatch):
    photo = _photo()
    seg = ZoomInSegmenter(present_model, FeatureEncoder(present_model), zoom=True)
    seg.set_image(photo)
    seen = {}
    pe = present_model.sam.sam_prompt_encoder
    original = pe.forward

    def spy(points, boxes, masks):
        seen["coords"] = points[0].clone()
        return original(points, boxes, masks)

    monkeypatch.setattr(pe, "forward", spy)
    mask, score = seg.predict([(60.0, 41.0)], [1])
    window = seg.last_window
    assert window is not None and mask.shape == photo.shape[:2] and np.isfinite(score)
    y0, x0, y1, x1 = window
    assert not mask[:y0].any() and not mask[y1:].any() and not mask[:, :x0].any() and not mask[:, x1:].any()
    # the crop is the window's pixels at the model's full input size ...
    crop_pixels = np.ascontiguousarray(photo[y0:y1, x0:x1])
    assert seg.crop.image.key == prepare_image(crop_pixels, present_model.image_size).key
    # ... the click reaches the decoder in the crop's model pixels ...
    lb = seg.crop.image.letterbox
    expected = lb.points_to_model(np.array([[60.0 - x0, 41.0 - y0]], np.float32))
    np.testing.assert_allclose(seen["coords"][0].numpy(), expected, atol=1e-4)
    # ... and the answer is what a plain segmenter says on the crop, pasted at the window
    plain = InteractiveSegmenter(present_model, FeatureEncoder(present_model))
    plain.set_image(crop_pixels)
    crop_mask, crop_score = plain.predict([(60.0 - x0, 41.0 - y0)], [1])
    assert crop_mask.any()
    assert np.array_equal(mask, paste(crop_mask, window, *photo.shape[:2])) and score == crop_score


def test_corrective_clicks_reuse_the_crop(present_model, thin_everywhere):
    seg = ZoomInSegmenter(present_model, FeatureEncoder(present_model), zoom=True)
    seg.set_image(_photo())
    seg.predict([(60.0, 41.0)], [1])
    window = seg.last_window
    y0, x0, y1, x1 = window
    inside = ((x0 + x1) / 2 + 1, (y0 + y1) / 2 + 1)
    seg.predict([(60.0, 41.0), inside], [1, 0])
    seg.predict([(60.0, 41.0), inside, (x0 + 1.0, y0 + 1.0)], [1, 0, 1])
    assert seg.last_window == window
    assert seg.crop.encoder.encoder_passes == 1 and seg.encoder.encoder_passes == 1
    seg.predict([(60.0, 41.0), inside, (x0 + 1.0, y0 + 1.0), (5.0, 5.0)], [1, 0, 1, 0])
    assert seg.last_window == window and seg.crop.encoder.encoder_passes == 1  # a negative click outside
    # a positive click outside: the smallest square holding the window and the click
    far = (x0 - 20.0, 100.0) if x0 >= 20 else (x1 + 20.0, 100.0)
    seg.predict([(60.0, 41.0), inside, (x0 + 1.0, y0 + 1.0), (5.0, 5.0), far], [1, 0, 1, 0, 1])
    gy0, gx0, gy1, gx1 = seg.last_window
    assert gx0 <= min(x0, far[0]) and gx1 >= max(x1, far[0] + 1) and gy0 <= y0 and gy1 >= y1
    assert gy1 - gy0 == min(120, gx1 - gx0)  # a square, cut to the photo
    assert seg.crop.encoder.encoder_passes == 2
    seg.predict(box=(100, 50, 199, 119))  # another prompt set: its own window
    assert seg.crop.encoder.encoder_passes == 3


def test_wide_parts_prepared_images_and_zoom_off_keep_the_first_pass(present_model, monkeypatch):
    photo = _photo()
    plain = InteractiveSegmenter(present_model, FeatureEncoder(present_model))
    plain.set_image(photo)
    expected, _ = plain.predict([(150.0, 80.0)], [1])
    monkeypatch.setattr(zoom_in, "THIN", 0.0)  # no first pass is thin
    seg = ZoomInSegmenter(present_model, FeatureEncoder(present_model), zoom=True)
    seg.set_image(photo)
    assert np.array_equal(seg.predict([(150.0, 80.0)], [1])[0], expected) and seg.last_window is None
    monkeypatch.setattr(zoom_in, "THIN", float("inf"))
    # corrective clicks keep the first prompt's decision: a part found wide stays unzoomed
    seg.predict([(150.0, 80.0), (130.0, 100.0)], [1, 0])
    assert seg.last_window is None
    seg.predict([(150.0, 80.0), (130.0, 100.0), (170.0, 70.0)], [1, 0, 1])
    assert seg.last_window is None and seg.windows == 0
    seg.predict([(60.0, 41.0)], [1])  # a new prompt set decides again
    assert seg.last_window is not None
    off = ZoomInSegmenter(present_model, FeatureEncoder(present_model), zoom=False)
    off.set_image(photo)
    assert np.array_equal(off.predict([(150.0, 80.0)], [1])[0], expected) and off.windows == 0
    passes = seg.crop.encoder.encoder_passes
    seg.set_image(prepare_image(photo, present_model.image_size))  # no full-resolution pixels
    seg.predict([(60.0, 41.0)], [1])
    assert seg.last_window is None and seg.crop.encoder.encoder_passes == passes
