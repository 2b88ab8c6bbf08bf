"""The three torchvision.transforms classes sam2.utils.transforms uses (see __init__)."""

from __future__ import annotations

import os
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_COUNT_FILE = os.environ.get("SAM2PAL_BENCH_SHIM_COUNT")


def _count(name: str) -> None:
    # Record each use of the shim in the compute path (the benchmark reports it).
    if _COUNT_FILE:
        with open(_COUNT_FILE, "a") as fh:
            fh.write(name + "\n")


class ToTensor:
    """PIL image / HWC ndarray -> CHW float32 tensor; uint8 scaled to [0, 1]."""

    def __call__(self, pic) -> Tensor:
        _count("ToTensor")
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if t.dtype == torch.uint8:
            return t.float().div(255.0)
        return t.float()


class Resize(nn.Module):
    """Resize the last two dims to ``size`` (bilinear, antialiased, as torchvision on tensors)."""

    def __init__(self, size: List[int]) -> None:
        super().__init__()
        self.size = [int(s) for s in size]

    def forward(self, x: Tensor) -> Tensor:
        squeeze = x.dim() == 3
        if squeeze:
            x = x.unsqueeze(0)
        y = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if squeeze:
            y = y.squeeze(0)
        return y


class Normalize(nn.Module):
    def __init__(self, mean: List[float], std: List[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std
