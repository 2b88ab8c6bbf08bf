"""Which validation a training run uses, decided from the templates alone (no torch).

The trainer follows this plan and the GUI labels its plot from it (``METRICS``: the name,
which way is better, and whether it is measured against labels or is a proxy), so the two
can never disagree (ALGORITHM.md, "Validation"; why these: ``engine.checkpoint_choice``):

* ``pool_score`` (a proxy), whatever the number of templates: the mean review score of the
  templates' masks on a fixed, seeded subset of the unlabeled images held out of training
  (higher is better): at most ``val_images``, never more than a fifth of them (one for 2-9
  images); with a single unlabeled image it is validated on the training image itself;
* ``loo_iou`` (against labels) only when asked for (``metric=LOO_IOU``,
  ``TrainConfig.validation``) and two or more templates share a structure: each template is
  predicted from the others (higher is better). It was the default with several templates
  until issue 25: every template is also trained on, so it rose on every seed of the
  5-template test-bed runs while the held-out photos got worse (``engine.checkpoint_choice``);
* ``validate_every == 0`` -> no validation (the last step's weights are kept).

``val_loss`` (the palindrome loss on the held-out images) was the one-template validation
before issue 25; it is kept as a name for old runs and the benchmarks, and no plan picks it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

LOO_IOU = "loo_iou"
VAL_LOSS = "val_loss"
POOL_SCORE = "pool_score"


@dataclass(frozen=True)
class Metric:
    """How a validation metric is told to the user (CLI, GUI, result.json alike): its one name,
    which way is better, whether it is measured against labels (a person's outlines) or is a
    label-free proxy, and what it is."""

    name: str
    higher_is_better: bool
    against_labels: bool
    what: str

    @property
    def basis(self) -> str:
        return "measured against your outlines" if self.against_labels else "a label-free proxy"


METRICS = {
    LOO_IOU: Metric("validation IoU", True, True,
                    "each template segmented from the other templates, overlap with your outline (0 to 1)"),
    VAL_LOSS: Metric("validation loss", False, False,
                     "the palindrome loss on a few unlabeled specimens held out of training"),
    POOL_SCORE: Metric("held-out review score", True, False,
                       "the mean review score (an IoU estimate, 0 to 1; a structure not found counts 0) of "
                       "the masks on a few unlabeled specimens held out of training; where the untrained "
                       "model's mask scored well, a mask counts by how much of it it keeps"),
}


@dataclass(frozen=True)
class ValidationPlan:
    """``metric`` (``LOO_IOU``, ``POOL_SCORE`` or None), the indices of the unlabeled images
    held out of training (``held_out``; empty for ``loo_iou``), whether validation reuses
    the training images (too few to hold any out), and notes worth telling the user."""

    metric: str | None
    held_out: frozenset[int] = frozenset()
    on_training_images: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def higher_is_better(self) -> bool:
        return self.metric is not None and METRICS[self.metric].higher_is_better


def plan_validation(template_structures: Sequence[Iterable[str]], n_unlabeled: int, *,
                    validate_every: int = 25, val_images: int = 4, seed: int = 0,
                    metric: str | None = None) -> ValidationPlan:
    """The plan for templates annotating ``template_structures`` (one collection of structure
    names per template) and ``n_unlabeled`` usable unlabeled images; ``metric`` (``LOO_IOU`` or
    ``POOL_SCORE``) asks for one where the templates allow it; None is ``POOL_SCORE``."""
    if validate_every == 0:
        return ValidationPlan(None)
    if metric not in (None, LOO_IOU, POOL_SCORE):
        raise ValueError(f"validation metric {metric!r}: use {LOO_IOU!r} or {POOL_SCORE!r}")
    sets = [set(names) for names in template_structures]
    shared = any(sum(name in s for s in sets) >= 2 for name in set().union(*sets)) if sets else False
    if metric == LOO_IOU and len(sets) >= 2 and shared:
        return ValidationPlan(LOO_IOU)
    notes = []
    if metric == LOO_IOU:
        notes.append("fewer than two templates share a structure, so none can be predicted from the "
                     "others; validating on held-out unlabeled images instead")
    n_val = min(val_images, max(1, n_unlabeled // 5)) if n_unlabeled >= 2 else 0
    if n_val <= 0:
        notes.append("too few unlabeled images to hold some out for validation; validating on the "
                     "training images (the best-checkpoint choice is then less reliable)")
        return ValidationPlan(POOL_SCORE, frozenset(), True, tuple(notes))
    held = frozenset(random.Random(seed).sample(range(n_unlabeled), n_val))
    return ValidationPlan(POOL_SCORE, held, False, tuple(notes))
