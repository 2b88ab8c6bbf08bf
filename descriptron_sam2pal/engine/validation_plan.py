"""Which validation a training run uses, decided from the templates alone (no torch).

The trainer follows this plan and the GUI labels its plot from it, so the two
can never disagree (ALGORITHM.md, "Validation"):

* two or more templates that share a structure -> ``loo_iou``: each template is
  predicted from the others (higher is better), every unlabeled image trains;
* otherwise -> ``val_loss``: the palindrome loss on a fixed, seeded subset of the
  unlabeled images held out of training (lower is better): at most
  ``val_images``, never more than a fifth of them (one for 2-9 images); with a
  single unlabeled image it is validated on the training image itself;
* ``validate_every == 0`` -> no validation (the last step's weights are kept).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

LOO_IOU = "loo_iou"
VAL_LOSS = "val_loss"


@dataclass(frozen=True)
class ValidationPlan:
    """``metric`` (``LOO_IOU``, ``VAL_LOSS`` or None), the indices of the unlabeled images
    held out of training (``held_out``; empty for ``loo_iou``), whether validation reuses
    the training images (too few to hold any out), and notes worth telling the user."""

    metric: str | None
    held_out: frozenset[int] = frozenset()
    on_training_images: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def higher_is_better(self) -> bool:
        return self.metric == LOO_IOU


def plan_validation(template_structures: Sequence[Iterable[str]], n_unlabeled: int, *,
                    validate_every: int = 25, val_images: int = 4, seed: int = 0) -> ValidationPlan:
    """The plan for templates annotating ``template_structures`` (one collection of structure
    names per template) and ``n_unlabeled`` usable unlabeled images."""
    if validate_every == 0:
        return ValidationPlan(None)
    sets = [set(names) for names in template_structures]
    shared = any(sum(name in s for s in sets) >= 2 for name in set().union(*sets)) if sets else False
    if len(sets) >= 2 and shared:
        return ValidationPlan(LOO_IOU)
    notes = []
    if len(sets) >= 2:
        notes.append("the templates share no structure, so none can be predicted from the others; "
                     "validating on held-out unlabeled images instead")
    n_val = min(val_images, max(1, n_unlabeled // 5)) if n_unlabeled >= 2 else 0
    if n_val <= 0:
        notes.append("too few unlabeled images to hold some out for validation; validating on the "
                     "training images (the best-checkpoint choice is then less reliable)")
        return ValidationPlan(VAL_LOSS, frozenset(), True, tuple(notes))
    held = frozenset(random.Random(seed).sample(range(n_unlabeled), n_val))
    return ValidationPlan(VAL_LOSS, held, False, tuple(notes))
