"""Orientation search: exact transforms and back-mapping; the kept orientation is the
argmax of the palindrome confidences; each orientation costs one encoder pass."""

from __future__ import annotations

import numpy as np
import pytest

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.orientation import (
    ORIENTATIONS,
    choose_orientation,
    orient,
    orientation_score,
    oriented_size,
    unorient,
)
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, iter_propagate, propagate
from descriptron_sam2pal.engine.results import StructureResult
from tests.helpers.synthetic import make_specimen, make_template


def test_transforms_are_the_8_distinct_flips_and_quarter_turns_and_invert_exactly():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    seen = set()
    for name in ORIENTATIONS:
        out = orient(image, name)
        assert out.shape[:2] == oriented_size(5, 7, name) and out.flags["C_CONTIGUOUS"]
        seen.add(out.tobytes() + bytes(out.shape[:2]))
        assert np.array_equal(unorient(out.transpose(2, 0, 1), name).transpose(1, 2, 0), image)
        masks = rng.random((2, *out.shape[:2])) > 0.5  # stacked masks predicted on the oriented image
        back = unorient(masks, name)
        assert back.shape == (2, 5, 7)
        assert np.array_equal(orient(back.transpose(1, 2, 0), name).transpose(2, 0, 1), masks)
    assert len(seen) == 8
    # Meaning of the names: clockwise turns, mirror (left-right) first.
    assert np.array_equal(orient(image, "rot0"), image)
    assert np.array_equal(orient(image, "rot90"), np.rot90(image, -1))
    assert orient(image, "rot90")[0, -1].tolist() == image[0, 0].tolist()  # top-left goes to top-right
    assert np.array_equal(orient(image, "rot180"), image[::-1, ::-1])
    assert np.array_equal(orient(image, "flip_rot0"), image[:, ::-1])
    assert np.array_equal(orient(image, "flip_rot90"), np.rot90(image[:, ::-1], -1))
    with pytest.raises(ValueError):
        orient(image, "rot45")


def test_choose_orientation_is_the_argmax_with_upright_winning_ties():
    assert choose_orientation({"rot0": 0.2, "rot90": 0.7, "flip_rot180": 0.5}) == "rot90"
    assert choose_orientation({"flip_rot0": 0.5, "rot270": 0.5, "rot0": 0.5}) == "rot0"
    assert choose_orientation({"flip_rot90": 0.1, "rot180": 0.1}) == "rot180"
    absent = StructureResult("eye", False, None, None, 0.2, 0.5)
    present = StructureResult("head", True, np.ones((2, 2), bool), 0.8, 0.9, 0.5)
    assert orientation_score({"head": present, "eye": absent}) == pytest.approx(0.4)


def test_search_keeps_the_best_orientation_and_maps_masks_back_exactly(present_model):
    template = make_template("t0", seed=0)
    memory = TemplateMemory(present_model, [template])
    upright, _ = make_specimen(5, size=(96, 128))
    sideways = orient(upright, "rot270")  # the template's layout turned a quarter
    encoder = FeatureEncoder(present_model)
    memory.encoder = encoder
    [searched] = propagate(present_model, memory, [sideways], orientation_search=True, batch_size=8)
    assert encoder.encoder_passes == 8  # one per orientation, none for the template (cached)
    assert searched.orientation in ORIENTATIONS
    assert (searched.height, searched.width) == sideways.shape[:2]

    # Each orientation on its own: the kept one has the best mean confidence. (Target by target:
    # the eight as one run's collection would redo their review scores against each other.)
    per = list(
        iter_propagate(present_model, memory, [orient(sideways, o) for o in ORIENTATIONS], batch_size=8)
    )
    scores = {o: orientation_score(r.structures) for o, r in zip(ORIENTATIONS, per)}
    assert len(set(round(v, 6) for v in scores.values())) > 1  # the choice is not a tie
    assert searched.orientation == choose_orientation(scores)
    best = per[ORIENTATIONS.index(searched.orientation)]
    for name, s in searched.structures.items():
        b = best.structures[name]
        assert s.score == pytest.approx(b.score, abs=1e-5)
        assert s.palindrome_confidence == pytest.approx(b.palindrome_confidence, abs=1e-5)
        # Masks found on the oriented image, mapped back to the target's own grid exactly.
        assert s.mask.shape == sideways.shape[:2]
        assert np.count_nonzero(s.mask != unorient(b.mask, searched.orientation)) <= 2


def test_search_needs_pixels_and_confidence(present_model):
    template = make_template("t0", seed=0)
    image, _ = make_specimen(5)
    with pytest.raises(UserError):
        propagate(present_model, [template], [image], orientation_search=True, confidence=False)
    [r] = propagate(present_model, [template], [prepare_image(image, 128)], orientation_search=True)
    assert not r.ok and "orientation" in r.error
