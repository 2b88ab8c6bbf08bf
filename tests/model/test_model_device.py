"""Device choice and autocast precision."""

import pytest
import torch

from descriptron_sam2pal import UserError
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model
from descriptron_sam2pal.model.device import autocast_context, resolve_device
from descriptron_sam2pal.model.lora import apply_lora

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_explicit_and_auto_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device(" AUTO ").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_gpu_is_a_clear_error():
    with pytest.raises(UserError, match="no CUDA GPU is usable here.*use --device cpu or --device auto"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="no CUDA GPU"):
        build_model(MINI_CONFIG, device="cuda")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
def test_mps_requested_without_apple_gpu():
    with pytest.raises(UserError, match="not available here"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["tpu", "meta", "gpu"])
def test_unknown_devices(spec):
    with pytest.raises(UserError, match="device"):
        resolve_device(spec)


def test_autocast_is_off_on_cpu_unless_asked():
    a = torch.ones(4, 4)
    with autocast_context("cpu"):
        assert (a @ a).dtype == torch.float32
    with autocast_context("cpu", enabled=True):
        assert (a @ a).dtype == torch.bfloat16


@cuda
def test_cuda_model_with_lora_trains_under_bf16_autocast(mini_checkpoint):
    model = build_model(MINI_CONFIG, mini_checkpoint, device="cuda", image_size=128)
    assert model.device.type == "cuda" and next(model.sam.parameters()).is_cuda
    sam = apply_lora(model.sam, rank=4)
    assert all(p.is_cuda for p in sam.parameters())
    with autocast_context(model.device):
        assert (torch.ones(4, 4, device="cuda") @ torch.ones(4, 4, device="cuda")).dtype == torch.bfloat16
        out = sam.forward_image(torch.rand(1, 3, 128, 128, device="cuda"))
        _, feats, pos, sizes = sam._prepare_backbone_features(out)
        mem = sam.memory_attention(
            curr=feats[-1:],
            curr_pos=pos[-1:],
            memory=torch.rand(64, 1, 32, device="cuda"),
            memory_pos=torch.rand(64, 1, 32, device="cuda"),
        )
    mem.float().sum().backward()
    grads = [p.grad for n, p in sam.named_parameters() if "memory_attention" in n and "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_auto_precision_follows_the_hardware(monkeypatch):
    from descriptron_sam2pal.model import device as device_module
    from descriptron_sam2pal.model.device import resolve_precision

    assert resolve_precision("cpu", "fp32") == "fp32"
    assert resolve_precision("cpu", "bf16") == "bf16"
    assert resolve_precision("cuda", "auto") == "bf16"
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("cpu", "auto") == "bf16"
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("cpu", "auto") == "fp32"
    assert resolve_precision("mps", "auto") == "fp32"
    with pytest.raises(UserError, match="unknown precision 'fp16'"):
        resolve_precision("cpu", "fp16")


def test_model_autocast_uses_the_resolved_precision(monkeypatch):
    from descriptron_sam2pal.model import device as device_module

    model = build_model(MINI_CONFIG, image_size=64, seed=0)
    a = torch.ones(4, 4)
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda native=native: native)
        model.precision = "auto"
        with model.autocast():
            assert (a @ a).dtype == expected
    model.precision = "fp32"
    with model.autocast():
        assert (a @ a).dtype == torch.float32
