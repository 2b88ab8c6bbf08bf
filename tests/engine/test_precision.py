"""bf16 inference on the CPU: same code path, nearly the same masks, its own cache entries."""

import numpy as np
import pytest
import torch

from descriptron_sam2pal.engine.features import model_identity
from descriptron_sam2pal.engine.memory_propagation import propagate
from descriptron_sam2pal.model import device as device_module
from descriptron_sam2pal.model.device import resolve_precision
from tests.helpers.synthetic import make_specimen, make_template


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
    fp32 = model_identity(mini_model)
    mini_model.precision = "bf16"
    bf16 = model_identity(mini_model)
    assert bf16 != fp32
    # "auto" is keyed by what it resolves to on this machine, not by the word.
    mini_model.precision = "auto"
    expected = bf16 if resolve_precision(mini_model.device, "auto") == "bf16" else fp32
    assert model_identity(mini_model) == expected


@pytest.mark.parametrize("native_bf16", [True, False], ids=["cpu-with-bf16", "cpu-without-bf16"])
def test_auto_precision_follows_what_the_cpu_has(mini_model, monkeypatch, native_bf16):
    """Both kinds of CPU, whichever this one is: auto is bf16 only where bf16 is native."""
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native_bf16)
    assert resolve_precision("cpu", "auto") == ("bf16" if native_bf16 else "fp32")
    mini_model.precision = "auto"
    auto = model_identity(mini_model)
    mini_model.precision = "bf16" if native_bf16 else "fp32"
    assert model_identity(mini_model) == auto


@pytest.mark.parametrize("native_bf16", [True, False], ids=["cpu-with-bf16", "cpu-without-bf16"])
def test_training_precision_default_follows_the_device(monkeypatch, native_bf16):
    """TrainConfig.autocast=None trains in bf16 on CUDA and on CPUs with native bf16 only;
    an explicit value wins. Both kinds of CPU are checked, whichever this one is."""
    from descriptron_sam2pal.engine.trainer import TrainConfig

    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native_bf16)
    assert TrainConfig().use_bf16("cpu") is native_bf16
    assert TrainConfig().use_bf16("cuda") is True
    assert TrainConfig(autocast=False).use_bf16("cuda") is False
    assert TrainConfig(autocast=True).use_bf16("cpu") is True
