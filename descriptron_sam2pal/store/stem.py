"""Descriptron's image-matching key and the file names around it.

Descriptron matches an annotation file (or an ``images`` entry) to an image
file by a *normalised stem*: the basename, a real image extension removed,
lower-cased, spaces turned into underscores. Only real image extensions are
stripped, so ``"A.FHG149_x"`` keeps its dot (an old hazard: names with dots
were cut).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from descriptron_sam2pal.imaging.io import IMAGE_EXTENSIONS, is_image_file

# `<image path without extension>_final_<unix seconds>.json|.rlejson`
_FINAL_RE = re.compile(r"^(?P<prefix>.+)_final_(?P<ts>\d+)\.(?P<ext>json|rlejson)$", re.IGNORECASE)
# Descriptron's mask PNGs: `<stem>_<label>_<instance>_mask.png`
_MASK_PNG_RE = re.compile(r"^(?P<rest>.+)_mask\.png$", re.IGNORECASE)


def basename(name: str | Path) -> str:
    """The last path component, for both ``/`` and ``\\`` separators (ids written on Windows)."""
    return re.split(r"[\\/]", str(name))[-1]


def strip_image_extension(name: str) -> str:
    """``name`` without a trailing real image extension (any case); anything else is kept."""
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def normalized_stem(name: str | Path) -> str:
    """Descriptron's image matching key: basename, image extension removed, lower case, spaces -> ``_``."""
    return strip_image_extension(basename(name)).lower().replace(" ", "_")


def entry_stem(raw: dict) -> str:
    """Descriptron's matching key of an ``images`` entry (file name, else id)."""
    return normalized_stem(str(raw.get("file_name") or raw.get("id")))


def path_like(image_id: Any) -> bool:
    """An id that is a path (Descriptron's GUI uses the image path without extension)."""
    return isinstance(image_id, str) and ("/" in image_id or "\\" in image_id)


def photo_entries(entries: list[tuple[Any, dict]]) -> list[tuple[Any, dict, list[dict]]]:
    """One photo may have several ``images`` entries in one file (Descriptron's own save writes
    one with the path-like id for masks and one with the bare stem for a line or keypoints).
    For ``entries`` ((id key, entry) in file order): (id key, the entry that stands for the
    photo -- the path-like one, else the first --, all the photo's entries in file order)."""
    groups: dict[str, list[dict]] = {}
    for _, raw in entries:
        groups.setdefault(entry_stem(raw), []).append(raw)
    photos = []
    for key, raw in entries:
        group = groups[entry_stem(raw)]
        if raw is next((r for r in group if path_like(r["id"])), group[0]):
            photos.append((key, raw, group))
    return photos


def parse_final_name(path: str | Path) -> tuple[str, int, str] | None:
    """For ``<prefix>_final_<ts>.json|.rlejson``: (prefix, ts, ext); otherwise None.

    ``prefix`` is the image path without extension (as a string, same folder).
    """
    m = _FINAL_RE.match(basename(path))
    if not m:
        return None
    parent = str(Path(path).parent)
    prefix = m["prefix"] if parent in ("", ".") else str(Path(parent) / m["prefix"])
    return prefix, int(m["ts"]), m["ext"].lower()


def final_name(image_path_without_ext: str | Path, ts: int, ext: str = "json") -> Path:
    """``<image path without extension>_final_<ts>.<ext>`` (Descriptron's per-image file)."""
    return Path(f"{image_path_without_ext}_final_{int(ts)}.{ext}")


def companion_path(path: str | Path) -> Path:
    """The ``.rlejson`` for a ``.json`` and the ``.json`` for a ``.rlejson``."""
    p = Path(path)
    if p.suffix.lower() == ".rlejson":
        return p.with_suffix(".json")
    return p.with_suffix(".rlejson")


def find_image_files(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted), without Descriptron's own mask PNGs.

    A ``<stem>_<label>_<instance>_mask.png`` is skipped only when ``<stem>`` is
    the normalised stem of another image in the folder, so a specimen photo that
    merely ends in ``_mask.png`` is still found.
    """
    folder = Path(folder)
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p)
    )
    stems = {normalized_stem(p.name) for p in files}
    kept = []
    for p in files:
        m = _MASK_PNG_RE.match(p.name)
        if m and _is_mask_png_of(m["rest"], stems):
            continue
        kept.append(p)
    return kept


def _is_mask_png_of(rest: str, stems: set[str]) -> bool:
    """``rest`` = ``<stem>_<label>_<instance>``: does ``<stem>`` belong to one of ``stems``?"""
    rest = rest.lower().replace(" ", "_")
    parts = rest.split("_")
    # label may itself contain underscores: try every split point before `_<instance>`
    if len(parts) < 3 or not parts[-1].isdigit():
        return False
    for i in range(1, len(parts) - 1):
        if "_".join(parts[:i]) in stems:
            return True
    return False


__all__ = [
    "IMAGE_EXTENSIONS",
    "basename",
    "companion_path",
    "final_name",
    "find_image_files",
    "normalized_stem",
    "parse_final_name",
    "strip_image_extension",
]
