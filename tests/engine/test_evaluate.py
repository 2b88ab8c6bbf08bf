"""Evaluation: known masks give known IoUs; colour/indexed PNG parsing; COCO truth;
absent/unknown handling and counts; matching by normalised stem at the truth's size."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.evaluate import AnnotatedImage, evaluate
from descriptron_sam2pal.imaging.mask_png import mask_from_binary_png, masks_from_color_png, parse_colors
from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.imaging.masks import mask_to_polygons


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def result(path, h, w, masks):
    return TargetResult(
        None,
        str(path),
        h,
        w,
        {
            n: StructureResult(
                n, m is not None, m, 0.5 if m is not None else None, 0.9 if m is not None else 0.1, 0.5
            )
            for n, m in masks.items()
        },
    )


def test_parse_colors():
    assert parse_colors("head=200,0,0; pronotum = 0,200,0;eye=7") == {
        "head": (200, 0, 0), "pronotum": (0, 200, 0), "eye": (7,)}
    for bad in ["head", "head=1,2", "head=300,0,0", "head=a,b,c", "head=1,2,3;eye=1,2,3", "a=1;a=2", ""]:
        with pytest.raises(UserError):
            parse_colors(bad)


def test_colour_indexed_and_binary_pngs(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[1:3, 1:4] = (200, 0, 0)
    rgb[4:6, 5:8] = (0, 200, 0)
    rgb[0, 7] = (199, 0, 0)  # a near colour is not the colour
    Image.fromarray(rgb).save(tmp_path / "c.png")
    masks = masks_from_color_png(tmp_path / "c.png", "head=200,0,0;pronotum=0,200,0;eye=0,0,255")
    assert np.array_equal(masks["head"], box(6, 8, 1, 3, 1, 4))
    assert np.array_equal(masks["pronotum"], box(6, 8, 4, 6, 5, 8))
    assert not masks["eye"].any()

    index = np.zeros((6, 8), np.uint8)
    index[2:5, 2:6] = 3
    pal = Image.fromarray(index, mode="P")
    pal.putpalette([0, 0, 0] * 3 + [10, 20, 30] + [0, 0, 0] * 252)
    pal.save(tmp_path / "p.png")
    by_index = masks_from_color_png(tmp_path / "p.png", {"head": (3,)})
    by_colour = masks_from_color_png(tmp_path / "p.png", {"head": (10, 20, 30)})
    assert np.array_equal(by_index["head"], box(6, 8, 2, 5, 2, 6))
    assert np.array_equal(by_colour["head"], by_index["head"])

    for values in ((0, 255), (0, 1)):
        Image.fromarray((box(6, 8, 0, 2, 0, 8) * values[1]).astype(np.uint8)).save(tmp_path / "b.png")
        assert np.array_equal(mask_from_binary_png(tmp_path / "b.png"), box(6, 8, 0, 2, 0, 8))


def test_known_masks_give_known_ious_and_absent_handling():
    h, w = 10, 10
    truth = {
        "a": AnnotatedImage(h, w, {"head": box(h, w, 0, 10, 0, 5), "eye": box(h, w, 0, 2, 0, 2)},
                            status={"scape": "absent", "leg": "unknown"}),
        "b": AnnotatedImage(h, w, {"head": box(h, w, 0, 10, 0, 10)}, status={"eye": "absent"}),
        "only_truth": AnnotatedImage(h, w, {"head": box(h, w, 0, 1, 0, 1)}),
    }
    pred = {
        # head: 50 of 100 px overlap with truth's 50 -> IoU 50/100... pred 0..10 x 0..10 (100 px)
        "a": AnnotatedImage(h, w, {"head": box(h, w, 0, 10, 0, 10), "eye": None, "scape": None,
                                   "leg": box(h, w, 0, 3, 0, 3)}),
        # head exact; eye predicted present on a truth-absent eye -> IoU 0 (false present)
        "b": AnnotatedImage(h, w, {"head": box(h, w, 0, 10, 0, 10), "eye": box(h, w, 0, 1, 0, 1),
                                   "scape": None, "leg": None}),
        "only_pred": AnnotatedImage(h, w, {"head": None}),
    }
    rep = evaluate(pred, truth)
    assert rep.matched == ["a", "b"] and rep.unmatched_truth == ["only_truth"]
    assert rep.unmatched_predictions == ["only_pred"]
    head, eye, scape, leg = (rep.structures[n] for n in ("head", "eye", "scape", "leg"))
    assert head.ious == {"a": 0.5, "b": 1.0} and head.mean_iou == 0.75
    assert eye.ious == {"a": 0.0, "b": 0.0} and (eye.missed, eye.false_present) == (1, 1)
    assert scape.ious == {} and scape.true_absent == 1 and scape.not_scored == 1  # b: not annotated
    assert leg.ious == {} and leg.not_scored == 2  # unknown on a, not annotated on b
    assert rep.mean_iou == pytest.approx((0.75 + 0.0) / 2)
    assert "head" in rep.format() and rep.to_dict()["structures"]["eye"]["missed"] == 1


def test_evaluate_results_against_coco_truth_and_colour_pngs_at_truth_resolution(tmp_path):
    H, W = 40, 60
    head = box(H, W, 10, 30, 10, 40)
    eye = box(H, W, 5, 9, 45, 52)
    cats = [{"id": 1, "name": "head", "supercategory": ""}, {"id": 2, "name": "eye", "supercategory": ""}]
    anns = [{"id": i + 1, "image_id": "imgs/Spec 1", "category_id": c, "segmentation": mask_to_polygons(m),
             "area": int(m.sum()), "bbox": [0, 0, 1, 1], "iscrowd": 0}
            for i, (c, m) in enumerate([(1, head), (2, eye)])]
    coco = {"images": [{"id": "imgs/Spec 1", "file_name": "Spec 1.JPG", "height": H, "width": W}],
            "annotations": anns, "categories": cats}
    (tmp_path / "truth.json").write_text(json.dumps(coco))

    # Predicted at half resolution (e.g. a downscaled copy): compared at the truth's 40x60.
    small_head = head[::2, ::2]
    pred = [result(tmp_path / "out" / "spec_1.png", H // 2, W // 2, {"head": small_head, "eye": None})]
    rep = evaluate(pred, tmp_path / "truth.json")
    assert rep.matched == ["spec_1"]
    assert rep.structures["head"].ious["spec_1"] == pytest.approx(1.0)
    assert rep.structures["eye"].ious["spec_1"] == 0.0 and rep.structures["eye"].missed == 1

    colour = np.zeros((H, W, 3), np.uint8)
    colour[head] = (200, 0, 0)
    colour[eye] = (0, 0, 255)
    Image.fromarray(colour).save(tmp_path / "Spec 1_mask.png")
    rep = evaluate(pred, tmp_path / "Spec 1_mask.png", colors="head=200,0,0;eye=0,0,255")
    assert rep.structures["head"].mean_iou == pytest.approx(1.0) and rep.structures["eye"].missed == 1
    # On an exhaustive colour PNG, a structure not drawn is absent: predicted absent is right.
    colour[eye] = 0
    Image.fromarray(colour).save(tmp_path / "Spec 1_mask.png")
    rep = evaluate(pred, tmp_path / "Spec 1_mask.png", colors="head=200,0,0;eye=0,0,255")
    assert rep.structures["eye"].true_absent == 1 and rep.structures["eye"].ious == {}
    with pytest.raises(UserError):
        evaluate(pred, tmp_path / "Spec 1_mask.png")


def test_colours_that_match_no_truth_pixel_are_an_error_not_iou_zero(tmp_path):
    from descriptron_sam2pal import UserError

    truth = np.zeros((20, 30, 3), np.uint8)
    truth[2:8, 2:8] = (200, 0, 0)
    Image.fromarray(truth).save(tmp_path / "a_mask.png")
    with pytest.raises(UserError, match="none of the colours head=0,0,200"):
        evaluate({}, tmp_path, colors="head=0,0,200")
