"""A project as a host window opens it: its store (a folder of photos with their Descriptron
annotation files, or one annotation file) and the photos a folder holds, directly or in
sub-folders (one per taxon, say). No Qt: the workspace window (``app/``) asks the questions,
this module counts and opens."""

from __future__ import annotations

import os
from pathlib import Path

from descriptron_sam2pal.imaging.io import is_image_file
from descriptron_sam2pal.store import AnnotationStore

#: Sub-folders that hold our own outputs, never specimen photos to open.
OUTPUT_FOLDERS = ("sam2pal_runs",)


def open_project(path: str | os.PathLike, lock_timeout: float) -> AnnotationStore:
    """The store of a folder or an annotation file (``AnnotationStore.open``; ``StoreError``
    when it cannot be read). Its saves wait at most ``lock_timeout`` s for another program
    (a ``sam2pal propagate --write-to``) holding the store's lock, then say so."""
    store = AnnotationStore.open(path)
    store.lock_timeout = lock_timeout
    return store


def photo_count(folder: str | os.PathLike) -> int:
    """Photos directly in ``folder`` (0 when it cannot be read)."""
    try:
        return sum(1 for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))
    except OSError:
        return 0


def image_subfolders(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """(sub-folder, number of photos) for each sub-folder of ``folder`` holding photos
    (photos sorted into one folder per taxon), whether or not ``folder`` holds photos too;
    hidden folders and our output folders are not counted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in OUTPUT_FOLDERS
    ):
        n = photo_count(sub)
        if n:
            found.append((sub, n))
    return found


def photos(n: int) -> str:
    """``1 photo``, ``3 photos``."""
    return f"{n} photo{'s' * (n != 1)}"
