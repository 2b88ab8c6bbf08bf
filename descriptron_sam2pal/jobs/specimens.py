"""Which photos of a folder are specimens: one rule for the command line and the GUI."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from descriptron_sam2pal import UserError
from descriptron_sam2pal.store.stem import find_image_files


def specimen_images(folder: str | Path, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """The specimen photos directly in ``folder`` (sorted; Descriptron's own mask PNGs left
    out), without ``exclude`` (e.g. the templates). UserError when there is none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"{folder} is not a folder of images")
    skip = {Path(p).resolve() for p in exclude if p}
    images = [p for p in find_image_files(root) if p.resolve() not in skip]
    if not images:
        raise UserError(f"no specimen images (.jpg .png .tif .bmp .webp) in {folder}"
                        + (" besides the templates" if skip else ""))
    return images
