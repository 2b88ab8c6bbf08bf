"""The Descriptron store a write goes into, checked before anything is written: the same rules
for ``propagate --write-to`` (``jobs.propagation``) and the Review panel's Write back
(``jobs.write_back``); only the words differ (:class:`TargetNames`: a command-line flag, or the
project open in the window).

* A predictions file or journal of ours is never the user's store (``store.ours``).
* A write never hides anything: a store holding none of the photos (a store of another folder),
  one ``_final_`` save that lacks some of the photos or is not the newest file of one of them,
  and a folder of per-image files with a photo outside it are refused, naming the files and
  folders and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from descriptron_sam2pal import UserError


@dataclass(frozen=True)
class TargetNames:
    """How the messages name the store and what the user does instead."""

    store: str  # "--write-to STORE" | "the open project STORE"
    photos: str  # what the photos are doing: "being segmented" | "with accepted outlines"
    nothing_done: str  # "Nothing was done." | "Nothing was written."
    use_folder: str  # instead of one file lacking photos, "{folder}" for its folder
    use_newest: str  # instead of an older file, "{folder}" for its folder
    give_store: str  # how to give the right store, said in full
    per_folder: str  # what to do with photos in several folders, said in full
    not_a_store: str  # after "... is a predictions file written by sam2pal, not the project's annotations; "


def write_to_names(write_to: Any) -> TargetNames:
    """The command line's words (``propagate --write-to``)."""
    return TargetNames(
        store=f"--write-to {write_to}",
        photos="being segmented",
        nothing_done="Nothing was done.",
        use_folder="Give the folder instead (--write-to {folder}) to merge into every photo's newest "
        "annotations",
        use_newest="Give the folder (--write-to {folder}) or the newest file",
        give_store="Give the store of these photos (e.g. --write-to with their folder)",
        per_folder="Merge each folder's photos into that folder",
        not_a_store="give the Descriptron store of these photos (its folder or its annotation file)",
    )


def open_project_names(store_path: Any) -> TargetNames:
    """The Review panel's words (Write back into the project open in the window)."""
    return TargetNames(
        store=f"the open project {store_path}",
        photos="with accepted outlines",
        nothing_done="Nothing was written; your review is kept.",
        use_folder="Open the folder instead ({folder}) to write into every photo's newest annotations",
        use_newest="Open the folder ({folder}) or the newest file, then write back",
        give_store="Open the project of these photos (their folder or annotation file), then write back",
        per_folder="Open each folder in turn and write back its photos",
        not_a_store="open the Descriptron project of these photos (their folder or annotation file), "
        "then write back",
    )


def check_not_our_file(paths: Sequence[Any], names: TargetNames) -> None:
    """UserError when one of ``paths`` (a store, its files) is a predictions file or journal of
    ours: our outputs are never read or written as the user's annotations."""
    from descriptron_sam2pal.store.ours import our_file_kind

    for p in paths:
        if p is not None and our_file_kind(Path(p).expanduser()):
            raise UserError(
                f"{names.store} is a predictions file written by sam2pal, not the project's annotations; "
                + names.not_a_store
            )


def target_path(item: Any) -> str | None:
    """The photo path of a target (a path, or anything with ``.path``), or None."""
    path = getattr(item, "path", item if isinstance(item, (str, os.PathLike)) else None)
    return str(path) if path is not None else None


def check_store_holds(store: Any, where: Any, targets: Sequence[Any], names: TargetNames) -> None:
    """A write never hides anything: UserError (before any work) when the store at ``where``

    * is one ``_final_`` save (one photo's file, or a folder session's) and some photos are not
      in it: a new file for them would start from nothing and hide their own annotations;
    * is one ``_final_`` save but not the newest file of a photo it holds: the new file would
      bring back the older version;
    * holds none of the photos although it holds others (a store of another folder);
    * is a folder of per-image files and a photo lies outside it."""
    from descriptron_sam2pal.store import PER_IMAGE, AnnotationStore
    from descriptron_sam2pal.store.merge import find_image

    paths = [p for p in map(target_path, targets) if p]
    if not paths:
        return
    found = {p: find_image(store, None, p) for p in paths}
    missing = [p for p, r in found.items() if r is None]
    where = Path(where).expanduser()
    photos_folders = sorted({str(Path(p).parent) for p in paths})
    if store.images and len(missing) == len(paths):
        store_folder = where if where.is_dir() else where.parent
        raise UserError(
            f"{names.store} holds none of the {len(paths)} photo(s) {names.photos}: its photos are in "
            f"{store_folder}, these are in {', '.join(photos_folders)}. {names.nothing_done} "
            + names.give_store
        )
    if store.mode != PER_IMAGE:
        return
    if where.is_file():
        if missing:
            shown = ", ".join(Path(p).name for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise UserError(
                f"{names.store} is one Descriptron save; it does not hold {len(missing)} of the photos "
                f"({shown}), whose annotations are in their own files, and writing new files for them "
                f"would hide those. {names.nothing_done} " + names.use_folder.format(folder=where.parent)
            )
        newest = AnnotationStore.open(where.parent)
        for p, record in found.items():
            current = find_image(newest, None, p)
            if (
                current is not None
                and current.source is not None
                and record.source is not None
                and Path(current.source).resolve() != Path(record.source).resolve()
            ):
                raise UserError(
                    f"{names.store} is not the newest annotation file of {Path(p).name}: {current.source} is "
                    f"newer, and a new file made from the older one would hide it. {names.nothing_done} "
                    + names.use_newest.format(folder=where.parent)
                )
        return
    if missing:
        shown = ", ".join(str(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise UserError(
            f"{names.store} is a folder of per-image annotation files, but {len(missing)} photo(s) are not "
            f"in it ({shown}): their annotations would be written next to them, outside the store. "
            f"{names.nothing_done} {names.per_folder}"
        )
