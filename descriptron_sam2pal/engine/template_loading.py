"""Building templates from what users have: a Descriptron store, or an image with a
binary mask PNG (one structure) or a colour/indexed mask PNG (several structures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.io import load_image
from descriptron_sam2pal.imaging.mask_png import Color, mask_from_binary_png, masks_from_color_png, parse_colors
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.templates import Template
from descriptron_sam2pal.store.provenance import template_masks


def _check_size(mask: np.ndarray, image: np.ndarray, image_path: Any, mask_path: Any) -> None:
    if mask.shape != image.shape[:2]:
        h, w = image.shape[:2]
        raise UserError(
            f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} px but the image {image_path} is {w}x{h} px "
            "(after EXIF rotation); give the mask drawn on this image at full size")


def template_from_mask_png(image_path: str | Path, mask_path: str | Path, structure: str, size: int,
                           image_id: Any = None) -> Template:
    """One structure outlined in a binary mask PNG (0/255 or 0/1) of the image."""
    if not structure or not str(structure).strip():
        raise UserError("give the structure's name for the mask PNG (e.g. 'scape')")
    image = load_image(image_path)
    mask = mask_from_binary_png(mask_path)
    _check_size(mask, image, image_path, mask_path)
    if not mask.any():
        raise UserError(f"{mask_path} is empty (no foreground pixel); outline '{structure}' in it")
    return Template(image_id if image_id is not None else str(image_path),
                    prepare_image(image, size, source=str(image_path)), {str(structure).strip(): mask})


def template_from_color_png(image_path: str | Path, mask_path: str | Path, colors: Mapping[str, Color] | str,
                            size: int, image_id: Any = None) -> Template:
    """Several structures from a colour/indexed mask PNG and a colour map
    (``"head=200,0,0;eye=0,0,255"``). Colours absent from the PNG are structures the
    template does not show; when none occurs, that is an error."""
    if isinstance(colors, str):
        colors = parse_colors(colors)
    image = load_image(image_path)
    masks = masks_from_color_png(mask_path, colors)
    _check_size(next(iter(masks.values())), image, image_path, mask_path)
    found = {n: m for n, m in masks.items() if m.any()}
    if not found:
        listed = ", ".join(f"{n}={','.join(map(str, c))}" for n, c in colors.items())
        raise UserError(f"{mask_path} contains none of the colours {listed}; check the colour map "
                        "(exact colours; a JPEG-saved mask has altered colours, save masks as PNG)")
    return Template(image_id if image_id is not None else str(image_path),
                    prepare_image(image, size, source=str(image_path)), found)


def templates_from_store(store: Any, size: int, image_ids: Iterable[Any] | None = None,
                         structures: Iterable[str] | None = None) -> list[Template]:
    """Templates from a Descriptron store (an ``AnnotationStore`` or a path to one): every
    image with at least one outline of the user's (``template_masks``), or only ``image_ids``
    (each must have one). ``structures`` restricts which structures are used."""
    from descriptron_sam2pal.store import AnnotationStore

    if not hasattr(store, "images"):
        store = AnnotationStore.open(store)
    wanted = set(structures) if structures is not None else None
    if image_ids is None:
        records, explicit = list(store.images), False
    else:
        records, explicit = [store.image(i) for i in image_ids], True
    templates = []
    for rec in records:
        masks = {n: m for n, m in template_masks(store, rec.id).items() if wanted is None or n in wanted}
        empty = [n for n, m in masks.items() if not m.any()]
        if empty:
            raise UserError(f"{rec.file_name}: the outline of {', '.join(empty)} is empty (a degenerate "
                            "polygon?); redraw it in Descriptron or delete it")
        if not masks:
            if explicit:
                raise UserError(f"{rec.file_name} has no structure outlined"
                                + (f" among {', '.join(sorted(wanted))}" if wanted else "")
                                + "; outline at least one or choose another template image")
            continue
        if rec.path is None:
            raise UserError(f"the image file of {rec.file_name} was not found next to the annotations; "
                            "put it there or open the store from the image folder")
        image = load_image(rec.path)
        _check_size(next(iter(masks.values())), image, rec.path, f"the annotations of {rec.file_name}")
        templates.append(Template(rec.id, prepare_image(image, size, source=str(rec.path)), masks))
    if not templates:
        raise UserError("no annotated image in the store; outline the structures on at least one specimen")
    return templates
