"""Letterbox: centred, exact, invertible; masks and points survive the round trip."""

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from descriptron_sam2pal.imaging.letterbox import Letterbox


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def _ellipse_mask(height, width):
    mask = np.zeros((height, width), np.uint8)
    centre = (width // 2, height // 2)
    axes = (max(1, int(width * 0.35)), max(1, int(height * 0.3)))
    cv2.ellipse(mask, centre, axes, 20, 0, 360, 1, -1)
    mask[height // 5 : height // 5 + max(2, height // 8), width // 10 : width // 2] = 1
    return mask.astype(bool)


@pytest.mark.parametrize(
    "height, width, size",
    [(480, 640, 1024), (640, 480, 1024), (3000, 2000, 1024), (100, 100, 64), (1, 500, 1024),
     (500, 1, 1024), (1, 5000, 1024), (7, 3, 4), (1024, 1024, 1024), (333, 777, 512)],
)
def test_fit_centres_content_and_keeps_aspect(height, width, size):
    lb = Letterbox.fit(height, width, size)
    assert max(lb.new_h, lb.new_w) == size
    assert lb.new_h >= 1 and lb.new_w >= 1
    assert lb.pad_top == (size - lb.new_h) // 2
    assert lb.pad_left == (size - lb.new_w) // 2
    assert lb.scale == pytest.approx(size / max(height, width))
    assert abs(lb.new_h - height * lb.scale) <= 0.5 or lb.new_h == 1
    assert abs(lb.new_w - width * lb.scale) <= 0.5 or lb.new_w == 1
    assert lb.valid_mask().sum() == lb.new_h * lb.new_w


def test_apply_image_pads_with_zeros_around_resized_content():
    img = np.random.default_rng(0).integers(1, 256, (300, 200, 3), dtype=np.uint8)
    lb = Letterbox.fit(300, 200, 150)
    out = lb.apply_image(img)
    assert out.shape == (150, 150, 3) and out.dtype == np.uint8
    valid = lb.valid_mask()
    assert (out[~valid] == 0).all()
    expected = cv2.resize(img, (lb.new_w, lb.new_h), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out[valid].reshape(lb.new_h, lb.new_w, 3), expected)


def test_apply_image_rejects_wrong_shape():
    lb = Letterbox.fit(30, 20, 64)
    with pytest.raises(ValueError, match=r"\(30, 20, 3\)"):
        lb.apply_image(np.zeros((20, 30, 3), np.uint8))


def test_apply_mask_is_soft_in_range_and_zero_in_padding():
    mask = _ellipse_mask(400, 300)
    lb = Letterbox.fit(400, 300, 128)
    soft = lb.apply_mask(mask)
    assert soft.dtype == np.float32 and soft.shape == (128, 128)
    assert soft.min() >= 0 and soft.max() <= 1
    assert (soft[~lb.valid_mask()] == 0).all()
    edge = (soft > 0) & (soft < 1)
    assert edge.any()  # area averaging gives fractional edges


@pytest.mark.parametrize(
    "height, width, size",
    [(300, 200, 1024), (2000, 1500, 1024), (480, 640, 256), (97, 211, 128), (1024, 700, 1024)],
)
def test_mask_round_trip_through_model_grid(height, width, size):
    mask = _ellipse_mask(height, width)
    lb = Letterbox.fit(height, width, size)
    back = lb.unapply(lb.apply_mask(mask))
    assert back.shape == (height, width) and back.dtype == np.float32
    assert _iou(back > 0.5, mask) > 0.97


def test_round_trip_is_exact_without_resizing():
    mask = np.random.default_rng(3).random((80, 50)) > 0.5
    lb = Letterbox.fit(80, 50, 80)
    assert lb.scale == 1.0 and lb.is_identity_resize
    soft = lb.apply_mask(mask)
    np.testing.assert_array_equal(lb.unapply(soft) > 0.5, mask)
    img = np.random.default_rng(4).integers(0, 256, (80, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lb.apply_image(img)[:, lb.pad_left : lb.pad_left + 50], img)


def test_unapply_keeps_leading_dims_and_accepts_float64():
    lb = Letterbox.fit(60, 90, 32)
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 3, 32, 32))
    out = lb.unapply(logits)
    assert out.shape == (2, 3, 60, 90) and out.dtype == np.float32
    np.testing.assert_allclose(out[1, 2], lb.unapply(logits[1, 2].astype(np.float32)), atol=1e-5)
    assert lb.unapply(logits.astype(np.float32)).dtype == np.float32


def test_unapply_crops_exactly_the_content():
    lb = Letterbox.fit(40, 100, 50)
    canvas = np.full((50, 50), -5.0, np.float32)
    canvas[lb.valid_mask()] = 7.0
    np.testing.assert_array_equal(lb.unapply(canvas), np.full((40, 100), 7.0, np.float32))


def test_unapply_rejects_tensors_and_wrong_shapes():
    lb = Letterbox.fit(40, 100, 50)
    with pytest.raises(TypeError, match="numpy"):
        lb.unapply([[0.0] * 50] * 50)
    with pytest.raises(ValueError, match="50, 50"):
        lb.unapply(np.zeros((3, 40, 40), np.float32))


@pytest.mark.parametrize("height, width", [(1, 500), (500, 1), (2, 3000)])
def test_extreme_aspect_ratios_round_trip(height, width):
    lb = Letterbox.fit(height, width, 256)
    assert lb.new_h >= 1 and lb.new_w >= 1
    mask = np.zeros((height, width), bool)
    if height < width:
        mask[:, width // 4 : width // 2] = True
    else:
        mask[height // 4 : height // 2, :] = True
    back = lb.unapply(lb.apply_mask(mask)) > 0.5
    assert back.shape == (height, width)
    assert _iou(back, mask) > 0.97
    img = np.full((height, width, 3), 200, np.uint8)
    out = lb.apply_image(img)
    assert (out[lb.valid_mask()] == 200).all()


def test_points_follow_pixel_centres():
    lb = Letterbox.fit(300, 200, 100)
    # The image centre maps to the content centre, pixel edges to content edges.
    centre = lb.points_to_model([[(200 - 1) / 2, (300 - 1) / 2]])[0]
    np.testing.assert_allclose(
        centre, [lb.pad_left + (lb.new_w - 1) / 2, lb.pad_top + (lb.new_h - 1) / 2]
    )
    corners = lb.points_to_model([[-0.5, -0.5], [199.5, 299.5]])
    np.testing.assert_allclose(
        corners,
        [[lb.pad_left - 0.5, lb.pad_top - 0.5],
         [lb.pad_left + lb.new_w - 0.5, lb.pad_top + lb.new_h - 0.5]],
    )


def test_points_land_on_the_same_content():
    """A bright blob's centroid maps to the resized blob's centroid."""
    img = np.zeros((400, 300), np.uint8)
    cv2.circle(img, (210, 90), 12, 255, -1)
    lb = Letterbox.fit(400, 300, 200)
    model = lb.apply_mask(img > 0)
    ys, xs = np.nonzero(model)
    weights = model[ys, xs]
    centroid = [np.average(xs, weights=weights), np.average(ys, weights=weights)]
    np.testing.assert_allclose(lb.points_to_model([[210, 90]])[0], centroid, atol=0.3)


def test_empty_points():
    lb = Letterbox.fit(10, 20, 32)
    assert lb.points_to_model(np.zeros((0, 2))).shape == (0, 2)
    assert lb.points_to_image([]).shape == (0, 2)


def test_dict_round_trip_is_json_serialisable():
    lb = Letterbox.fit(333, 777, 512)
    d = json.loads(json.dumps(lb.to_dict()))
    assert Letterbox.from_dict(d) == lb


def test_inconsistent_dict_is_rejected():
    d = Letterbox.fit(100, 50, 64).to_dict()
    d["pad_left"] = 60
    with pytest.raises(ValueError, match="columns"):
        Letterbox.from_dict(d)
    with pytest.raises(ValueError):
        Letterbox.fit(0, 10, 64)


@settings(max_examples=80, deadline=None)
@given(
    height=st.integers(1, 5000),
    width=st.integers(1, 5000),
    size=st.integers(1, 2048),
    points=st.lists(
        st.tuples(st.floats(-10, 5000, allow_nan=False), st.floats(-10, 5000, allow_nan=False)),
        max_size=8,
    ),
)
def test_fit_invariants_and_point_inverse(height, width, size, points):
    lb = Letterbox.fit(height, width, size)
    assert 1 <= lb.new_h <= size and 1 <= lb.new_w <= size
    assert lb.pad_top + lb.new_h <= size and lb.pad_left + lb.new_w <= size
    assert lb.pad_top == (size - lb.new_h) // 2 and lb.pad_left == (size - lb.new_w) // 2
    assert lb.valid_mask().sum() == lb.new_h * lb.new_w
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    np.testing.assert_allclose(lb.points_to_image(lb.points_to_model(xy)), xy, atol=1e-6)
    np.testing.assert_allclose(lb.points_to_model(lb.points_to_image(xy)), xy, atol=1e-6)
