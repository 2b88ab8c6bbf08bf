"""Shared fixtures for the engine tests; synthetic data helpers live in synthetic.py.

Keep additions here additive: several engine test files use these fixtures.
"""

from __future__ import annotations

import pytest

from synthetic import SPECIMEN_STRUCTURES, make_specimen, make_template  # noqa: F401 (re-exported)


@pytest.fixture
def mini_model():
    """A fresh, randomly initialised (seed 0) ``sam2pal_mini`` at 128 px on CPU; tests may modify it."""
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    return build_model(MINI_CONFIG, image_size=128, seed=0)


def set_object_score_bias(model, bias: float) -> None:
    """Shift SAM2's object-score head so a random model calls every structure present
    (bias > 0) or absent (bias < 0): random weights sit near 0, i.e. undecided."""
    import torch

    head = model.sam.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.bias += bias


@pytest.fixture
def present_model(mini_model):
    """``mini_model`` whose object-score head says "present" (random masks, but masks)."""
    set_object_score_bias(mini_model, 3.0)
    return mini_model


def record_calls(monkeypatch, owner, name: str) -> list[tuple]:
    """Wrap ``owner.name`` (a module function) so that every call's positional arguments are
    appended to the returned list and the real function still runs."""
    real = getattr(owner, name)
    calls: list[tuple] = []

    def recording(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(owner, name, recording)
    return calls
