"""The palindrome step {x0, x1, x1+, x0+} with a real memory reset (ALGORITHM.md).

x0 (template, K ground-truth masks) -> memory M0; x1 (unlabeled) predicted from
{M0}; *reset*; x1 with its soft predicted masks -> memory M1; x0 predicted from
{M1} only; the loss compares that prediction with x0's ground truth. All K
structures of the template travel together as one batch of objects.

Optionally (``palindrome_step(..., recon=...)``) the backward half predicts an
*augmented copy* x0' of the template (with its masks Y0') instead of x0: the
forward half still starts from the real template and its ground truth, but the
image to reconstruct changes from step to step, so the cycle cannot be closed by
reproducing one fixed image's masks from any memory. ``augment_letterboxed`` makes
such copies in the model's letterboxed space. On the beetle test-bed this changed
nothing measurable; the other options of ``LossWeights`` beyond the defaults were
tried there too (benchmarks/testbed/README.md, issue 6 follow-up): all off by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from descriptron_sam2pal.engine.features import ImageFeatures
from descriptron_sam2pal.engine.frames import encode_memory, make_frame, predict_from_memory


@dataclass
class LossWeights:
    bce: float = 1.0
    dice: float = 1.0
    presence: float = 1.0  # object-score loss on x0+: its structures are present
    target_presence: float = 0.0  # same on x1 (off by default: a target may lack a structure)
    iou: float = 1.0  # L1 between SAM2's predicted IoU on x0+ and the real one: keeps the
    # IoU head (reported to the user as predicted_iou) calibrated while the decoder changes
    blank: float = 0.0  # x0 predicted from a memory of x1 with *empty* masks must come out
    # absent: closes the shortcut of reproducing the template's masks without reading the
    # memory (seen on the beetle test-bed: benchmarks/testbed/README.md)
    supervised: float = 0.0  # ordinary supervision in the same step: the reconstruction target
    # (x0, or its augmented copy x0') predicted from the template's own memory M0 (BCE + Dice +
    # presence), so a palindrome run also learns what supervised fine-tuning on the template would
    overlap: float = 0.0  # structures that do not overlap on the template must not overlap on x1
    # either: soft overlap of each such pair of x1's predicted masks, as a fraction of the smaller
    # one. Objects are predicted independently, so nothing else stops two of them from covering
    # the same part (seen on the beetle test-bed: the pronotum swallowing the new head)
    hard_feedback: bool = False  # not a weight: x1's masks go into M1 thresholded (logits > 0)
    # instead of soft, so no gradient reaches the forward half through the feedback; the backward
    # half then learns "x1 with the model's own prediction -> the template's truth" and the
    # forward half cannot drift to whatever makes the cycle easy (ALGORITHM.md asks for soft)
    cycle_weighted: bool = False  # not a weight: each object's reconstruction loss (BCE, Dice,
    # presence, IoU head) is multiplied by its own cycle IoU in this step (detached), so a cycle
    # that does not close (x1 predicted wrong) teaches little instead of the most
    overlap_yield: bool = False  # in each overlapping pair only the structure with the lower
    # cycle IoU in this step is pushed away (symmetric, the known structure gave way on the test-bed)
    pseudo: float = 1.0  # self-training: the forward half's masks on x1 (template -> x1) against
    # x1's pseudo-labels, where it has them (BCE + Dice; engine.pseudo_labels, made by the trainer).
    # On by default: better than the palindrome term alone on the class-agnostic test-bed (K = 1,
    # 3 seeds; the numbers: benchmarks/testbed/README.md, session 7); 0 turns it off


@dataclass
class PalindromeOutput:
    loss: torch.Tensor  # scalar, summed over objects
    bce: torch.Tensor
    dice: torch.Tensor
    presence: torch.Tensor
    iou_error: torch.Tensor  # (K,) |predicted IoU - real IoU| on x0+
    target_logits: torch.Tensor  # (K, 1, S, S) L1, x1's predicted masks
    cycle_logits: torch.Tensor  # (K, 1, S, S) L3, x0 predicted back
    cycle_iou: torch.Tensor  # (K,) hard IoU of L3 vs ground truth on real pixels (no grad)


def mask_losses(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
    """Per-object BCE and Dice of ``logits`` (K,1,S,S) vs ``target`` (K,S,S), real pixels only."""
    logits = logits[:, 0].float()
    target = target.float()
    valid = valid.to(logits.device, torch.float32).expand_as(logits)
    n_valid = valid.sum(dim=(1, 2)).clamp(min=1.0)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid).sum(
        dim=(1, 2)
    ) / n_valid
    prob = torch.sigmoid(logits) * valid
    inter = (prob * target).sum(dim=(1, 2))
    dice = 1.0 - (2.0 * inter + 1.0) / (prob.sum(dim=(1, 2)) + (target * valid).sum(dim=(1, 2)) + 1.0)
    return bce, dice


def hard_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU per object of ``logits > 0`` (K,1,S,S) against ``target`` (K,S,S) on real pixels."""
    with torch.no_grad():
        pred = (logits[:, 0] > 0) & valid.to(logits.device)
        gt = (target > 0.5) & valid.to(logits.device)
        inter = (pred & gt).sum(dim=(1, 2)).float()
        union = (pred | gt).sum(dim=(1, 2)).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def blank_memory_loss(sam, f0, f1, valid: torch.Tensor) -> torch.Tensor:
    """x0 predicted from a memory of x1 holding no object: every structure must be absent
    (object score and mask), summed over objects. A model that reproduces the template's
    masks whatever its memory says pays here."""
    k = f0.batch
    size = int(sam.image_size)
    empty = torch.zeros(k, 1, size, size, device=valid.device)
    p = predict_from_memory(sam, f0, [encode_memory(sam, f1, empty)])
    zeros = torch.zeros_like(p.object_score_logits, dtype=torch.float32)
    presence = F.binary_cross_entropy_with_logits(p.object_score_logits.float(), zeros, reduction="sum")
    bce, _ = mask_losses(p.logits, torch.zeros(k, size, size, device=valid.device), valid)
    return presence + bce.sum()


def augment_letterboxed(pixels: np.ndarray, masks: torch.Tensor, valid: torch.Tensor,
                        rng: np.random.RandomState, rotate: float = 25.0, scale=(0.8, 1.1),
                        shift: float = 0.05, colour: float = 0.15):
    """A flipped / rotated / scaled / shifted / colour-jittered copy of a letterboxed image.

    ``pixels``: (S, S, 3) uint8 (zero padding outside ``valid``); ``masks``: (K, S, S) in
    [0, 1]; ``valid``: (S, S) bool. Returns ``(pixels, masks, valid)`` of the copy, the same
    geometric transform applied to all three; pixels moved in from outside the canvas are
    padding (zero, not valid). A structure pushed off the canvas has an empty mask.
    """
    size = pixels.shape[0]
    angle = np.deg2rad(rng.uniform(-rotate, rotate))
    zoom = rng.uniform(*scale)
    flip_x = -1.0 if rng.rand() < 0.5 else 1.0
    flip_y = -1.0 if rng.rand() < 0.5 else 1.0
    tx, ty = rng.uniform(-shift, shift, 2) * 2.0  # normalised coordinates span 2
    # Output -> input sampling grid (affine_grid's convention): inverse of zoom . rotation . flip.
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = torch.tensor([[[cos * flip_x, -sin * flip_x, -tx * flip_x],
                           [sin * flip_y, cos * flip_y, -ty * flip_y]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)
    image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float()
    device = masks.device
    stack = torch.cat([image, masks.detach().cpu().float()[None], valid.cpu().float()[None, None]], dim=1)
    out = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    new_valid = out[-1] > 0.5
    new_masks = (out[3:-1] >= 0.5).float() * new_valid
    image = out[:3]
    # Colour: brightness and contrast about the mean of the real pixels, and saturation.
    real = image[:, new_valid] if new_valid.any() else image.flatten(1)
    mean = real.mean()
    image = (image - mean) * rng.uniform(1 - colour, 1 + colour) + mean * rng.uniform(1 - colour, 1 + colour)
    grey = image.mean(dim=0, keepdim=True)
    image = grey + (image - grey) * rng.uniform(1 - colour, 1 + colour)
    image = image.clamp(0, 255) * new_valid
    out_pixels = image.round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return out_pixels, new_masks.to(device), new_valid.to(device)


def disjoint_pairs(masks: torch.Tensor, tolerance: float = 0.01) -> torch.Tensor:
    """(K, K) bool, upper triangle: pairs of objects whose masks (K, S, S) overlap on less than
    ``tolerance`` of the smaller one."""
    m = (masks.flatten(1) > 0.5).float()
    inter = m @ m.T
    area = m.sum(dim=1)
    smaller = torch.minimum(area[:, None], area[None, :]).clamp(min=1.0)
    return torch.triu(inter / smaller < tolerance, diagonal=1)


def overlap_loss(logits: torch.Tensor, pairs: torch.Tensor, rank: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the ``pairs`` (K, K) bool of the soft overlap of two objects' predicted masks
    ``logits`` (K, 1, S, S): sum(p_i p_j) / min(sum p_i, sum p_j), in [0, 1] per pair.

    ``rank`` (K,): when given, in each pair only the object of lower rank is pushed away (the
    other's mask is detached), so a structure the model already gets right does not give way
    to one it is still learning."""
    p = torch.sigmoid(logits[:, 0].float()).flatten(1)
    # Row i, column j: how much of object i lies on object j. With ``rank`` only row i moves
    # (column j detached), and only the lower-ranked object of each pair is counted.
    q = p if rank is None else p.detach()
    area = p.sum(dim=1)
    smaller = torch.minimum(area[:, None], q.sum(dim=1)[None, :]).clamp(min=1.0)
    overlap = (p @ q.T) / smaller
    if rank is None:
        return overlap[pairs].sum()
    r = rank.to(p.device)
    upper = torch.triu(torch.ones_like(pairs), diagonal=1)
    weight = (pairs | pairs.T) & ((r[:, None] < r[None, :]) | ((r[:, None] == r[None, :]) & upper))
    return overlap[weight].sum()


def pseudo_label_loss(target_logits: torch.Tensor, names: list[str], labels: dict[str, np.ndarray],
                      valid: torch.Tensor) -> torch.Tensor | None:
    """BCE + Dice of the forward half's logits (K,1,S,S) on x1, for the objects ``names`` (in
    that order) that have a pseudo-label in ``labels`` ({name: (S, S) bool}), summed; None when
    none has."""
    rows = [i for i, n in enumerate(names) if n in labels]
    if not rows:
        return None
    target = torch.from_numpy(np.stack([labels[names[i]] for i in rows])).to(target_logits.device)
    bce, dice = mask_losses(target_logits[rows], target, valid)
    return bce.sum() + dice.sum()


def supervised_loss(sam, m0: dict, frame, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE + Dice + presence of ``frame`` predicted from the template memory ``m0`` against
    ``masks`` (K, S, S), summed over objects: plain supervision on the template."""
    p = predict_from_memory(sam, frame, [m0])
    bce, dice = mask_losses(p.logits, masks, valid)
    present = (masks.flatten(1) > 0.5).any(dim=1).float()[:, None]
    presence = F.binary_cross_entropy_with_logits(p.object_score_logits.float(), present, reduction="sum")
    return bce.sum() + dice.sum() + presence


def palindrome_step(
    sam,
    template: ImageFeatures,
    template_masks: torch.Tensor,
    template_valid: torch.Tensor,
    target: ImageFeatures,
    weights: LossWeights | None = None,
    recon: tuple[ImageFeatures, torch.Tensor, torch.Tensor] | None = None,
) -> PalindromeOutput:
    """Forward one palindrome for the K structures of one template and one unlabeled image.

    ``template_masks``: (K, S, S) in {0, 1} (letterboxed); ``template_valid``: (S, S) bool.
    Differentiable end to end (the x1 masks are fed back soft, not thresholded).
    ``recon``: ``(features, masks, valid)`` of what the backward half predicts from M1
    and is scored against (an augmented copy of the template, same K objects in the same
    order); default the template itself. An object whose mask is empty there (pushed off
    the canvas) is scored as absent. ``weights``: default ``LossWeights()``.
    """
    weights = LossWeights() if weights is None else weights
    k = template_masks.shape[0]
    if k == 0:
        raise ValueError("a palindrome needs at least one template structure")
    device = template_masks.device
    f0 = make_frame(sam, [template], k)
    f1 = make_frame(sam, [target], k)
    # Phase 1: x0 with its ground truth -> M0; x1 attends to {M0}.
    m0 = encode_memory(sam, f0, template_masks[:, None])
    p1 = predict_from_memory(sam, f1, [m0])
    # Memory reset: phase 2 sees only M1, built from x1 and its soft prediction.
    if weights.hard_feedback:
        feedback = (p1.logits.detach().float() > 0).float()
    else:
        feedback = torch.sigmoid(p1.logits.float())
    m1 = encode_memory(sam, f1, feedback)
    if recon is None:
        f_back, back_masks, back_valid = f0, template_masks, template_valid
    else:
        feats_back, back_masks, back_valid = recon
        if back_masks.shape != template_masks.shape:
            raise ValueError(f"the reconstruction target has masks {tuple(back_masks.shape)}, the template "
                             f"{tuple(template_masks.shape)}: it must hold the same objects")
        f_back = make_frame(sam, [feats_back], k)
    p3 = predict_from_memory(sam, f_back, [m1])

    bce, dice = mask_losses(p3.logits, back_masks, back_valid)
    if recon is None:  # every structure annotated on the template is present
        present = torch.ones(k, 1, device=p3.object_score_logits.device)
    else:  # a structure pushed off an augmented copy is absent there
        present = (back_masks.flatten(1) > 0.5).any(dim=1).float()[:, None]
    presence = F.binary_cross_entropy_with_logits(p3.object_score_logits.float(), present, reduction="none")[
        :, 0
    ]
    cycle_iou = hard_iou(p3.logits, back_masks, back_valid.to(device))
    iou_error = (p3.predicted_iou.float() - cycle_iou).abs()
    per_object = (
        weights.bce * bce + weights.dice * dice + weights.presence * presence + weights.iou * iou_error
    )
    if weights.cycle_weighted:
        per_object = per_object * cycle_iou.detach()
    loss = per_object.sum()
    ones = torch.ones_like(p3.object_score_logits, dtype=torch.float32)
    if weights.target_presence:
        loss = loss + weights.target_presence * F.binary_cross_entropy_with_logits(
            p1.object_score_logits.float(), ones, reduction="sum")
    if weights.blank:
        loss = loss + weights.blank * blank_memory_loss(sam, f0, f1, template_valid)
    if weights.supervised:
        loss = loss + weights.supervised * supervised_loss(sam, m0, f_back, back_masks, back_valid)
    if weights.overlap and k > 1:
        rank = cycle_iou if weights.overlap_yield else None
        loss = loss + weights.overlap * overlap_loss(p1.logits, disjoint_pairs(template_masks), rank)
    return PalindromeOutput(loss=loss, bce=bce.detach(), dice=dice.detach(), presence=presence.detach(),
                            iou_error=iou_error.detach(), target_logits=p1.logits, cycle_logits=p3.logits,
                            cycle_iou=cycle_iou)
