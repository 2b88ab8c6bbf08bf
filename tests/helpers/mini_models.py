"""Nudges for the small random-weight SAM2 models the tests build."""

from __future__ import annotations


def set_object_score_bias(model, bias: float) -> None:
    """Shift SAM2's object-score head so a random model calls every structure present
    (bias > 0) or absent (bias < 0): random weights sit near 0, i.e. undecided."""
    import torch

    head = model.sam.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.bias += bias
