"""Fixtures for the engine tests: small random-weight models. Synthetic specimens and other
helpers are in ``tests/helpers/`` (``synthetic``, ``mini_models``, ``recording``)."""

from __future__ import annotations

import pytest

from tests.helpers.mini_models import set_object_score_bias


@pytest.fixture
def mini_model():
    """A fresh, randomly initialised (seed 0) ``sam2pal_mini`` at 128 px on CPU; tests may modify it."""
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    return build_model(MINI_CONFIG, image_size=128, seed=0)


@pytest.fixture
def present_model(mini_model):
    """``mini_model`` whose object-score head says "present" (random masks, but masks)."""
    set_object_score_bias(mini_model, 3.0)
    return mini_model
