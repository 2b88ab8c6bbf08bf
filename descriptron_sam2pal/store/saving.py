"""Saving the store safely: where each changed file goes, what changed on disk since the store
read it, and whether its folders and files can be written at all.

``AnnotationStore.save`` drives these under the store lock (``store/lock.py``): it refuses
(:class:`StoreChangedError`) when :class:`DiskSnapshot` sees another program's change, then
writes each changed document to its :func:`save_targets` entry.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable

from descriptron_sam2pal.store.coco import CocoDocument, StoreError, read_json
from descriptron_sam2pal.store.stem import (
    final_name,
    normalized_stem,
    parse_final_name,
    strip_image_extension,
)


class StoreChangedError(StoreError):
    """The annotation files changed on disk (another program saved) since the store read them."""


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of ``path`` now, or None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class DiskSnapshot:
    """How the store's annotation files (and, per-image folders, the ``_final_`` files of the
    folders it watches) were on disk when it read or last wrote them."""

    def __init__(self) -> None:
        self.stamps: dict[Path, tuple[int, int] | None] = {}  # file -> (mtime_ns, size) as read
        self.watched: dict[Path, set[str]] = {}  # folder -> `_final_` file names known

    def remember(self, path: Path) -> None:
        """Note how ``path`` and its companion (.json / .rlejson) are on disk now."""
        for p in (
            Path(path),
            Path(path).with_suffix(".rlejson" if Path(path).suffix.lower() == ".json" else ".json"),
        ):
            self.stamps[p] = file_stamp(p)
            if p.parent in self.watched:
                self.watched[p.parent].add(p.name)

    def watch(self, folder: Path) -> None:
        """Per-image folders: a new ``_final_`` file there may hold a photo the store writes."""
        folder = Path(folder)
        self.watched[folder] = (
            {p.name for p in folder.iterdir() if parse_final_name(p)} if folder.is_dir() else set()
        )

    def changes(self, stems: set[str]) -> list[str]:
        """What changed on disk since, one line per file: the remembered files modified, removed
        or created, and new ``_final_`` files in a watched folder holding one of ``stems`` (the
        photos about to be written)."""
        problems = []
        for path, before in self.stamps.items():
            now = file_stamp(path)
            if now != before:
                what = "was created" if before is None else "was removed" if now is None else "was modified"
                problems.append(f"{path} {what}")
        own = set(self.stamps)
        for folder, known in self.watched.items():
            if not folder.is_dir():
                continue
            for p in sorted(folder.iterdir()):
                if p.name in known or p in own or not parse_final_name(p):
                    continue
                try:
                    data, _ = read_json(p)
                    theirs = {
                        normalized_stem(i.get("file_name") or str(i.get("id")))
                        for i in data.get("images", [])
                        if isinstance(i, dict)
                    }
                except StoreError:
                    theirs = stems  # unreadable (being written?): assume it matters
                if theirs & stems:
                    problems.append(f"{p} was created")
        return problems


def changed_error(store_path: Path, problems: list[str]) -> StoreChangedError:
    """The refusal :meth:`AnnotationStore.save` raises when :meth:`DiskSnapshot.changes` found some."""
    return StoreChangedError(
        f"{store_path}: changed by another program since it was read here ("
        + "; ".join(problems[:5])
        + ("; ..." if len(problems) > 5 else "")
        + "). Nothing was saved, so that program's work is kept. Open the annotations again "
        "and redo this step (for sam2pal propagate: run the same command again with --resume)."
    )


def save_targets(dirty: list[CocoDocument], per_image: bool) -> dict[int, Path]:
    """id(doc) -> where each changed document is saved: in place (session) or, per image, a new
    `_final_<ts>` pair strictly newer than every existing one for that image (and than now)."""
    if not per_image:
        return {id(d): d.path for d in dirty}
    prefixes = {}
    for doc in dirty:
        parsed = parse_final_name(doc.path)
        prefixes[id(doc)] = parsed[0] if parsed else strip_image_extension(str(doc.path.with_suffix("")))
    newest: dict[str, int] = {}
    for folder in {Path(p).parent for p in prefixes.values()}:
        if folder.is_dir():
            for f in folder.iterdir():
                q = parse_final_name(f)
                if q:
                    newest[q[0]] = max(newest.get(q[0], 0), q[1])
    now = int(time.time())
    return {key: final_name(prefix, max(now, newest.get(prefix, 0) + 1)) for key, prefix in prefixes.items()}


def check_write_permission(folders: set[Path], files: Iterable[Path]) -> None:
    """Raise :class:`StoreError` naming every folder in ``folders`` and existing file in ``files``
    that cannot be written (the store's save would fail there)."""
    problems = [
        f"{f}: no write permission for this folder"
        for f in sorted(folders)
        if f.is_dir() and not os.access(f, os.W_OK | os.X_OK)
    ]
    problems += [f"{p}: read-only file" for p in files if p.exists() and not os.access(p, os.W_OK)]
    if problems:
        raise StoreError(
            "The annotations could not be saved here: "
            + "; ".join(problems)
            + ". Nothing was done. Give yourself write permission (or copy the folder "
            "somewhere writable), then run again."
        )
