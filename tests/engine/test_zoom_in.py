"""The zoom-in pass for thin parts (engine/zoom_in.py): when it zooms, how the window is chosen,
how prompts are mapped into the crop and the crop's mask pasted back, on a real mini SAM2."""

import numpy as np
import pytest

from descriptron_sam2pal.engine import zoom_in
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.interactive import InteractiveSegmenter
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.small_structures import union_box
from descriptron_sam2pal.engine.zoom_in import (
    ZoomInSegmenter,
    look_window,
    mask_width,
    needs_look,
    paste,
    prompts_in_window,
    proposal,
    reaches_side,
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
    """Every first-pass mask counts as thin, so the random mini model's answers are zoomed; no
    look around (tested on its own below), so one window is encoded per prompt set."""
    monkeypatch.setattr(zoom_in, "THIN", float("inf"))
    monkeypatch.setattr(zoom_in, "LOOK", 0.0)


def test_a_click_looks_around_when_its_answer_may_be_only_part_of_the_part():
    window = (20, 40, 60, 80)
    one = np.array([[60.0, 40.0]], np.float32), np.array([1])
    blob = np.zeros((120, 200), bool)
    blob[35:45, 55:66] = True  # an eye: compact, well inside its window
    assert not reaches_side(blob, window, 120, 200) and not needs_look(blob, window, *one)
    piece = np.zeros((120, 200), bool)
    piece[39:42, 45:76] = True  # a piece of a leg inside the window: 31 px long, 3 wide
    assert not reaches_side(piece, window, 120, 200) and needs_look(piece, window, *one)
    cut = np.zeros((120, 200), bool)
    cut[30:50, 50:80] = True  # reaches the window's right side: the part may go on
    assert reaches_side(cut, window, 120, 200) and needs_look(cut, window, *one)
    assert not reaches_side(cut, (20, 40, 60, 80), 120, 80)  # ... unless that is the photo's edge
    other = np.zeros((120, 200), bool)
    other[10:13, 100:180] = True  # nothing under the click
    assert needs_look(other, window, *one)
    assert not needs_look(piece, window, one[0], np.array([0]))  # no positive click
    # the look: a square of LOOK of the photo's longer side around the first positive click
    y0, x0, y1, x1 = look_window(np.array([[5.0, 5.0], [60.0, 40.0]], np.float32), np.array([0, 1]), 120, 200)
    assert y1 - y0 == x1 - x0 == round(zoom_in.LOOK * 200) and x0 <= 60 < x1 and y0 <= 40 < y1


def test_a_look_around_widens_the_window_to_what_it_finds(present_model, monkeypatch):
    monkeypatch.setattr(zoom_in, "THIN", float("inf"))
    photo = _photo()
    click = ([(60.0, 41.0)], [1])
    monkeypatch.setattr(zoom_in, "LOOK", 0.0)
    plain_zoom = ZoomInSegmenter(present_model, FeatureEncoder(present_model))
    plain_zoom.set_image(photo)
    plain_zoom.predict(*click)
    first = plain_zoom.last_window
    assert plain_zoom.looks == 0 and plain_zoom.crop.encoder.encoder_passes == 1
    monkeypatch.setattr(zoom_in, "LOOK", 0.4)
    monkeypatch.setattr(zoom_in, "LOOK_ELONGATION", 0.0)  # every answer may be a piece
    seg = ZoomInSegmenter(present_model, FeatureEncoder(present_model))
    seg.set_image(photo)
    mask, score = seg.predict(*click)
    assert seg.looks == 1
    # what the look sees: the clicks segmented in the square around the click ...
    pts, labels = np.array(click[0], np.float32), np.array(click[1])
    ly0, lx0, ly1, lx1 = look_window(pts, labels, *photo.shape[:2])
    crop = InteractiveSegmenter(present_model, FeatureEncoder(present_model))
    crop.set_image(np.ascontiguousarray(photo[ly0:ly1, lx0:lx1]))
    seen, _ = crop.predict([(60.0 - lx0, 41.0 - ly0)], [1])
    found = proposal(paste(seen, (ly0, lx0, ly1, lx1), *photo.shape[:2]), pts, labels, None)
    assert found is not None and found[1] > 0, "the mini model finds something around the click"
    # ... and the window is that part's with the first window, the answer segmented there
    wider = zoom_window(union_box([found[0], first]), 0.0, *photo.shape[:2], seg.image.letterbox.scale)
    assert seg.last_window == wider
    wy0, wx0, wy1, wx1 = wider
    assert wy0 <= first[0] and wx0 <= first[1] and wy1 >= first[2] and wx1 >= first[3]
    crop.set_image(np.ascontiguousarray(photo[wy0:wy1, wx0:wx1]))
    expected, expected_score = crop.predict([(60.0 - wx0, 41.0 - wy0)], [1])
    assert np.array_equal(mask, paste(expected, wider, *photo.shape[:2])) and score == expected_score
    # corrective clicks keep the look's window and look no more; a box never looks
    passes = seg.crop.encoder.encoder_passes
    seg.predict([(60.0, 41.0), (wx0 + 1.0, wy0 + 1.0)], [1, 0])
    assert seg.last_window == wider and seg.looks == 1 and seg.crop.encoder.encoder_passes == passes
    seg.predict(box=(30, 38, 150, 46))
    assert seg.looks == 1


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


def test_the_smallest_thin_other_answer_gives_the_window():
    pts, labels = np.array([[60.0, 41.0]], np.float32), np.array([1])
    body = np.zeros((120, 200), bool)
    body[20:110, 20:180] = True  # a wide answer
    eye = np.zeros((120, 200), bool)
    eye[38:45, 56:64] = True  # 7 x 8 px under the click
    ring = np.zeros((120, 200), bool)
    ring[35:48, 50:70] = True  # smaller than the body but 13 px wide: 16.6 model px, not thin
    elsewhere = np.zeros((120, 200), bool)
    elsewhere[90:95, 150:160] = True  # thin, not under the click
    window = zoom_in.smaller_window([(body, 0.9), (ring, 0.5), (eye, 0.4)], pts, labels, 1.28)
    assert window == zoom_window(*proposal(eye, pts, labels, None), 120, 200, 1.28)
    assert zoom_in.smaller_window([(body, 0.9), (elsewhere, 0.5)], pts, labels, 1.28) is None
    assert zoom_in.smaller_window([], pts, labels, 1.28) is None


def test_a_wide_answer_to_a_click_gives_way_to_a_smaller_ones_close_up(present_model, monkeypatch):
    monkeypatch.setattr(zoom_in, "THIN", 0.0)  # every answer is wide: no zoom-in of its own
    photo = _photo()
    click = ([(60.0, 41.0)], [1])
    plain = InteractiveSegmenter(present_model, FeatureEncoder(present_model))
    plain.set_image(photo)
    whole, whole_score = plain.predict(*click)
    crop = InteractiveSegmenter(present_model, FeatureEncoder(present_model))

    def close_up(window):
        y0, x0, y1, x1 = window
        crop.set_image(np.ascontiguousarray(photo[y0:y1, x0:x1]))
        mask, score = crop.predict([(60.0 - x0, 41.0 - y0)], [1])
        return paste(mask, window, *photo.shape[:2]), score

    surer, less_sure = (16, 45, 46, 75), (21, 40, 61, 80)  # for this seeded mini model
    surer_mask, surer_score = close_up(surer)
    assert surer_mask.any() and surer_score > whole_score and close_up(less_sure)[1] < whole_score
    for window, inside, kept in ((surer, True, True), (surer, False, False), (less_sure, True, False)):
        monkeypatch.setattr(zoom_in, "smaller_window", lambda *a, _w=window: _w)
        monkeypatch.setattr(zoom_in, "reaches_side", lambda *a, _r=not inside: _r)
        seg = ZoomInSegmenter(present_model, FeatureEncoder(present_model))
        seg.set_image(photo)
        mask, score = seg.predict(*click)
        assert seg.smaller_looks == 1
        if kept:  # inside its window and surer than the wide answer: the close-up, in its window
            assert np.array_equal(mask, surer_mask) and score == surer_score and seg.last_window == surer
            seg.predict([click[0][0], (45.0, 25.0)], [1, 0])  # corrective clicks keep the window
            assert seg.last_window == surer and seg.smaller_looks == 1
        else:  # reaching its window's side, or less sure than the wide answer: the wide answer
            assert np.array_equal(mask, whole) and score == whole_score and seg.last_window is None
    seg.predict(box=(30, 38, 150, 46))  # a box never takes another answer
    assert seg.smaller_looks == 1
