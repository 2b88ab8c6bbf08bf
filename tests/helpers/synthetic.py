"""Synthetic specimens: coloured structures on a textured background, with their masks
(``from tests.helpers.synthetic import make_specimen``; also used by benchmarks/engine_timing.py)."""

from __future__ import annotations

import numpy as np

# name -> (shape, colour RGB, relative centre (y, x), relative radii (ry, rx))
SPECIMEN_STRUCTURES = {
    "head": ("ellipse", (150, 90, 40), (0.50, 0.50), (0.28, 0.22)),
    "eye": ("ellipse", (20, 20, 20), (0.40, 0.62), (0.07, 0.07)),
    "scape": ("bar", (220, 200, 60), (0.30, 0.30), (0.04, 0.18)),
    "mandible": ("ellipse", (90, 40, 140), (0.80, 0.50), (0.06, 0.14)),
}


def _background(rng, h: int, w: int):
    """Pixel grids and a textured background (low-frequency stripes plus noise), float RGB."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 120 + 25 * np.sin(xx / (5 + 3 * rng.random())) * np.cos(yy / (7 + 3 * rng.random()))
    image = np.repeat(base[..., None], 3, axis=2) + rng.normal(0, 8, (h, w, 3))
    image[..., 2] += 30
    return yy, xx, image


def make_specimen(seed: int, size=128, structures=("head", "eye", "scape")):
    """A synthetic specimen photo: coloured shapes on a textured background.

    ``size`` is an int (square) or ``(height, width)``. The layout jitters with
    ``seed`` (positions shift by a few percent, colours by a few levels), so two
    seeds give two similar but different specimens. Returns ``(image, masks)``:
    (H, W, 3) uint8 RGB and ``{name: (H, W) bool}`` for the requested
    structures (later structures are painted over earlier ones, and each mask
    is what stays visible).
    """
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx, image = _background(rng, h, w)
    owner = np.full((h, w), -1, dtype=np.int32)
    jitter = rng.uniform(-0.04, 0.04, size=(len(structures), 2))
    for i, name in enumerate(structures):
        shape, colour, (cy, cx), (ry, rx) = SPECIMEN_STRUCTURES[name]
        cy, cx = (cy + jitter[i, 0]) * h, (cx + jitter[i, 1]) * w
        ry, rx = ry * h, rx * w
        if shape == "ellipse":
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        shade = np.asarray(colour, np.float32) + rng.integers(-10, 11, 3)
        image[inside] = shade + rng.normal(0, 5, (int(inside.sum()), 3))
        owner[inside] = i
    masks = {name: owner == i for i, name in enumerate(structures)}
    return np.clip(image, 0, 255).astype(np.uint8), masks


def make_template(image_id, seed: int, size=128, structures=("head", "eye", "scape"), image_size: int = 128):
    """An engine ``Template`` of a synthetic specimen (see ``make_specimen``)."""
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.engine.prepared_templates import Template

    image, masks = make_specimen(seed, size, structures)
    return Template(image_id, prepare_image(image, image_size, source=f"specimen-{seed}"), masks)


def make_posed_specimen(
    seed: int,
    size=128,
    structures=("head", "eye", "scape"),
    shift: float = 0.12,
    scale: float = 0.1,
    colour_jitter: int = 12,
):
    """Like ``make_specimen`` but with a pose: the whole layout is moved by up to
    ``shift`` (fraction of the image side, each axis) and scaled by ``1 +- scale``
    about the image centre; each structure also jitters by +-3 % and its colour by
    +-``colour_jitter`` levels. Same family of shapes and colours, so a structure's
    look is shared while its position varies: copying a template's mask onto another
    specimen overlaps only partly. Returns ``(image, masks)`` as ``make_specimen``.
    """
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx, image = _background(rng, h, w)
    owner = np.full((h, w), -1, dtype=np.int32)
    dy, dx = rng.uniform(-shift, shift, 2)
    zoom = 1.0 + rng.uniform(-scale, scale)
    jitter = rng.uniform(-0.03, 0.03, size=(len(structures), 2))
    for i, name in enumerate(structures):
        shape, colour, (cy, cx), (ry, rx) = SPECIMEN_STRUCTURES[name]
        cy = (0.5 + (cy - 0.5) * zoom + dy + jitter[i, 0]) * h
        cx = (0.5 + (cx - 0.5) * zoom + dx + jitter[i, 1]) * w
        ry, rx = ry * zoom * h, rx * zoom * w
        if shape == "ellipse":
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        shade = np.asarray(colour, np.float32) + rng.integers(-colour_jitter, colour_jitter + 1, 3)
        image[inside] = shade + rng.normal(0, 5, (int(inside.sum()), 3))
        owner[inside] = i
    masks = {name: owner == i for i, name in enumerate(structures)}
    return np.clip(image, 0, 255).astype(np.uint8), masks


def save_colour_template(folder, colours: dict, size=(96, 120), seed: int = 0):
    """A synthetic template photo ``t.png`` and its colour mask ``t_mask.png`` in ``folder``
    ({structure: (r, g, b)}); returns (photo path, mask path, {structure: mask})."""
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    image, masks = make_specimen(seed, size=size, structures=tuple(colours))
    colour = np.zeros(image.shape, np.uint8)
    for name, rgb in colours.items():
        colour[masks[name]] = rgb
    Image.fromarray(image).save(folder / "t.png")
    Image.fromarray(colour).save(folder / "t_mask.png")
    return folder / "t.png", folder / "t_mask.png", masks
