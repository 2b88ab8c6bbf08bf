"""Pseudo-labels for self-training: the model's own masks on the unlabeled images that the
review score trusts most.

Every ``TrainConfig.pseudo_every`` steps the trainer propagates the templates onto its
unlabeled images with the weights as they are (the same forward pass as
``engine.memory_propagation``: every template that annotates a structure is attended to) and scores
each present mask as the Review would (``engine.review_score``, with the collection
signal of ``engine.collection_score`` when the model's fit has one and a structure has at
least ``MIN_MASKS`` masks). Only a mask whose palindrome closes (as the only memory it
predicts the templates back with IoU >= ``MIN_CYCLE``) can be chosen. The best few per
structure join the templates (``pool_templates``), every image is predicted again, and per
structure the best-scored ``fraction`` of the images become pseudo-labels. The palindrome
step's forward half (template -> unlabeled image) is then also supervised by them
(``LossWeights.pseudo``): the masks the collection agrees on teach the images it does not.
Measured in benchmarks/testbed/README.md ("Session 7").
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from descriptron_sam2pal.engine.control import CancelToken, is_cancelled
from descriptron_sam2pal.engine.collection_score import MIN_MASKS, consensus, mask_thumbnail
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.preprocess import PreparedImage
from descriptron_sam2pal.engine.memory_propagation import (
    TemplateMemory,
    palindrome_confidence_on_grid,
    predict_in_batches,
)
from descriptron_sam2pal.engine.review_score import FITS, ReviewFit, fit_for, linear
from descriptron_sam2pal.engine.prepared_templates import Template
from descriptron_sam2pal.model.build import LoadedModel

#: At most this many unlabeled images are pseudo-labelled in one remake (the trainer moves a
#: window of them round its pool, remake after remake): a remake costs two decoder passes per
#: image and the round trips of the masks the choice reaches; with 24 of 100 photos every 125
#: steps (``TrainConfig.pseudo_every``) the remakes cost under a quarter of the training time on
#: an AVX2 CPU (benchmarks/README.md, "Time to result").
MAX_IMAGES = 24
#: A mask becomes a pseudo-label only if, as the only memory, it predicts the templates back
#: with at least this IoU (its palindrome confidence): a model that knows nothing yet (random
#: weights: tests/engine/test_toy_task.py) closes no cycle and so teaches itself nothing.
MIN_CYCLE = 0.5

#: With round trips computed on demand, at most this many times the masks a structure keeps are
#: tried, best-scored first: one further down would be taken only if most better ones failed.
TRIES = 2

#: {index of the unlabeled image: {structure: (S, S) bool mask on the model's grid}}
PseudoLabels = dict[int, dict[str, np.ndarray]]
#: The palindrome confidence of one mask: (image index, structure, (S, S) bool mask) -> IoU.
Cycle = Callable[[int, str, np.ndarray], float]


def select_pseudo_labels(
    model: LoadedModel,
    templates: Sequence[Template],
    images: Sequence[PreparedImage],
    encoder: FeatureEncoder,
    fraction: float,
    from_pool: int = 0,
    min_cycle: float = MIN_CYCLE,
    cancel: CancelToken | None = None,
) -> PseudoLabels | None:
    """Per structure, the masks of the best-scored ``fraction`` of ``images`` (at least one
    image when any mask qualifies; only masks whose palindrome confidence reaches
    ``min_cycle`` do); see the module docstring. ``from_pool`` > 0: first the
    ``from_pool`` best masks of each structure join the templates (as more templates would),
    then every image is predicted again from all of them. No autograd; the model's training
    flags are left as they were. None when ``cancel`` is set meanwhile (checked between batches).

    The palindrome round trip is computed only for the masks that the score puts within
    reach of being chosen (in score order, until enough close): the choice is the one that
    computing it for every mask would make, at a fraction of the cost. The round trip always
    goes back to ``templates`` (the person's outlines), also in the second pass, where the
    pool masks help to predict but are not what a mask must reproduce."""
    fit = FITS[fit_for(model.checkpoint_hash)]
    memory = TemplateMemory(model, templates, encoder)
    cycle = round_trip(memory, images)  # always back to the person's templates, never to pool masks
    found = predict_masks(model, templates, images, encoder, cancel, confidence=False, memory=memory)
    if found is not None and from_pool > 0:
        extra = pool_templates(found, images, fit, from_pool, min_cycle, cycle=cycle)
        if extra:  # else the second pass would be the first one again
            found = predict_masks(model, list(templates) + extra, images, encoder, cancel, confidence=False)
    if found is None:
        return None
    return choose(found, fit, max(1, math.ceil(fraction * len(images))), min_cycle, cycle=cycle)


def round_trip(memory: TemplateMemory, images: Sequence[PreparedImage]) -> Cycle:
    """The palindrome confidence of one mask ``(image index, structure, (S, S) mask)`` back to
    ``memory``'s templates (the images' features come from its encoder's cache)."""

    def cycle(index: int, name: str, mask: np.ndarray) -> float:
        features = memory.encoder.encode([images[index]])[0]
        return palindrome_confidence_on_grid(memory, features, {name: mask}).get(name, 0.0)

    return cycle


def pool_templates(found: dict[str, list[tuple[int, dict, np.ndarray]]], images: Sequence[PreparedImage],
                   fit: ReviewFit, n: int, min_cycle: float = MIN_CYCLE, cycle: Cycle | None = None
                   ) -> list[Template]:
    """The ``n`` best-scored masks of each structure in ``found`` (:func:`predict_masks`) as
    templates: one per image, with the structures it is among the best for."""
    made = []
    for index, masks in sorted(choose(found, fit, n, min_cycle, cycle).items()):
        image = images[index]
        names = sorted(masks)
        own = image.letterbox.unapply(np.stack([masks[name].astype(np.float32) for name in names])) >= 0.5
        kept = {name: m for name, m in zip(names, own) if m.any()}
        if kept:
            made.append(Template(f"pool-{index}", image, kept))
    return made


def predict_masks(
    model: LoadedModel,
    templates: Sequence[Template],
    images: Sequence[PreparedImage],
    encoder: FeatureEncoder,
    cancel: CancelToken | None = None,
    confidence: bool = True,
    memory: TemplateMemory | None = None,
) -> dict[str, list[tuple[int, dict, np.ndarray]]] | None:
    """{structure: [(image index, review signals, (S, S) bool mask)]} of the present masks,
    the signals with the palindrome round trip back to ``templates`` when ``confidence``
    (else its signal ``palindrome`` is None; :func:`choose` computes it where it matters).
    None when ``cancel`` is set meanwhile. ``memory``: the templates already encoded."""
    memory = memory or TemplateMemory(model, templates, encoder)
    found: dict[str, list[tuple[int, dict, np.ndarray]]] = {}
    if is_cancelled(cancel):
        return None
    # As many images per decoder batch as propagation takes (1 on the CPU).
    for start, batch, raws in predict_in_batches(memory, images, encoder, confidence):
        for offset, (image, raw) in enumerate(zip(batch, raws)):
            valid = image.valid_mask()
            for name, r in raw.items():
                mask = (r.logits > 0) & valid
                if r.present and mask.any():
                    found.setdefault(name, []).append((start + offset, dict(r.signals or {}), mask))
        if is_cancelled(cancel):  # before the next batch is computed
            return None
    return found


def choose(found: dict[str, list[tuple[int, dict, np.ndarray]]], fit: ReviewFit, keep: int,
           min_cycle: float = MIN_CYCLE, cycle: Cycle | None = None) -> PseudoLabels:
    """Per structure, the ``keep`` best-scored of its masks ``found`` ({structure: [(image
    index, review signals, (S, S) bool mask)]}) among those whose palindrome round trip
    (signal ``palindrome``) reaches ``min_cycle``: scored with ``fit``'s collection estimate
    when it has one and the structure has MIN_MASKS masks or more, else its one-pass
    estimate; ties go to the lower image index. A mask whose ``palindrome`` is None gets it
    from ``cycle(image index, structure, mask)`` when the choice reaches it (stored in its
    signals), or counts as not closing without ``cycle``; with ``cycle``, only the best-scored
    ``TRIES * keep`` masks of a structure are tried (each round trip costs about a decoder
    pass and a memory encoding)."""
    labels: PseudoLabels = {}
    for name, items in found.items():
        if fit.collection is not None and len(items) >= MIN_MASKS:
            agreement = consensus([mask_thumbnail(mask) for _, _, mask in items])
            scores = [
                linear(fit.collection, {**s, "consensus": float(a)}) for (_, s, _), a in zip(items, agreement)
            ]
        else:
            scores = [linear(fit.one_pass, s) for _, s, _ in items]
        taken = 0
        order = sorted(range(len(items)), key=lambda i: (-scores[i], items[i][0]))
        for tried, i in enumerate(order):
            if taken == keep or (cycle is not None and tried == TRIES * keep):
                break
            index, signals, mask = items[i]
            if signals.get("palindrome") is None and cycle is not None:
                signals["palindrome"] = cycle(index, name, mask)
            if (signals.get("palindrome") or 0.0) >= min_cycle:
                labels.setdefault(index, {})[name] = mask
                taken += 1
    return labels


def pack_labels(labels: PseudoLabels | None) -> dict | None:
    """``labels`` as plain tensors of packed bits (what a trainer state file holds)."""
    if labels is None:
        return None
    return {str(index): {name: torch.from_numpy(np.packbits(mask.ravel())) for name, mask in masks.items()}
            for index, masks in labels.items()}


def unpack_labels(packed: dict | None, size: int) -> PseudoLabels | None:
    """The inverse of :func:`pack_labels` for masks of ``size`` x ``size``."""
    if packed is None:
        return None
    return {int(index): {name: np.unpackbits(bits.numpy())[: size * size].reshape(size, size).astype(bool)
                         for name, bits in masks.items()}
            for index, masks in packed.items()}
