"""Which templates a job trains and propagates from: one set of rules for every source.

A template is first read into a :class:`TemplateSpec` (the image file and one
full-size mask per structure), in whatever thread owns the source (the GUI
reads its store in the GUI thread), and checked there: an empty outline, a
mask of the wrong size or a missing image file is a UserError naming the file.
``load_templates`` then prepares the specs at the model's input size (slow:
run it in a worker), first refusing an outline that vanishes at that size. The
CLI's ``--templates`` / ``--template-image`` / ``--template-mask`` and the GUI's
ticked templates all end in the same two calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.io import load_image, read_image_size
from descriptron_sam2pal.imaging.kept_pixels import (
    MIN_KEPT_PIXELS,
    kept_pixels,
    largest_useful_size,
    smallest_keeping_size,
)
from descriptron_sam2pal.imaging.mask_png import (
    Color,
    mask_from_binary_png,
    masks_from_color_png,
    parse_colors,
)
from descriptron_sam2pal.store.provenance import template_masks


@dataclass(eq=False)
class TemplateSpec:
    """An outlined specimen before preparation: ``image_id`` (the store's id, or the image
    path), the image file ``path``, and ``masks`` {structure: (H, W) bool} on its pixel grid."""

    image_id: str | int  # the store's image id, else the image path
    path: str
    masks: dict[str, np.ndarray]

    @property
    def structures(self) -> list[str]:
        return list(self.masks)


def _check_masks(masks: Mapping[str, np.ndarray], image_path: Any, source: Any) -> None:
    """UserError for a mask not the size of its image, an empty one, or none at all."""
    if not masks:
        raise UserError(f"{source} has no structure outlined; outline at least one")
    empty = [n for n, m in masks.items() if not m.any()]
    if empty:
        raise UserError(f"{source}: the outline of {', '.join(empty)} is empty (a degenerate polygon?); "
                        "redraw it or delete it")
    h, w = read_image_size(image_path)
    for name, mask in masks.items():
        if mask.shape != (h, w):
            raise UserError(
                f"{source}: the mask of '{name}' is {mask.shape[1]}x{mask.shape[0]} px but the "
                f"image {image_path} is {w}x{h} px; give the mask drawn on this image at full size"
            )


def specs_from_store(store: Any, image_ids: Iterable[Any] | None = None,
                     structures: Iterable[str] | None = None) -> list[TemplateSpec]:
    """Templates of a Descriptron store (an ``AnnotationStore`` or a path to one): every image
    with an outline of the user's (predictions never count, see ``store.provenance``), or only
    ``image_ids`` (each must have one). ``structures`` restricts which structures are used."""
    from descriptron_sam2pal.store import AnnotationStore

    if not hasattr(store, "images"):
        from descriptron_sam2pal.store.ours import is_our_predictions

        if is_our_predictions(Path(store).expanduser()):
            raise UserError(
                f"{store} is a predictions file written by sam2pal: its outlines are unreviewed "
                "predictions, never templates. Give your Descriptron annotations (the folder of the "
                "photos or the annotation file you saved)"
            )
        store = AnnotationStore.open(store)
    wanted = set(structures) if structures is not None else None
    explicit = image_ids is not None
    records = [store.image(i) for i in image_ids] if explicit else list(store.images)
    specs = []
    for rec in records:
        masks = {n: m for n, m in template_masks(store, rec.id).items() if wanted is None or n in wanted}
        if not masks:
            if explicit:
                raise UserError(f"{rec.file_name} has no structure outlined"
                                + (f" among {', '.join(sorted(wanted))}" if wanted else "")
                                + "; outline at least one or choose another template image")
            continue
        if rec.path is None:
            raise UserError(f"the image file of {rec.file_name} was not found next to the annotations; "
                            "put it there or open the store from the image folder")
        _check_masks(masks, rec.path, rec.file_name)
        specs.append(TemplateSpec(rec.id, str(rec.path), masks))
    return specs


def spec_from_mask_png(image_path: str | Path, mask_path: str | Path, structure: str,
                       image_id: str | int | None = None) -> TemplateSpec:
    """One structure outlined in a binary mask PNG (0/255 or 0/1) of the image."""
    if not structure or not str(structure).strip():
        raise UserError("give the structure's name for the mask PNG (e.g. 'scape')")
    mask = mask_from_binary_png(mask_path)
    if not mask.any():
        raise UserError(f"{mask_path} is empty (no foreground pixel); outline '{structure}' in it")
    masks = {str(structure).strip(): mask}
    _check_masks(masks, image_path, mask_path)
    return TemplateSpec(image_id if image_id is not None else str(image_path), str(image_path), masks)


def spec_from_color_png(image_path: str | Path, mask_path: str | Path, colors: Mapping[str, Color] | str,
                        image_id: str | int | None = None) -> TemplateSpec:
    """Several structures from a colour/indexed mask PNG and a colour map
    (``"head=200,0,0;eye=0,0,255"``). Colours absent from the PNG are structures the
    template does not show; when none occurs, that is an error."""
    if isinstance(colors, str):
        colors = parse_colors(colors)
    found = {n: m for n, m in masks_from_color_png(mask_path, colors).items() if m.any()}
    if not found:
        listed = ", ".join(f"{n}={','.join(map(str, c))}" for n, c in colors.items())
        raise UserError(f"{mask_path} contains none of the colours {listed}; check the colour map "
                        "(exact colours; a JPEG-saved mask has altered colours, save masks as PNG)")
    _check_masks(found, image_path, mask_path)
    return TemplateSpec(image_id if image_id is not None else str(image_path), str(image_path), found)


def template_specs(stores: Sequence[Any] = (), images: Sequence[str] = (), masks: Sequence[str] = (),
                   structure: str | None = None, colors: str | None = None) -> list[TemplateSpec]:
    """Every template the user named: the annotated images of each store, and each image with
    its mask PNG (binary with ``structure``, colour with ``colors``). UserError when none."""
    specs: list[TemplateSpec] = []
    for store in stores:
        specs.extend(specs_from_store(store))
    if len(images) != len(masks):
        raise UserError("give one --template-mask for each --template-image")
    for image, mask in zip(images, masks):
        if colors:
            specs.append(spec_from_color_png(image, mask, colors))
        elif structure:
            specs.append(spec_from_mask_png(image, mask, structure))
        else:
            raise UserError(f"name the structure of {mask}: --structure NAME for a binary mask, "
                            '--colors "name=R,G,B;..." for a colour mask')
    if not specs:
        raise UserError("no templates: outline the structures on at least one specimen (--templates STORE "
                        "with Descriptron annotations, or --template-image IMG --template-mask MASK.png)")
    return specs


def structure_names(specs: Sequence[TemplateSpec]) -> list[str]:
    """Every structure the templates outline, in first-seen order (the order training and
    propagation use: ``engine.prepared_templates.structure_names``)."""
    from descriptron_sam2pal.engine.prepared_templates import structure_names as names_in_order

    return names_in_order(list(specs))


def check_structures_kept(specs: Sequence[TemplateSpec], size: int) -> None:
    """UserError, naming each structure and template photo, when an outline keeps fewer than
    ``MIN_KEPT_PIXELS`` pixels at the model's input ``size`` (``imaging.kept_pixels``): such a
    structure would be predicted as nothing and training could not learn it. The message
    gives the smallest input size that keeps each one and what to do. Reads no image."""
    vanished = []
    for spec in specs:
        for name, mask in spec.masks.items():
            kept = kept_pixels(mask, size)
            if kept < MIN_KEPT_PIXELS:
                h, w = mask.shape[:2]
                needed = smallest_keeping_size(mask, start=size + 1)
                where = (f"the smallest input size that keeps it: {needed} px" if needed else
                         f"no input size up to the photo's own ({largest_useful_size(h, w)} px) keeps it")
                vanished.append((name, needed, f"'{name}' on the template photo {spec.path} "
                                 f"({int(np.count_nonzero(mask))} px on its {w} x {h} px photo, {kept} px at "
                                 f"{size} px; {where})"))
    if not vanished:
        return
    unsized = list(dict.fromkeys(name for name, needed, _ in vanished if not needed))
    sized = [n for n in dict.fromkeys(name for name, _, _ in vanished) if n not in unsized]
    fixes = []
    if sized:
        size_needed = max(needed for name, needed, _ in vanished if name in sized)
        fixes.append(f"use --image-size {size_needed} or larger (in the Train dialog: Image size), or leave "
                     f"{', '.join(map(repr, sized))} out of the templates")
    if unsized:
        fixes.append(f"leave {', '.join(map(repr, unsized))} out of the templates (too small on "
                     f"{'its photo' if len(unsized) == 1 else 'their photos'} at any input size)")
    advice = "; ".join(fixes)
    raise UserError(f"{len(vanished)} outline(s) vanish at the model's input size of {size} px (fewer than "
                    f"{MIN_KEPT_PIXELS} pixels are left once the photo is shrunk to it), so they would be "
                    "predicted as nothing and training could not learn them: "
                    + "; ".join(text for _, _, text in vanished)
                    + ". " + advice[0].upper() + advice[1:] + ".")


def load_templates(specs: Sequence[TemplateSpec], size: int) -> list:
    """The specs as engine Templates prepared at ``size`` px (reads and letterboxes each image),
    after :func:`check_structures_kept` (before any image is read)."""
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.engine.prepared_templates import Template

    check_structures_kept(specs, size)
    templates = []
    for spec in specs:
        image = load_image(spec.path)
        h, w = image.shape[:2]
        for name, mask in spec.masks.items():
            if mask.shape != (h, w):  # the file changed since the spec was read
                raise UserError(f"{spec.path} is now {w}x{h} px but the outline of '{name}' was made on a "
                                f"{mask.shape[1]}x{mask.shape[0]} px image; was the photo replaced?")
        templates.append(Template(spec.image_id, prepare_image(image, size, source=spec.path), spec.masks))
    return templates
