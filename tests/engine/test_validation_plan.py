"""Which validation a run uses (engine.validation_plan): decided from the templates alone."""

import pytest

from descriptron_sam2pal.engine.validation_plan import LOO_IOU, POOL_SCORE, plan_validation


def test_several_templates_validate_on_held_out_photos_too():
    """Issue 25: leave-one-template-out rose while the collection got worse (its templates are
    trained on), so the held-out review score is the default whatever the number of templates."""
    plan = plan_validation([{"head", "eye"}, {"head"}], 20, seed=3)
    assert plan.metric == POOL_SCORE and len(plan.held_out) == 4 and not plan.on_training_images
    assert plan.held_out == plan_validation([{"head"}], 20, seed=3).held_out  # same seeded choice
    assert plan_validation([{"head"}, {"head"}], 20, metric=POOL_SCORE).metric == POOL_SCORE


def test_each_template_from_the_others_when_asked_for():
    plan = plan_validation([{"head", "eye"}, {"head"}], 20, metric=LOO_IOU)
    assert plan.metric == LOO_IOU and plan.held_out == frozenset() and plan.higher_is_better


def test_one_template_validates_on_held_out_unlabeled_photos():
    plan = plan_validation([{"head"}], 20)
    assert plan.metric == POOL_SCORE and len(plan.held_out) == 4 and all(0 <= i < 20 for i in plan.held_out)
    assert len(plan_validation([{"head"}], 6).held_out) == 1  # never more than a fifth
    few = plan_validation([{"head"}], 1)
    assert few.on_training_images and few.held_out == frozenset() and few.notes


def test_templates_sharing_nothing_say_why_they_are_not_compared():
    plan = plan_validation([{"head"}, {"eye"}], 20, metric=LOO_IOU)
    assert plan.metric == POOL_SCORE and "fewer than two templates share a structure" in plan.notes[0]
    assert plan_validation([{"head"}, {"eye"}], 20).notes == ()  # nothing asked, nothing to say


def test_no_validation_and_an_unknown_metric():
    assert plan_validation([{"head"}, {"head"}], 20, validate_every=0).metric is None
    with pytest.raises(ValueError, match="use 'loo_iou' or 'pool_score'"):
        plan_validation([{"head"}], 20, metric="val_loss")
