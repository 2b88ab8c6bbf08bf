"""Mask PNGs: colour / indexed masks with a structure -> colour map, and binary masks.

Colour maps are written ``"head=200,0,0;pronotum=0,200,0"`` (RGB) or
``"head=1;eye=2"`` (palette index or grey value).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from descriptron_sam2pal import UserError

Color = tuple[int, ...]


def parse_colors(spec: str) -> dict[str, Color]:
    """``"head=200,0,0;pronotum=0,200,0"`` -> ``{"head": (200, 0, 0), ...}``.

    A single number (``"eye=3"``) is a palette index or grey value. Raises
    UserError for malformed entries, values outside 0..255 (0..65535 for a single
    value), and repeated names or colours.
    """
    out: dict[str, Color] = {}
    for part in (p.strip() for p in re.split(r"[;\n]", spec or "")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"colour map entry {part!r} is not 'name=R,G,B' "
                            "(e.g. 'head=200,0,0;eye=0,0,255')")
        try:
            color = tuple(int(v) for v in value.replace(" ", "").split(","))
        except ValueError:
            raise UserError(f"colour map entry {part!r}: the colour must be integers 'R,G,B' "
                            "or one index") from None
        limit = 65535 if len(color) == 1 else 255
        if len(color) not in (1, 3) or not all(0 <= v <= limit for v in color):
            raise UserError(f"colour map entry {part!r}: give R,G,B in 0..255 or a single index/grey value")
        if name in out:
            raise UserError(f"colour map names {name!r} twice; give each structure one colour")
        if color in out.values():
            other = next(n for n, c in out.items() if c == color)
            raise UserError(f"colour map gives {name!r} and {other!r} the same colour {value}; "
                            "colours must differ")
        out[name] = color
    if not out:
        raise UserError("the colour map is empty; give e.g. 'head=200,0,0;eye=0,0,255'")
    return out


def read_mask_png(path: str | Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise UserError(f"{path}: mask file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read as an image ({exc}); give a PNG mask") from None


def masks_from_color_png(path: str | Path, colors: Mapping[str, Color] | str) -> dict[str, np.ndarray]:
    """{structure: (H, W) bool} of the pixels of each colour (exact match) in a colour or
    indexed mask PNG; a structure whose colour does not occur gets an empty mask.
    RGB colours are compared on the RGB rendering (palettes resolved, alpha ignored);
    single values on the palette index (indexed PNGs) or the grey value."""
    if isinstance(colors, str):
        colors = parse_colors(colors)
    img = read_mask_png(path)
    rgb = None
    raw = None
    out = {}
    for name, color in colors.items():
        if len(color) == 3:
            if rgb is None:
                rgb = np.asarray(img.convert("RGB"))
            out[name] = np.all(rgb == np.asarray(color, rgb.dtype), axis=-1)
        else:
            if raw is None:
                raw = np.asarray(img) if img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1") \
                    else np.asarray(img.convert("L"))
                if raw.ndim == 3:
                    raw = raw[..., 0]
            out[name] = raw == color[0]
    return out


def mask_from_binary_png(path: str | Path) -> np.ndarray:
    """(H, W) bool of a binary mask PNG: foreground where the grey value is at least half
    the image's maximum (0/255, 0/1 and antialiased masks alike); all False when blank.

    Raises UserError for a colour mask (several different colours besides black): read
    as binary, its structures would merge into one."""
    img = read_mask_png(path)
    colours = _distinct_colours(img)
    if len(colours) > 1:
        example = ";".join(f"structure{i + 1}={r},{g},{b}" for i, (r, g, b) in enumerate(colours[:3]))
        raise UserError(
            f"{path}: this is a colour mask with {len(colours)} colours besides black, not a binary "
            f"mask; read as binary its structures would merge into one. Give its colour map instead "
            f"(--colors \"{example}\", your structure names, one per colour), or one "
            "black-and-white mask per structure.")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(img).astype(np.float64)
    elif img.mode in ("LA", "RGBA", "PA") and np.asarray(img.convert("L")).max() == 0:
        values = np.asarray(img.getchannel("A")).astype(np.float64)  # mask drawn in alpha only
    else:
        values = np.asarray(img.convert("L")).astype(np.float64)
    top = values.max() if values.size else 0
    if top <= 0:
        return np.zeros(values.shape[:2], bool)
    return values >= top / 2.0


def _distinct_colours(img: Image.Image, limit: int = 64) -> list[tuple[int, int, int]]:
    """The non-black, non-grey RGB colours of a colour / palette image (at most ``limit``),
    most frequent first; [] for grey images (binary or antialiased grey masks)."""
    if img.mode not in ("RGB", "RGBA", "P", "PA"):
        return []
    rgb = np.asarray(img.convert("RGB")).reshape(-1, 3)
    if rgb.size == 0:
        return []
    values, counts = np.unique(rgb, axis=0, return_counts=True)
    keep = (values.max(axis=1) != values.min(axis=1))         # not black, white or grey
    values, counts = values[keep], counts[keep]
    if len(values) > limit:
        return [tuple(int(v) for v in c) for c in values[np.argsort(-counts)][:limit]]
    # antialiasing between one colour and black gives shades of it: count hues, not shades
    hues = {}
    for colour, count in zip(values, counts):
        key = tuple(np.round(colour / max(int(colour.max()), 1), 1))
        if key not in hues or count > hues[key][1]:
            hues[key] = (tuple(int(v) for v in colour), int(count))
    return [c for c, _ in sorted(hues.values(), key=lambda t: -t[1])]
