"""A second pass for structures small in the photo: each is segmented again in a crop of the
target at the model's full input size, with the template's crop as memory, and pasted back.

At a 256 px input an eye of a pinned beetle is about 11 x 11 model pixels, under one cell of
the 16-px grid SAM2's memory attention works on, and one-shot transfer gives nothing there
(benchmarks/testbed/README.md, "Issue 13: small structures"). Cropping brings such a
structure to the scale the model works at:

* **Which structures** (:func:`small_structure_names`): chosen per structure by its size on
  the template: the square root of its area, in model pixels, at most :data:`SMALL_SIDE`,
  and its bounding box at most :data:`MAX_BOX` long (a pair of eyes spans the head: small
  parts, a crop-sized box), on every template that outlines it. Small structures close
  together (eyes and mouthparts, both on the head) share one crop (:func:`group_boxes`,
  joint box at most ``MAX_BOX``), so a group costs one more encoder pass per target, not one
  per structure.
* **The template's crop**: the group's bounding box on the template's own image (the file it
  was read from: a template made from an array has none and gets no second pass), grown to a
  square :data:`CONTEXT` times its longer side, prepared at the model's input size; its masks
  of the group are the memory.
* **Where on the target**: the template's crop box carried over relative to the specimen:
  the bounding box of the first pass's masks of the other (large) structures on the target,
  against the same structures' masks on the template. A small structure's own first-pass
  mask is not used to place the crop: at whole-photo scale it is mostly wrong.
* **Paste back**: the crop's prediction, letterbox undone, goes back into the target's grid
  (nothing outside the crop); its review score is the crop pass's one-pass score. The
  structure's first-pass result is replaced by the crop's (absent when the crop finds it
  absent).

Skipped (first-pass results kept): targets given as prepared images (no full-resolution
pixels), an orientation other than the identity, and targets on which no large structure was
found (nothing to place the crop by). Measured in benchmarks/testbed/README.md ("Issue 25:
small structures at their own scale").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.orientation import IDENTITY
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, predict_prepared
from descriptron_sam2pal.engine.results import StructureResult, Target, TargetResult
from descriptron_sam2pal.engine.review_score import combine, fit_for
from descriptron_sam2pal.engine.prepared_templates import Template
from descriptron_sam2pal.imaging.io import load_image
from descriptron_sam2pal.model.build import LoadedModel

log = logging.getLogger(__name__)

#: Whether propagation runs the second pass when not told (``propagate(small_structures=None)``).
ON_BY_DEFAULT = False
#: A structure of at most this square root of its area (model pixels) on every template that
#: outlines it is small (a 256 px eye is about 11, mouthparts 17, a head 30, antennae 25).
SMALL_SIDE = 20
#: ... when its bounding box (and that of a group sharing a crop) is at most this long.
MAX_BOX = 80
#: The crop's side is this many times the longer side of the (group's) bounding box.
CONTEXT = 1.6

Box = tuple[int, int, int, int]  # y0, x0, y1, x1 (end exclusive), on an image's own pixel grid


def mask_box(mask: np.ndarray) -> Box | None:
    """The bounding box of a bool mask (None when empty)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def union_box(boxes: Sequence[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def square_box(box: Box, context: float, height: int, width: int) -> Box:
    """A square ``context`` times the box's longer side around its centre, shifted to lie in
    the image (and cut to it where the image is smaller)."""
    cy, cx = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1], 1) * context
    side_y, side_x = min(side, height), min(side, width)
    y0 = int(round(min(max(cy - side_y / 2, 0), height - side_y)))
    x0 = int(round(min(max(cx - side_x / 2, 0), width - side_x)))
    return y0, x0, min(height, y0 + int(round(side_y))), min(width, x0 + int(round(side_x)))


def is_small(template: Template, name: str, small_side: float = SMALL_SIDE) -> bool:
    """Whether the structure is small on the template (see the module docstring), in model pixels."""
    return is_small_mask(template.masks[name], template.image.letterbox.scale, small_side)


def is_small_mask(mask: np.ndarray, scale: float, small_side: float = SMALL_SIDE) -> bool:
    """Whether a mask on an image's own pixel grid is small at ``scale`` model pixels per image
    pixel (``is_small``; False when empty)."""
    box = mask_box(mask)
    if box is None:
        return False
    return (
        float(np.sqrt(mask.sum())) * scale <= small_side
        and max(box[2] - box[0], box[3] - box[1]) * scale <= MAX_BOX
    )


def small_structure_names(templates: Sequence[Template], small_side: float = SMALL_SIDE) -> list[str]:
    """The structures small on every template that outlines them (template order)."""
    names: list[str] = []
    for t in templates:
        for n in t.structures:
            if n not in names and all(is_small(u, n, small_side) for u in templates if n in u.masks):
                names.append(n)
    return names


def group_boxes(boxes: dict[str, Box], max_side: float) -> list[list[str]]:
    """Greedy groups of structures whose joint bounding box is at most ``max_side`` long."""
    groups: list[list[str]] = []
    for name in boxes:
        for g in groups:
            joint = union_box([boxes[n] for n in g] + [boxes[name]])
            if max(joint[2] - joint[0], joint[3] - joint[1]) <= max_side:
                g.append(name)
                break
        else:
            groups.append([name])
    return groups


@dataclass
class _Crop:
    """One group of small structures: its template crop's memory, the crop box on the
    template's image, and the template's masks of the large structures (to place the crop)."""

    names: list[str]
    memory: TemplateMemory
    box: Box
    anchors: dict[str, np.ndarray]


class SmallStructurePass:
    """The second pass for the small structures of some templates (see the module docstring).
    Built once per propagation; :meth:`refine` changes one target's result in place."""

    def __init__(
        self,
        model: LoadedModel,
        templates: Sequence[Template],
        names: Sequence[str],
        encoder: FeatureEncoder | None = None,
        context: float = CONTEXT,
    ) -> None:
        self.model = model
        self.encoder = encoder or FeatureEncoder(model)
        self.fit = fit_for(model.checkpoint_hash)
        self.context = context
        self.crops: list[_Crop] = []
        size = model.image_size
        for t in templates:
            mine = [n for n in names if n in t.masks and not any(n in c.names for c in self.crops)]
            if not mine or not t.image.source:
                continue
            try:
                pixels = load_image(t.image.source)
            except Exception as exc:  # noqa: BLE001 - the template's file moved: no second pass from it
                log.warning("small structures: cannot read template %s (%s)", t.image.source, exc)
                continue
            if pixels.shape[:2] != next(iter(t.masks.values())).shape:
                continue
            h, w = pixels.shape[:2]
            boxes = {n: mask_box(t.masks[n]) for n in mine}
            scale = t.image.letterbox.scale
            for group in group_boxes(boxes, MAX_BOX / scale):
                box = square_box(union_box([boxes[n] for n in group]), context, h, w)
                y0, x0, y1, x1 = box
                crop_masks = {n: t.masks[n][y0:y1, x0:x1] for n in group if t.masks[n][y0:y1, x0:x1].any()}
                if not crop_masks:
                    continue
                image = prepare_image(
                    np.ascontiguousarray(pixels[y0:y1, x0:x1]), size, source=f"{t.image.source}#crop{box}"
                )
                crop_template = Template(f"{t.image_id}~{'+'.join(group)}", image, crop_masks)
                anchors = {n: m for n, m in t.masks.items() if n not in names}
                self.crops.append(
                    _Crop(
                        list(crop_masks), TemplateMemory(model, [crop_template], self.encoder), box, anchors
                    )
                )

    @property
    def structures(self) -> list[str]:
        return [n for c in self.crops for n in c.names]

    def target_box(self, crop: _Crop, result: TargetResult) -> Box | None:
        """The crop's box carried onto the target relative to the specimen (None when no large
        structure of the template was found on the target)."""
        names = [
            n
            for n in crop.anchors
            if n in result.structures
            and result.structures[n].present
            and result.structures[n].mask is not None
        ]
        if not names:
            return None
        mine = union_box([mask_box(crop.anchors[n]) for n in names])
        theirs = union_box([mask_box(result.structures[n].mask) for n in names])
        sy = (theirs[2] - theirs[0]) / max(1, mine[2] - mine[0])
        sx = (theirs[3] - theirs[1]) / max(1, mine[3] - mine[1])
        y0, x0, y1, x1 = crop.box
        cy = theirs[0] + ((y0 + y1) / 2 - mine[0]) * sy
        cx = theirs[1] + ((x0 + x1) / 2 - mine[1]) * sx
        side = max(y1 - y0, x1 - x0) * float(np.sqrt(sy * sx))
        half = side / (2 * self.context)  # square_box grows it by ``context`` again
        return square_box(
            (int(round(cy - half)), int(round(cx - half)), int(round(cy + half)), int(round(cx + half))),
            self.context,
            result.height,
            result.width,
        )

    def refine(self, result: TargetResult, target: Target) -> bool:
        """Segment the small structures of ``result`` again in crops of ``target`` and replace
        their results; False (nothing changed) when the target cannot have the second pass."""
        if not self.crops or not result.ok or result.orientation != IDENTITY:
            return False
        if isinstance(target.image, np.ndarray):
            pixels = target.image
        elif target.image is None and target.path is not None:
            pixels = load_image(target.path)
        else:
            return False
        if pixels.shape[:2] != (result.height, result.width):
            return False
        changed = False
        for crop in self.crops:
            names = [n for n in crop.names if n in result.structures]
            box = self.target_box(crop, result) if names else None
            if box is None:
                continue
            y0, x0, y1, x1 = box
            image = prepare_image(np.ascontiguousarray(pixels[y0:y1, x0:x1]), self.model.image_size)
            [raw] = predict_prepared(
                crop.memory, [image], self.encoder.encode([image], cache=False), confidence=False
            )
            planes = image.letterbox.unapply(np.stack([raw[n].logits for n in names])) > 0
            for n, plane in zip(names, planes):
                r = raw[n]
                mask = np.zeros((result.height, result.width), dtype=bool)
                mask[y0:y1, x0:x1] = plane
                ok = r.present and bool(mask.any())
                result.structures[n] = StructureResult(
                    n,
                    ok,
                    mask if ok else None,
                    combine(r.signals or {}, self.fit) if ok else None,
                    r.object_score,
                    r.predicted_iou,
                    None,
                    (r.signals or {}).get("stability") if ok else None,
                )
            changed = True
        return changed


def make_small_pass(
    model: LoadedModel,
    templates: Sequence[Template],
    encoder: FeatureEncoder | None = None,
    small_side: float = SMALL_SIDE,
) -> SmallStructurePass | None:
    """The second pass for the templates' small structures (None when there is none, or no
    template image can be read at full resolution)."""
    names = small_structure_names(templates, small_side)
    if not names:
        return None
    made = SmallStructurePass(model, templates, names, encoder)
    return made if made.crops else None
