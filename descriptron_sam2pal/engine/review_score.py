"""The review score: how likely a predicted mask is good, for sorting the Review worst first.

``score`` (0..1, what the Review sorts by and the predictions carry) is a
linear estimate of the mask's IoU from signals that propagation computes anyway. They were
measured as predictors of a bad mask *within one structure* (the ranking the
reviewer needs: which of the 300 pronota to look at) by
``benchmarks/review_signals.py``; the coefficients below are that script's fit
on the 200 pretraining-split photos of the beetle test-bed (never the 72
evaluation photos), see ``benchmarks/testbed/README.md`` ("Review score").

Signals (per structure on one target, on the model's letterboxed grid):

* ``palindrome``: the palindrome confidence (hard IoU of the template predicted
  back from the target's mask, memory reset); kept as its own field;
* ``palindrome_soft``: the same with the back-prediction's probabilities (soft IoU);
* ``predicted_iou``: SAM2's own IoU estimate; ``object_score``: sigmoid of its
  object-score logit;
* ``stability``: IoU of the mask thresholded at logit +1 and at -1 (SAM's
  stability score: a mask whose border is uncertain changes a lot);
* ``log_area_ratio``: log of the mask's share of the target's real pixels over
  the template's share for the structure (absolute value: too big or too small).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

#: Changes with the coefficients: journals of another version are not reused.
REVIEW_SCORE_VERSION = 1

#: Signals the score may use, in this order.
FEATURES = ("palindrome", "palindrome_soft", "predicted_iou", "object_score", "stability", "abs_log_area_ratio")

# The score is an estimate of the mask's IoU: bias + sum(weight * signal), clipped to [0, 1].
# Fitted (least squares on the IoU) by `python benchmarks/review_signals.py --fit` on the 200
# pretraining-split photos of the beetle test-bed, 3 seeds x 1 template x 70 targets x 5
# structures; checkpoint: the packaged sam2pal_beetle.pt (see benchmarks/testbed/README.md,
# "Review score", for every candidate's within-structure AUROC there and on the 72
# evaluation photos). The palindrome signals did not add to these two within a structure
# (AUROC 0.52 alone on the evaluation photos), so the score does not need the backward half.
COEFFICIENTS = {"bias": -0.267, "stability": 0.636, "predicted_iou": 0.473}

def mask_signals(logits: torch.Tensor, valid: torch.Tensor, template_share: torch.Tensor) -> dict[str, torch.Tensor]:
    """Signals of masks themselves. ``logits`` (n, S, S), ``valid`` (n, S, S) bool,
    ``template_share`` (n,): the structure's share of its template's real pixels."""
    logits = logits.float()
    valid = valid.to(logits.device)
    hi = (logits > 1.0) & valid
    lo = (logits > -1.0) & valid
    inter = hi.flatten(1).sum(1).float()
    union = lo.flatten(1).sum(1).float()
    stability = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))
    area = ((logits > 0) & valid).flatten(1).sum(1).float()
    share = area / valid.flatten(1).sum(1).float().clamp(min=1)
    ratio = torch.log((share + 1e-4) / (template_share.to(share.device).float() + 1e-4)).abs()
    return {"stability": stability, "abs_log_area_ratio": ratio}


def soft_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Soft IoU of ``sigmoid(logits)`` (K,1,S,S) against ``target`` (K,S,S) on real pixels."""
    p = torch.sigmoid(logits[:, 0].float()) * valid.to(logits.device)
    t = (target > 0.5).float() * valid.to(logits.device)
    inter = (p * t).flatten(1).sum(1)
    union = (p + t - p * t).flatten(1).sum(1)
    return torch.where(union > 0, inter / union.clamp(min=1e-6), torch.ones_like(union))


def combine(signals: Mapping[str, float | None]) -> float:
    """The review score (0..1) of one structure from its signals (missing ones count 0)."""
    z = COEFFICIENTS["bias"]
    for name, w in COEFFICIENTS.items():
        if name == "bias":
            continue
        value = signals.get(name)
        if value is not None and math.isfinite(float(value)):
            z += w * float(value)
    return min(1.0, max(0.0, z))
