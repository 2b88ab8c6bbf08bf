"""bf16 inference on the CPU: same code path, nearly the same masks, its own cache entries."""

import numpy as np
import torch

from descriptron_sam2pal.engine.features import model_identity
from descriptron_sam2pal.engine.propagate import propagate

from synthetic import make_specimen, make_template


def test_bf16_inference_runs_and_agrees_with_fp32(present_model):
    targets = [make_specimen(5, size=(90, 120))[0], make_specimen(6, size=(120, 90))[0]]
    templates = [make_template("t", seed=0)]
    present_model.precision = "fp32"
    fp32 = propagate(present_model, templates, targets, confidence=True)
    present_model.precision = "bf16"
    with torch.no_grad():
        bf16 = propagate(present_model, templates, targets, confidence=True)
    for a, b in zip(fp32, bf16):
        for name, sa in a.structures.items():
            sb = b.structures[name]
            assert sa.present == sb.present
            if sa.present:
                inter = np.logical_and(sa.mask, sb.mask).sum()
                union = np.logical_or(sa.mask, sb.mask).sum()
                assert inter / max(union, 1) > 0.9
                assert abs(sa.object_score - sb.object_score) < 0.05


def test_precision_is_part_of_the_feature_cache_key(mini_model):
    mini_model.precision = "fp32"
    before = model_identity(mini_model)
    mini_model.precision = "bf16"
    assert model_identity(mini_model) != before
    # "auto" is keyed by what it resolves to on this machine, not by the word.
    resolved = model_identity(mini_model) if mini_model.resolved_precision == "bf16" else before
    mini_model.precision = "auto"
    assert model_identity(mini_model) == resolved


def test_training_precision_default_follows_the_device():
    """TrainConfig.autocast=None trains in bf16 on CUDA and on CPUs with native bf16 only;
    an explicit value wins. (What ``auto`` resolves to depends on this machine's CPU.)"""
    from descriptron_sam2pal.engine.trainer import TrainConfig
    from descriptron_sam2pal.model.device import cpu_has_native_bf16

    assert TrainConfig().use_bf16("cpu") == cpu_has_native_bf16()
    assert TrainConfig().use_bf16("cuda") is True
    assert TrainConfig(autocast=False).use_bf16("cuda") is False
    assert TrainConfig(autocast=True).use_bf16("cpu") is True
