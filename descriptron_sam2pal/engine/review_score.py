"""The review score: how likely a predicted mask is good, for sorting the Review worst first.

``score`` (0..1, what the Review sorts by and the predictions carry) is a
linear estimate of the mask's IoU. Its signals were measured as predictors of a bad
mask *within one structure* (the ranking the reviewer needs: which of the 300 pronota
to look at) by ``benchmarks/review_signals.py``; every fit below is that script's, on
the 200 pretraining-split photos of the beetle test-bed (never the 72 evaluation
photos), see ``benchmarks/testbed/README.md`` ("Review score").

Signals (per structure on one target, on the model's letterboxed grid):

* ``palindrome``: the palindrome confidence (hard IoU of the template predicted
  back from the target's mask, memory reset); kept as its own field;
* ``palindrome_soft``: the same with the back-prediction's probabilities (soft IoU);
* ``predicted_iou``: SAM2's own IoU estimate; ``object_score``: sigmoid of its
  object-score logit;
* ``stability``: IoU of the mask thresholded at logit +1 and at -1 (SAM's
  stability score: a mask whose border is uncertain changes a lot);
* ``log_area_ratio``: log of the mask's share of the target's real pixels over
  the template's share for the structure (absolute value: too big or too small);
* ``consensus``: the mean IoU of the mask with the run's other masks of the structure
  (``engine.collection_score``; known only when the run has its masks).

Two regimes were measured, and they disagree about the collection signal, so the fit
is chosen by the model (:func:`fit_for`):

* ``class_agnostic`` (every model but the packaged beetle demo; fit on the test-bed
  pretrained on unlabelled pseudo-structures, which, like SAM2, knows no beetle part):
  its bad masks are gross (a pronotum on the elytra), and "unlike the rest of the
  collection" finds them: within-structure AUROC 0.76 with the collection signal
  against 0.65 without, on the evaluation photos. The score of a target is first its
  one-pass estimate; at the end of the run, structures with enough masks get the
  collection estimate.
* ``beetle_parts`` (the packaged demo, trained on these part labels): its bad masks are
  in the right place with the wrong extent, the collection signal is at chance (0.49),
  and the fit gives it no weight; its score stays the one-pass estimate (0.67).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import torch

#: Changes with the fits: journals of another version are not reused.
REVIEW_SCORE_VERSION = 2


@dataclass(frozen=True)
class ReviewFit:
    """An IoU estimate: ``bias + sum(weight * signal)``, clipped to [0, 1]. ``one_pass``: from
    the target alone; ``collection``: with ``consensus`` too (None: the collection signal
    does not help this model, the one-pass estimate stays)."""

    one_pass: Mapping[str, float]
    collection: Mapping[str, float] | None = None


#: Fitted (least squares on the IoU) by ``python benchmarks/review_signals.py --fit``, 3
#: seeds x 1 template x 70 targets x 5 structures of the pretraining split; within-structure
#: AUROC of each on the 72 evaluation photos in benchmarks/testbed/README.md.
FITS = {
    # Checkpoint benchmarks/testbed/pseudo.py (class-agnostic pseudo-structures).
    "class_agnostic": ReviewFit(
        one_pass={"bias": -0.090, "stability": 0.411, "predicted_iou": 0.603},
        collection={"bias": -0.094, "stability": 0.338, "predicted_iou": 0.268, "consensus": 0.760}),
    # The packaged sam2pal_beetle.pt (trained on the beetle part labels). The palindrome
    # signals did not add to these two within a structure (AUROC 0.52 alone).
    "beetle_parts": ReviewFit(one_pass={"bias": -0.267, "stability": 0.636, "predicted_iou": 0.473}),
}
DEFAULT_FIT = "class_agnostic"

#: Models with their own fit, by the sha256 of their checkpoint file: the packaged demo
#: (benchmarks/testbed/demo.py; since session 12 also trained on zoom-in crops, since session 14
#: on small-structure crop pairs: the fit is the earlier demo's, not refitted, within-structure
#: AUROC 0.73-0.83 with it), the session-12 demo it was trained from (runs made with it keep
#: their fit) and the head-held-out test-bed (benchmarks/testbed/checkpoints), all trained on
#: the beetle part labels.
FIT_BY_CHECKPOINT = {"60b8aa1f0cac9b617e3bb68f2d042a3f3a2aa484723453f5c535fbcb8b75f56b": "beetle_parts",
                     "df5b4b5725b6d51b79543379d042fff0a7a25ee87584a073d3eaf4640bb85641": "beetle_parts",
                     "5550829fc1c348ca8eeaee7b8f0ee9c09929ead9a7b4c27470a94f3d25b11bfc": "beetle_parts"}


def fit_for(checkpoint_hash: str | None) -> str:
    """The name of the fit (a key of :data:`FITS`) for a model with that checkpoint hash."""
    return FIT_BY_CHECKPOINT.get(checkpoint_hash or "", DEFAULT_FIT)


def mask_signals(
    logits: torch.Tensor, valid: torch.Tensor, template_share: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Signals of masks themselves. ``logits`` (n, S, S), ``valid`` (n, S, S) bool,
    ``template_share`` (n,): the structure's share of its template's real pixels."""
    import torch

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
    import torch

    p = torch.sigmoid(logits[:, 0].float()) * valid.to(logits.device)
    t = (target > 0.5).float() * valid.to(logits.device)
    inter = (p * t).flatten(1).sum(1)
    union = (p + t - p * t).flatten(1).sum(1)
    return torch.where(union > 0, inter / union.clamp(min=1e-6), torch.ones_like(union))


def linear(weights: Mapping[str, float], signals: Mapping[str, float | None]) -> float:
    """``bias + sum(weight * signal)`` clipped to [0, 1] (missing or non-finite signals count 0)."""
    z = weights["bias"]
    for name, w in weights.items():
        if name == "bias":
            continue
        value = signals.get(name)
        if value is not None and math.isfinite(float(value)):
            z += w * float(value)
    return min(1.0, max(0.0, z))


def combine(signals: Mapping[str, float | None], fit: str = DEFAULT_FIT) -> float:
    """The one-pass review score (0..1) of one structure from its signals."""
    return linear(FITS[fit].one_pass, signals)
