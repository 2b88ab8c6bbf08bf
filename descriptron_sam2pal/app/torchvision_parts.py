"""The five torchvision pieces SAM2 imports, written in plain torch, for starting Descriptron.

Descriptron's program imports ``sam2.automatic_mask_generator`` and
``sam2.sam2_image_predictor`` at start-up; those import ``torchvision.ops.boxes``
(``batched_nms``, ``box_area``) and ``torchvision.transforms`` (``Normalize``,
``Resize``, ``ToTensor``). install.sh installs no torchvision: on PyPI it is built
against a CUDA torch, and with our CPU torch it does not load (``operator
torchvision::nms does not exist``). :func:`install` registers these pieces under
torchvision's module names in ``sys.modules`` of the process that starts Descriptron
(``app.descriptron_start``), only when no real torchvision can be imported, and never
in the workspace itself.

Each piece computes what torchvision's does for the inputs SAM2 gives it (tensors and
HWC uint8 images): bilinear resizing with antialiasing, per-channel normalisation,
HWC uint8 to CHW float in [0, 1], greedy non-maximum suppression per category.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Normalize", "Resize", "ToTensor", "batched_nms", "box_area", "nms", "install", "needed"]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of ``(N, 4)`` boxes in (x1, y1, x2, y2) form."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` intersection over union of two sets of (x1, y1, x2, y2) boxes."""
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return inter / union.clamp(min=torch.finfo(torch.float32).tiny)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, highest score first:
    a box is dropped when its IoU with a kept, higher-scoring box is above ``iou_threshold``."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True)
    iou = box_iou(boxes[order].float(), boxes[order].float())
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """:func:`nms` within each category ``idxs`` (boxes of different categories never suppress
    each other), as torchvision's: boxes are shifted apart per category, then one NMS."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


class ToTensor:
    """An HWC image (PIL or numpy) to a CHW float tensor; uint8 values are scaled to [0, 1]."""

    def __call__(self, pic) -> torch.Tensor:
        array = np.asarray(pic)
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        if tensor.dtype == torch.uint8:
            return tensor.float().div(255)
        return tensor


class Resize(nn.Module):
    """A CHW (or NCHW) float tensor to ``size`` (height, width), bilinear with antialiasing."""

    def __init__(self, size: List[int]) -> None:
        super().__init__()
        self.size = [int(s) for s in size]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        batched = img.dim() == 4
        x = img if batched else img.unsqueeze(0)
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return x if batched else x.squeeze(0)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel of a CHW (or NCHW) tensor."""

    def __init__(self, mean: List[float], std: List[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean.to(img.dtype)) / self.std.to(img.dtype)


def needed() -> bool:
    """No importable torchvision in this Python."""
    return importlib.util.find_spec("torchvision") is None


def install() -> bool:
    """Register these pieces as ``torchvision``, ``torchvision.ops(.boxes)`` and
    ``torchvision.transforms`` in ``sys.modules`` when no real torchvision is importable.
    Returns whether it did."""
    if not needed():
        return False
    names = {
        "torchvision": {"__version__": "0.0+sam2pal-parts"},
        "torchvision.ops": {"nms": nms, "batched_nms": batched_nms, "box_area": box_area, "box_iou": box_iou},
        "torchvision.ops.boxes": {"nms": nms, "batched_nms": batched_nms, "box_area": box_area,
                                  "box_iou": box_iou},
        "torchvision.transforms": {"Normalize": Normalize, "Resize": Resize, "ToTensor": ToTensor},
    }
    for name, attributes in names.items():
        module = types.ModuleType(name, "torchvision pieces written in plain torch by descriptron-sam2pal "
                                        "(app/torchvision_parts.py) for starting Descriptron")
        module.__dict__.update(attributes)
        sys.modules[name] = module
    sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.ops"].boxes = sys.modules["torchvision.ops.boxes"]
    return True
