"""Mask geometry: exact polygon and RLE round trips, holes, clear errors."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco_mask

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.masks import (
    SegmentationError,
    fill_holes,
    has_hole,
    mask_area,
    mask_bbox,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_mask,
    rle_to_mask,
    segmentation_to_mask,
    simplify_polygon,
)


def _round_trip(mask, tolerance=0.0):
    polygons = mask_to_polygons(mask, tolerance)
    return polygons, polygons_to_mask(polygons, *mask.shape)


def _assert_valid_polygons(polygons):
    for poly in polygons:
        assert len(poly) % 2 == 0 and len(poly) >= 6
        assert all(isinstance(v, float) for v in poly)


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


# --- polygons -------------------------------------------------------------


@pytest.mark.parametrize(
    "pixels",
    [
        [(3, 4)],  # single pixel
        [(3, 4), (3, 5)],  # two pixels side by side
        [(3, 4), (4, 5)],  # two pixels touching diagonally
        [(0, 0)],  # corner pixel
        [(6, 8)],  # opposite corner pixel
        [(2, c) for c in range(1, 8)],  # one-pixel-wide horizontal line
        [(r, 2) for r in range(0, 7)],  # vertical line touching the border
        [(r, r) for r in range(1, 6)],  # diagonal line
        [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3)],  # thin L
    ],
)
def test_thin_components_round_trip_exactly(pixels):
    mask = np.zeros((7, 9), bool)
    for r, c in pixels:
        mask[r, c] = True
    polygons, back = _round_trip(mask)
    assert len(polygons) == 1
    _assert_valid_polygons(polygons)
    np.testing.assert_array_equal(back, mask)


def test_single_pixel_polygon_is_its_centre():
    mask = np.zeros((5, 5), bool)
    mask[1, 3] = True
    assert mask_to_polygons(mask) == [[3.0, 1.0, 3.0, 1.0, 3.0, 1.0]]


def test_block_polygon_uses_pixel_centres():
    mask = np.zeros((10, 10), bool)
    mask[2:7, 3:8] = True
    (poly,) = mask_to_polygons(mask)
    xs, ys = poly[0::2], poly[1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (3.0, 7.0, 2.0, 6.0)


def test_every_component_becomes_a_polygon_largest_first():
    mask = np.zeros((40, 40), bool)
    mask[2:5, 2:5] = True
    mask[10:30, 10:30] = True
    mask[35, 35] = True
    polygons, back = _round_trip(mask)
    assert len(polygons) == 3
    xs = polygons[0][0::2]
    assert min(xs) == 10 and max(xs) == 29
    np.testing.assert_array_equal(back, mask)


def test_holes_are_filled_by_polygons():
    mask = np.zeros((30, 30), bool)
    mask[5:25, 5:25] = True
    mask[10:20, 10:20] = False
    mask[14:16, 14:16] = True  # an island inside the hole
    polygons, back = _round_trip(mask)
    assert len(polygons) == 1
    np.testing.assert_array_equal(back, fill_holes(mask))
    assert back[12, 12]


def test_empty_mask_has_no_polygons():
    assert mask_to_polygons(np.zeros((4, 5), bool)) == []
    assert not polygons_to_mask([], 4, 5).any()


def test_numeric_masks_use_nonzero_as_foreground():
    mask = np.zeros((6, 6), np.uint8)
    mask[1:4, 2:5] = 255
    np.testing.assert_array_equal(polygons_to_mask(mask_to_polygons(mask), 6, 6), mask > 0)
    with pytest.raises(ValueError, match="2-D"):
        mask_to_polygons(np.zeros((2, 3, 3)))


def test_tolerance_simplifies_but_keeps_shape():
    mask = np.zeros((200, 200), np.uint8)
    cv2.circle(mask, (100, 100), 70, 1, -1)
    mask = mask.astype(bool)
    exact, _ = _round_trip(mask)
    simplified, back = _round_trip(mask, tolerance=1.5)
    _assert_valid_polygons(simplified)
    assert len(simplified[0]) < len(exact[0])
    assert _iou(back, mask) > 0.98


def test_partly_outside_polygons_are_clipped():
    square = [-5.0, -5.0, 4.0, -5.0, 4.0, 4.0, -5.0, 4.0]
    mask = polygons_to_mask([square], 10, 10)
    expected = np.zeros((10, 10), bool)
    expected[:5, :5] = True
    np.testing.assert_array_equal(mask, expected)
    far = [-1e9, -1e9, 1e9, -1e9, 1e9, 1e9, -1e9, 1e9]
    assert polygons_to_mask([far], 10, 10).all()
    assert not polygons_to_mask([[50.0, 50.0, 60.0, 50.0, 60.0, 60.0]], 10, 10).any()


def test_fractional_coordinates_use_pixel_centres():
    # Pixel centres 1 and 2 lie inside [0.6, 2.4]; 0 and 3 do not.
    square = [0.6, 0.6, 2.4, 0.6, 2.4, 2.4, 0.6, 2.4]
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(polygons_to_mask([square], 5, 5), expected)


def test_bad_polygons_raise_segmentation_error():
    with pytest.raises(SegmentationError, match="odd"):
        polygons_to_mask([[1.0, 2.0, 3.0]], 5, 5)
    with pytest.raises(SegmentationError, match="NaN"):
        polygons_to_mask([[1.0, float("nan"), 3.0, 4.0, 2.0, 2.0]], 5, 5)
    with pytest.raises(SegmentationError, match="numbers"):
        polygons_to_mask([["a", "b", "c", "d", "e", "f"]], 5, 5)


# --- holes ----------------------------------------------------------------


def test_has_hole_respects_min_area_and_border():
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    assert not has_hole(mask)
    mask[10:17, 10:17] = False  # 49 px hole
    assert not has_hole(mask, min_area=64)
    assert has_hole(mask, min_area=49)
    mask[10:18, 10:18] = False  # 64 px hole
    assert has_hole(mask)
    notch = np.zeros((40, 40), bool)
    notch[5:35, 5:35] = True
    notch[0:20, 15:25] = False  # open to the border: a notch, not a hole
    assert not has_hole(notch, min_area=1)


def test_diagonal_gaps_do_not_open_a_hole():
    """Background is 4-connected: a ring closed only diagonally still encloses."""
    mask = np.zeros((5, 5), bool)
    for r, c in [(1, 2), (2, 1), (2, 3), (3, 2)]:
        mask[r, c] = True
    assert has_hole(mask, min_area=1)
    assert fill_holes(mask)[2, 2]
    np.testing.assert_array_equal(polygons_to_mask(mask_to_polygons(mask), 5, 5), fill_holes(mask))


# --- RLE ------------------------------------------------------------------


def test_rle_is_column_major_and_starts_with_zeros():
    mask = np.array([[0, 1, 1], [0, 0, 1]], bool)
    # column-major: 0 0 | 1 0 | 1 1
    assert mask_to_rle(mask) == {"size": [2, 3], "counts": [2, 1, 1, 2]}
    mask[0, 0] = True
    assert mask_to_rle(mask)["counts"] == [0, 1, 1, 1, 1, 2]
    assert mask_to_rle(np.zeros((2, 3), bool))["counts"] == [6]
    assert mask_to_rle(np.ones((2, 3), bool))["counts"] == [0, 6]


def test_rle_counts_are_plain_ints_for_json():
    rle = mask_to_rle(np.eye(4, dtype=bool))
    assert all(type(c) is int for c in rle["counts"])
    assert all(type(v) is int for v in rle["size"])


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_rle_agrees_with_pycocotools():
    mask = np.random.default_rng(0).random((23, 17)) > 0.6
    rle = mask_to_rle(mask)
    decoded = coco_mask.decode(coco_mask.frPyObjects(rle, 23, 17)).astype(bool)
    np.testing.assert_array_equal(decoded, mask)
    compressed = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert isinstance(compressed["counts"], bytes)
    np.testing.assert_array_equal(rle_to_mask(compressed), mask)
    as_text = {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")}
    np.testing.assert_array_equal(rle_to_mask(as_text), mask)
    assert mask_bbox(mask) == coco_mask.toBbox(compressed).tolist()
    assert mask_area(mask) == int(coco_mask.area(compressed))


def test_rle_errors_are_clear():
    with pytest.raises(SegmentationError, match="add up to 5"):
        rle_to_mask({"size": [2, 3], "counts": [2, 3]})
    with pytest.raises(SegmentationError, match="negative"):
        rle_to_mask({"size": [2, 3], "counts": [8, -2]})
    with pytest.raises(SegmentationError, match=r"\[height, width\]"):
        rle_to_mask({"size": [2], "counts": [2]})
    with pytest.raises(SegmentationError, match="invalid character"):
        rle_to_mask({"size": [2, 3], "counts": "\x01\x02"})
    with pytest.raises(SegmentationError, match="'size'"):
        rle_to_mask({"counts": [6]})
    good = coco_mask.encode(np.asfortranarray(np.ones((4, 4), np.uint8)))
    with pytest.raises(SegmentationError, match="add up to 16"):
        rle_to_mask({"size": [5, 4], "counts": good["counts"]})


# --- segmentation dispatch ------------------------------------------------


def test_segmentation_to_mask_dispatches_every_form():
    mask = np.zeros((12, 10), bool)
    mask[2:6, 3:8] = True
    mask[9, 1] = True
    compressed = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    forms = [
        mask_to_polygons(mask),
        mask_to_rle(mask),
        compressed,
        {"size": compressed["size"], "counts": compressed["counts"].decode()},
        [compressed],
    ]
    for form in forms:
        np.testing.assert_array_equal(segmentation_to_mask(form, 12, 10), mask)
    single = mask_to_polygons(mask)[0]  # one unwrapped flat polygon
    assert segmentation_to_mask(single, 12, 10).sum() == 20
    assert not segmentation_to_mask([], 12, 10).any()


def test_rle_of_another_image_size_is_an_error():
    rle = mask_to_rle(np.ones((12, 10), bool))
    with pytest.raises(SegmentationError, match="another size") as info:
        segmentation_to_mask(rle, 10, 12)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", ["polygon", 42, {"foo": 1}, [[1, 2, 3, 4, 5, 6], {"size": 1}]])
def test_unrecognised_segmentation_is_an_error(bad):
    with pytest.raises(SegmentationError):
        segmentation_to_mask(bad, 5, 5)


# --- boxes, area, simplification -----------------------------------------


def test_bbox_and_area():
    mask = np.zeros((10, 12), bool)
    mask[3:6, 4:9] = True
    mask[8, 1] = True
    assert mask_bbox(mask) == [1.0, 3.0, 8.0, 6.0]
    assert mask_area(mask) == 16
    assert mask_bbox(np.zeros((3, 3), bool)) == [0.0, 0.0, 0.0, 0.0]
    assert isinstance(mask_area(mask), int)


def test_simplify_polygon_never_drops_below_three_points():
    circle = [v for a in np.linspace(0, 2 * np.pi, 100, endpoint=False)
              for v in (50 + 30 * np.cos(a), 50 + 30 * np.sin(a))]
    for tolerance in (0.5, 5.0, 1000.0):
        out = simplify_polygon(circle, tolerance)
        assert 6 <= len(out) < len(circle)
    triangle = [0.0, 0.0, 10.0, 0.0, 0.0, 10.0]
    assert simplify_polygon(triangle, 100.0) == triangle
    line = [0.0, 0.0, 5.0, 0.0, 9.0, 0.0, 5.0, 0.0]
    assert simplify_polygon(line, 2.0) == line
    assert simplify_polygon(circle, 0.0) == circle


# --- properties -----------------------------------------------------------

_shape = st.tuples(st.integers(1, 40), st.integers(1, 40))
_noise_masks = _shape.flatmap(lambda hw: arrays(np.bool_, hw))


@st.composite
def _drawn_masks(draw):
    """Masks of several drawn parts: blobs, rings (holes), lines and single pixels."""
    height, width = draw(st.integers(5, 60)), draw(st.integers(5, 60))
    mask = np.zeros((height, width), np.uint8)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["ellipse", "ring", "line", "pixel", "rect"]))
        x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        if kind == "ellipse":
            axes = (draw(st.integers(1, 20)), draw(st.integers(1, 20)))
            cv2.ellipse(mask, (x, y), axes, draw(st.integers(0, 179)), 0, 360, 1, -1)
        elif kind == "ring":
            cv2.circle(mask, (x, y), draw(st.integers(3, 20)), 1, draw(st.integers(1, 3)))
        elif kind == "line":
            end = (draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1)))
            cv2.line(mask, (x, y), end, 1, 1)
        elif kind == "pixel":
            mask[y, x] = 1
        else:
            cv2.rectangle(mask, (x, y), (x + draw(st.integers(0, 15)), y + draw(st.integers(0, 15))), 1, -1)
    if draw(st.booleans()):  # punch a hole
        cv2.circle(mask, (draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))),
                   draw(st.integers(1, 6)), 0, -1)
    return mask.astype(bool)


_masks = st.one_of(_noise_masks, _drawn_masks())


@settings(max_examples=100, deadline=None)
@given(mask=_masks)
def test_rle_round_trip_is_exact(mask):
    rle = mask_to_rle(mask)
    assert sum(rle["counts"]) == mask.size
    assert rle["counts"][0] == 0 or not mask.ravel(order="F")[0]
    np.testing.assert_array_equal(rle_to_mask(rle), mask)
    np.testing.assert_array_equal(segmentation_to_mask(rle, *mask.shape), mask)


@settings(max_examples=100, deadline=None)
@given(mask=_masks)
def test_polygons_round_trip_hole_free_masks_exactly(mask):
    solid = fill_holes(mask)
    polygons, back = _round_trip(solid)
    _assert_valid_polygons(polygons)
    np.testing.assert_array_equal(back, solid)


@settings(max_examples=100, deadline=None)
@given(mask=_masks)
def test_polygon_union_is_mask_with_holes_filled(mask):
    polygons, back = _round_trip(mask)
    _assert_valid_polygons(polygons)
    np.testing.assert_array_equal(back, fill_holes(mask))
    assert has_hole(mask, min_area=1) == bool((fill_holes(mask) & ~mask).any())
