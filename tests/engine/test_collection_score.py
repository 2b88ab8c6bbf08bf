"""The collection signal of the review score: a mask unlike the run's others is looked at first."""

from __future__ import annotations

import random

import numpy as np
import pytest

import descriptron_sam2pal.engine.collection_score as collection
from descriptron_sam2pal.engine.collection_score import (MIN_MASKS, THUMBNAIL, consensus, mask_thumbnail,
                                                         rescore_collection)
from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.engine.review_score import FITS, combine


def square(h: int, w: int, top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[top:top + side, left:left + side] = True
    return m


def thumb(mask: np.ndarray) -> np.ndarray:
    return (
        np.unpackbits(mask_thumbnail(mask))[: THUMBNAIL * THUMBNAIL]
        .reshape(THUMBNAIL, THUMBNAIL)
        .astype(bool)
    )


def test_thumbnail_is_the_centred_letterbox_of_the_mask():
    # A 100 x 200 photo letterboxes into rows 16..47 of a 64 square; all of it is the mask.
    small = thumb(np.ones((100, 200), bool))
    assert small[16:48].all() and not small[:16].any() and not small[48:].any()
    # A big photo is thinned first and still lands in the same place.
    big = thumb(np.ones((3000, 6000), bool))
    assert np.array_equal(big, small)
    # The right half of a square photo is the right half of the thumbnail.
    half = thumb(np.pad(np.ones((400, 200), bool), ((0, 0), (200, 0))))
    assert half[:, 32:].all() and not half[:, :32].any()


def test_consensus_is_each_masks_mean_iou_with_the_others_never_itself():
    a = mask_thumbnail(square(64, 64, 10, 10, 20))
    b = mask_thumbnail(square(64, 64, 40, 40, 20))
    assert consensus([a, a, b]) == pytest.approx([0.5, 0.5, 0.0])
    assert consensus([a]).tolist() == [0.0]


def test_consensus_of_a_large_run_compares_with_a_sample_chosen_by_content(monkeypatch):
    rng = random.Random(0)
    thumbs = [
        mask_thumbnail(square(64, 64, rng.randrange(0, 40), rng.randrange(0, 40), 20)) for _ in range(30)
    ]
    full = consensus(thumbs)
    monkeypatch.setattr(collection, "MAX_OTHERS", 12)
    sampled = consensus(thumbs)
    assert not np.allclose(sampled, full) and np.corrcoef(sampled, full)[0, 1] > 0.5  # an estimate of it
    order = list(range(30))
    rng.shuffle(order)
    shuffled = consensus([thumbs[i] for i in order])
    assert np.allclose(shuffled, sampled[order])  # the same sample whatever the order of the targets


def results_for(masks: list[np.ndarray], fit: str | None = "class_agnostic") -> list[TargetResult]:
    out = []
    for i, m in enumerate(masks):
        signals = {"stability": 0.8, "predicted_iou": 0.7}
        s = StructureResult("pronotum", True, m, combine(signals, fit or "class_agnostic"), 0.9, 0.7,
                            stability=0.8)
        absent = StructureResult("eye", False, None, None, 0.1, 0.2)
        out.append(TargetResult(i, f"s{i}.png", *m.shape, {"pronotum": s, "eye": absent}, review_fit=fit))
    return out


def collection_with_an_outlier(n: int) -> list[np.ndarray]:
    rng = random.Random(1)
    masks = [square(80, 100, 30 + rng.randrange(-2, 3), 40 + rng.randrange(-2, 3), 20) for _ in range(n - 1)]
    masks.insert(n // 2, square(80, 100, 2, 2, 20))  # a pronotum mask in the wrong place
    return masks


def test_the_mask_unlike_the_others_gets_the_lowest_score():
    results = results_for(collection_with_an_outlier(10))
    one_pass = results[0].structures["pronotum"].score
    new = rescore_collection(results)
    assert set(new) == {(i, "pronotum") for i in range(10)}  # absent structures are not scored
    scores = [r.structures["pronotum"].score for r in results]
    assert int(np.argmin(scores)) == 5 and scores[5] < min(scores[:5] + scores[6:]) - 0.2
    assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 1
    assert one_pass == pytest.approx(combine({"stability": 0.8, "predicted_iou": 0.7}))  # the stream's score
    assert results[0].structures["eye"].score is None


def test_small_runs_other_fits_and_results_of_unknown_origin_keep_their_one_pass_score():
    for masks, fit in [(collection_with_an_outlier(MIN_MASKS - 1), "class_agnostic"),
                       (collection_with_an_outlier(12), "beetle_parts"),
                       (collection_with_an_outlier(12), None)]:
        results = results_for(masks, fit)
        before = [r.structures["pronotum"].score for r in results]
        assert rescore_collection(results) == {}
        assert [r.structures["pronotum"].score for r in results] == before
    assert FITS["beetle_parts"].collection is None
