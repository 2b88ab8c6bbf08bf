"""Fixtures for the tests against Descriptron's own code."""

import pytest


@pytest.fixture(scope="session")
def present_checkpoint(tmp_path_factory):
    """The mini model whose object-score head says "present", so every run writes masks."""
    import torch

    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    model = build_model(MINI_CONFIG, seed=0)
    head = model.sam.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.bias += 3.0
    path = tmp_path_factory.mktemp("ckpt") / "present.pt"
    torch.save({"model": model.sam.state_dict()}, path)
    return path
