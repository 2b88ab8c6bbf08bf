"""Which photos of a folder are specimens, and which are one specimen for Descriptron: one rule
for the command line and the GUI.

Descriptron knows a photo by its *normalised stem* (``store.stem.normalized_stem``: the name
without its image extension, lower case, spaces as underscores): it names the photo's
annotation files ``<folder>/<name without extension>_final_<ts>.json`` and matches the
``images`` entries of a file to the photo on screen by that stem. Two photos of one folder
with the same stem (``a.png`` and ``a.jpg``; ``Bee 1.jpg`` and ``bee_1.jpg``) therefore share
their annotation files and get each other's outlines; they are refused before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from descriptron_sam2pal import UserError
from descriptron_sam2pal.store.stem import find_image_files, normalized_stem


def check_distinct_specimens(paths: Iterable[str | Path]) -> None:
    """UserError naming both files when two photos of one folder are one specimen for
    Descriptron (see the module docstring)."""
    seen: dict[tuple[Path, str], Path] = {}
    for item in paths:
        p = Path(item).expanduser()
        key = (p.parent.absolute(), normalized_stem(p.name))
        other = seen.setdefault(key, p)
        if other is not p and other.absolute() != p.absolute():
            raise UserError(
                f"{other} and {p} are one specimen for Descriptron: it names their annotation files and "
                f'matches them by the same name "{key[1]}" (extension, case and spaces/underscores ignored), '
                f"so their outlines would mix. Nothing was done. Rename one of them (e.g. "
                f"{p.with_name(p.stem.replace(' ', '_') + '_2' + p.suffix).name}) and run again"
            )


def specimen_images(folder: str | Path, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """The specimen photos directly in ``folder`` (sorted; Descriptron's own mask PNGs left
    out), without ``exclude`` (e.g. the templates). UserError when there is none, or when two
    of the folder's photos are one specimen for Descriptron (``check_distinct_specimens``)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"{folder} is not a folder of images")
    skip = {Path(p).resolve() for p in exclude if p}
    found = find_image_files(root)
    check_distinct_specimens(found)
    images = [p for p in found if p.resolve() not in skip]
    if not images:
        raise UserError(
            f"no specimen images (.jpg .png .tif .bmp .webp) in {folder}"
            + (" besides the templates" if skip else "")
        )
    return images
