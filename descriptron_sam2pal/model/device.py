"""Choosing the torch device and the autocast precision for it."""

from __future__ import annotations

import contextlib

import torch

from descriptron_sam2pal import UserError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA, else Apple MPS, else CPU), ``cuda``/``cuda:N``, ``mps``
    or ``cpu`` -> torch.device; UserError when the requested one is absent."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise UserError(f"unknown device {spec!r}; use one of {', '.join(DEVICE_CHOICES)}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            cuda = torch.version.cuda
            build = "a CPU-only torch build" if cuda is None else f"torch for CUDA {cuda}"
            raise UserError(f"device {spec!r} was requested but no CUDA GPU is usable here ({build}); "
                            "use --device cpu or --device auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {spec!r} was requested but only {torch.cuda.device_count()} "
                            "CUDA GPU(s) exist; use --device cuda")
    elif device.type == "mps":
        if not _mps_available():
            raise UserError(f"device {spec!r} (Apple GPU) was requested but is not available here; "
                            "use --device cpu or --device auto")
    elif device.type != "cpu":
        raise UserError(f"unsupported device {spec!r}; use one of {', '.join(DEVICE_CHOICES)}")
    return device


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX), where
    oneDNN's bf16 matrix products are several times faster than fp32 (benchmarks/README.md);
    elsewhere bf16 is emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: str | torch.device, precision: str = "auto") -> str:
    """``auto`` -> ``bf16`` on CUDA and on CPUs with native bf16, ``fp32`` elsewhere (Apple
    MPS, older CPUs); ``fp32``/``bf16`` as given."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def autocast_context(device: str | torch.device, enabled: bool | None = None):
    """bf16 autocast when ``enabled`` (default: on CUDA only, which is the training
    default: fp32 on the CPU), nothing otherwise."""
    device = torch.device(device)
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def accelerator_available(spec: str = "auto") -> bool:
    """Whether ``spec`` would run on a GPU (CUDA or Apple MPS) here; ``cpu`` never does and a
    requested GPU that is absent does not count. For estimates and presets, not for errors."""
    try:
        return resolve_device(spec).type != "cpu"
    except UserError:
        return False
