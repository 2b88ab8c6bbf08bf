"""The review score: signals of a mask, their combination, and what propagation reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, propagate
from descriptron_sam2pal.engine.review_score import FITS, combine, linear, mask_signals, soft_iou
from tests.helpers.synthetic import make_specimen, make_template


def test_stability_is_one_for_a_crisp_mask_and_lower_for_an_uncertain_border():
    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    crisp = torch.full((32, 32), -20.0)
    crisp[8:24, 8:24] = 20.0
    # A soft ramp: logits fall off slowly, so thresholds at +-1 give very different masks.
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    ramp = 8.0 - ((yy - 16) ** 2 + (xx - 16) ** 2).sqrt() / 1.5
    sig = mask_signals(torch.stack([crisp, ramp]), valid, torch.tensor([0.25, 0.25]))
    assert sig["stability"][0] == pytest.approx(1.0)
    assert 0.0 < float(sig["stability"][1]) < 0.9
    # The crisp mask covers exactly the template's share: no area disagreement.
    assert float(sig["abs_log_area_ratio"][0]) == pytest.approx(0.0, abs=1e-3)


def test_soft_iou_matches_hard_iou_for_saturated_logits():
    target = torch.zeros(1, 16, 16)
    target[0, 4:12, 4:12] = 1
    logits = torch.where(target > 0, 30.0, -30.0)[:, None]
    valid = torch.ones(1, 16, 16, dtype=torch.bool)
    assert float(soft_iou(logits, target, valid)[0]) == pytest.approx(1.0, abs=1e-4)
    assert float(soft_iou(-logits, target, valid)[0]) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("fit", sorted(FITS))
def test_combine_is_a_clipped_estimate_that_rises_with_its_signals(fit):
    base = {"stability": 0.5, "predicted_iou": 0.5, "palindrome": 0.3}
    s = combine(base, fit)
    assert 0.0 <= s <= 1.0
    weights = FITS[fit].one_pass
    for name, w in weights.items():
        if name == "bias":
            continue
        higher = combine({**base, name: base[name] + 0.2}, fit)
        assert (higher > s) == (w > 0) or w == 0
    assert combine({"stability": 50.0, "predicted_iou": 50.0}, fit) == 1.0
    assert combine({"stability": -50.0, "predicted_iou": -50.0}, fit) == 0.0
    assert combine({"stability": None, "predicted_iou": float("nan")}, fit) == pytest.approx(
        min(1.0, max(0.0, weights["bias"])))
    if FITS[fit].collection is not None:  # agreeing with the collection raises the estimate
        both = {"stability": 0.5, "predicted_iou": 0.5}
        assert linear(FITS[fit].collection, {**both, "consensus": 0.8}) > \
            linear(FITS[fit].collection, {**both, "consensus": 0.2})


def test_the_packaged_demo_model_keeps_its_own_fit_and_any_other_model_gets_the_class_agnostic_one():
    import hashlib

    from descriptron_sam2pal.engine.review_score import DEFAULT_FIT, fit_for
    from descriptron_sam2pal.jobs.models import beetle_checkpoint_path

    packaged = hashlib.sha256(beetle_checkpoint_path().read_bytes()).hexdigest()
    assert fit_for(packaged) == "beetle_parts"  # the table follows the packaged file
    assert FITS["beetle_parts"].collection is None  # its collection signal measured at chance
    assert fit_for(None) == fit_for("0" * 64) == DEFAULT_FIT == "class_agnostic"


def test_propagation_reports_the_review_score_and_the_palindrome_confidence_apart(present_model, tmp_path):
    image, _ = make_specimen(11, size=(96, 128))
    path = tmp_path / "t.png"
    Image.fromarray(image).save(path)
    memory = TemplateMemory(present_model, [make_template("t0", seed=0)])
    [with_pal] = propagate(present_model, memory, [path])
    [without] = propagate(present_model, memory, [path], confidence=False)
    for name, s in with_pal.structures.items():
        if not s.present:
            assert s.score is None and s.palindrome_confidence is None
            continue
        assert 0.0 <= s.score <= 1.0 and 0.0 <= s.palindrome_confidence <= 1.0
        other = without.structures[name]
        # The review score does not need the backward half: the same without it.
        assert other.palindrome_confidence is None
        assert other.score == pytest.approx(s.score, abs=1e-5)
        assert math.isfinite(s.score)
    # The journal form keeps both fields.
    from descriptron_sam2pal.engine.results import TargetResult
    back = TargetResult.from_json(with_pal.to_json())
    assert back.review_fit == with_pal.review_fit == "class_agnostic"  # a random model: not the demo
    for name, s in with_pal.structures.items():
        assert back.structures[name].palindrome_confidence == s.palindrome_confidence
        assert back.structures[name].score == s.score
        assert back.structures[name].stability == s.stability
        assert (s.stability is not None) == s.present
    assert np.array_equal(back.structures[next(iter(back.structures))].mask is None,
                          with_pal.structures[next(iter(with_pal.structures))].mask is None)
