"""Which weights a training run keeps: the untrained model unless validation says training helped.

The trainer validates the untrained model first (step 0) and then every
``validate_every`` steps; the weights it keeps are those of the best validation, the
untrained ones included, and a run whose best validation is the untrained model's says it
did not improve (``TrainResult.improved`` is False) and leaves the model unchanged.

What it validates with is decided by ``engine.validation_plan`` (``METRICS`` names each one
and says whether it is measured against labels or is a proxy):

* ``pool_score``, with any number of templates: :func:`anchored_review_score`, the mean review
  score of the masks the templates give on the unlabeled images held out of training (a proxy:
  the review score is an estimate of the IoU, ``engine.review_score``), anchored to the untrained
  model's masks where its score says they are right (since session 10; see below). Measured on the
  packaged part-label demo along default runs (``benchmarks/testbed/val_signals.py``,
  benchmarks/testbed/README.md, "Issue 25"): it is the label-free signal that keeps the
  untrained model where training made the targets worse; the palindrome loss on the same
  images (``val_loss``, the earlier default) falls whatever happens to the targets and kept
  the last step on every seed;
* ``loo_iou`` only when asked for (``TrainConfig.validation``): each template segmented from
  the others, against its outline (labels). The templates it validates on are trained on
  too, so it follows what training does to them, not to the collection: with 5 templates on
  the head-held-out test-bed (3 seeds, 150 steps, 40 held-out photos) it rose on every seed
  (0.55 -> 0.59, 0.53 -> 0.57, 0.53 -> 0.56) while the all-structure mIoU of the held-out
  photos fell (54.4 -> 52.8, 53.5 -> 52.3, 54.0 -> 53.7), so every run said "improved";
  the held-out review score kept the untrained weights on all three (54.4, 53.5, 54.0).

Not yet a guarantee: on the packaged all-parts demo (issue 23's model, one template) the plain
held-out review score rose on every seed while two of three runs ended worse on held-out
photos (benchmarks/testbed/README.md, "Session 9"): training makes that model's masks more
stable and its IoU head more confident, which is what the score measures. Anchoring it to the
untrained masks (``anchored_review_score``) was designed against that before it was measured,
and is what ``pool_score`` computes since session 10 (its figures: benchmarks/testbed/README.md,
"Session 10"). The result names the signal and says it is a label-free proxy.

A trained checkpoint replaces the best so far only when it is strictly better (ties keep the
earlier, hence the untrained, weights) and, with ``pool_score``, when it improves **most masks**:
more of the held-out masks' anchored terms rose above the untrained model's than fell below
(:func:`mostly_better`). Where the anchored mean rose while the runs ended worse on the all-parts
demo, a few masks had gained much and most had lost a little; where training helped the
class-agnostic model, most masks gained. Measured after the fact on the 12 saved seed runs of
``val_signal_choice.py`` (demo worse on 2 of 6 seeds -> 0 of 6, the class-agnostic gains all
kept), then on new trainer runs of the same seeds: it kept the untrained model in the 3 runs
that had ended worse and changed no run where training helped. On runs it was not found on
(300 steps; new seeds) it changed nothing: two runs of the demo before session 12 still end
worse (benchmarks/testbed/README.md, "Session 11"; the session-12 demo kept its untrained
weights on all 9 of its runs). A conservative check, not a guarantee. A fixed margin on the mean
separates neither (the same section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.frames import encode_memory, make_frame, predict_from_memory
from descriptron_sam2pal.engine.palindrome import hard_iou
from descriptron_sam2pal.engine.preprocess import PreparedImage
from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, predict_in_batches, select_rows
from descriptron_sam2pal.engine.review_score import combine, fit_for
from descriptron_sam2pal.engine.prepared_templates import Template
from descriptron_sam2pal.engine.validation_plan import METRICS, Metric
from descriptron_sam2pal.model.build import LoadedModel

def metric_info(metric: str) -> Metric:
    """The description of a validation metric (``engine.validation_plan.METRICS``)."""
    return METRICS[metric]


def better(metric: str, value: float, best: float) -> bool:
    """Whether a validation ``value`` is strictly better than ``best``."""
    return value > best if METRICS[metric].higher_is_better else value < best


def improvement(metric: str | None, baseline: float | None, best: float | None) -> float | None:
    """How much ``best`` beats the untrained model's ``baseline``, signed so that positive is
    better (None without validation)."""
    if metric is None or baseline is None or best is None:
        return None
    delta = best - baseline
    return delta if METRICS[metric].higher_is_better else -delta


@dataclass(frozen=True)
class HeldOutMasks:
    """Every template structure on the held-out images, always in the same order: its review
    score (one-pass, the model's fit; 0 where the model does not find it) and its mask on the
    model's grid (packed bits, all zero where not found)."""

    scores: np.ndarray  # (n,) float64
    masks: np.ndarray  # (n, bytes) uint8, np.packbits of each flattened (S, S) mask

    def to_state(self) -> dict[str, torch.Tensor]:
        """Tensors for ``state.pt`` (a resumed run compares with the same untrained masks)."""
        return {"scores": torch.from_numpy(self.scores.copy()), "masks": torch.from_numpy(self.masks.copy())}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "HeldOutMasks":
        return cls(state["scores"].numpy().astype(np.float64), state["masks"].numpy().astype(np.uint8))


def held_out_masks(model: LoadedModel, templates: Sequence[Template], images: Sequence[PreparedImage],
                   encoder: FeatureEncoder) -> HeldOutMasks:
    """The masks and review scores of every template structure on ``images``. No autograd;
    the model's training flags are left as they were."""
    if not images:
        raise ValueError("held-out validation needs at least one image")
    memory = TemplateMemory(model, templates, encoder)
    fit = fit_for(model.checkpoint_hash)
    scores, masks = [], []
    batches = predict_in_batches(memory, images, encoder, confidence=False)
    for raw in (raw for _, _, batch in batches for raw in batch):
        for name in sorted(raw):
            r = raw[name]
            scores.append(combine(r.signals or {}, fit) if r.present else 0.0)
            masks.append(np.packbits((r.logits > 0).ravel() & r.present))
    return HeldOutMasks(np.asarray(scores, dtype=np.float64), np.stack(masks))


def anchored_review_score(current: HeldOutMasks, untrained: HeldOutMasks) -> float:
    """The held-out review score of ``current`` anchored to the ``untrained`` model's masks of
    the same structures: the mean over masks of ``s0 * IoU(mask, untrained mask) + (1 - s0) * s``
    where ``s0`` is the untrained mask's review score and ``s`` the current one's. Read ``s0``
    as the chance that the untrained mask is right: then the current mask's IoU is about its
    overlap with it; otherwise the current mask's own estimate is all there is. Training can
    raise ``s`` by making masks stable and confident without making them right (the all-parts
    demo, benchmarks/testbed/README.md "Session 10"); where the untrained model was sure, that
    no longer counts unless the mask stays. For the untrained model itself each term is
    ``s0 * (2 - s0)``."""
    return float(np.mean(anchored_terms(current, untrained)))


def anchored_terms(current: HeldOutMasks, untrained: HeldOutMasks) -> np.ndarray:
    """The per-mask terms whose mean is :func:`anchored_review_score`."""
    if current.scores.shape != untrained.scores.shape:
        raise ValueError("anchored_review_score compares the same structures on the same images")
    s0, s = untrained.scores, current.scores
    overlap = packed_iou(current.masks, untrained.masks)
    return s0 * overlap + (1.0 - s0) * s


def mostly_better(current: HeldOutMasks, untrained: HeldOutMasks, tolerance: float = 1e-9) -> bool:
    """Whether more held-out masks' anchored terms rose above the untrained model's than fell
    below them: a checkpoint must improve most masks, not only their mean (see the module
    docstring, "most masks")."""
    change = anchored_terms(current, untrained) - anchored_terms(untrained, untrained)
    return int((change > tolerance).sum()) > int((change < -tolerance).sum())


def packed_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of packed-bit masks (two empty masks agree: 1)."""
    inter = np.unpackbits(a & b, axis=1).sum(1)
    union = np.unpackbits(a | b, axis=1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def leave_one_out_iou(model: LoadedModel, templates: Sequence[Template], encoder: FeatureEncoder) -> float:
    """Mean IoU of each template's structures predicted from the other templates' memories
    (``loo_iou``). The caller sets the model's mode, autocast and no-grad (the trainer's
    validation)."""
    sam, device = model.sam, model.device
    feats = encoder.encode([t.image for t in templates])
    memories = []
    for i, t in enumerate(templates):
        masks = t.model_masks(t.structures, device)
        memories.append(encode_memory(sam, make_frame(sam, [feats[i]], len(t.structures)), masks[:, None]))
    ious: list[float] = []
    for h, held in enumerate(templates):
        # Structures of the held-out template, grouped by which other templates have them,
        # so each group is one batch attending to exactly those templates' memories.
        groups: dict[tuple[int, ...], list[str]] = {}
        for name in held.structures:
            owners = tuple(j for j, t in enumerate(templates) if j != h and name in t.masks)
            if owners:
                groups.setdefault(owners, []).append(name)
        for owners, names in groups.items():
            mems = [select_rows(memories[j], [templates[j].structures.index(n) for n in names])
                    for j in owners]
            pred = predict_from_memory(sam, make_frame(sam, [feats[h]], len(names)), mems)
            truth = held.model_masks(names, device)
            ious.extend(hard_iou(pred.logits, truth, held.valid(device)).tolist())
    return float(np.mean(ious))


def describe(metric: str) -> str:
    """One line for the log: what the run validates with and whether it is measured against labels."""
    info = METRICS[metric]
    better_word = "higher" if info.higher_is_better else "lower"
    most = " and improves most of the held-out masks" if metric == "pool_score" else ""
    return (f"validation: {info.name} ({metric}, {better_word} is better; {info.basis}): {info.what}; "
            f"the untrained model is step 0 and is kept unless a trained step beats it{most}")
