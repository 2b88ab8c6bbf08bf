"""Shared fixtures: offscreen Qt, a small randomly initialised SAM2 checkpoint."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mini_checkpoint(tmp_path_factory):
    """A randomly initialised ``sam2pal_mini`` checkpoint file ({"model": state_dict})."""
    import torch

    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    path = tmp_path_factory.mktemp("ckpt") / "sam2pal_mini.pt"
    model = build_model(MINI_CONFIG, seed=0)
    torch.save({"model": model.sam.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def present_checkpoint(tmp_path_factory):
    """The mini model with its object-score head biased to say "present", so every run
    writes masks (a random model otherwise calls most structures absent)."""
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


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread per test: on the shared 2-core CI/dev machines two threads
    under contention made single steps take seconds instead of 0.1 s."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
