"""Finding the annotation files of a folder, choosing which file each photo is read from, and
finding the image file of each ``images`` entry.

* Per-image saves ``<image path without extension>_final_<ts>.json`` (+ ``.rlejson``): every
  save is read (:func:`load_final_saves`) and each photo comes from the newest file that holds
  it (:func:`choose_newest`, the newest-file-wins rule); the photos a file lost to a newer one
  are left out of its next version (:func:`drop_superseded`).
* A folder session: the only COCO file of the folder (:func:`choose_session_file`).
* Not annotation stores (:func:`sort_folder_files`): Descriptron's folder-session autosaves,
  sam2pal's own predictions files; labelme files are named in a warning (:func:`labelme_files`).
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descriptron_sam2pal.imaging.io import IMAGE_EXTENSIONS
from descriptron_sam2pal.store.coco import CocoDocument, StoreError, hashable, id_key, is_labelme, read_json
from descriptron_sam2pal.store.ours import is_our_predictions
from descriptron_sam2pal.store.saving import file_stamp
from descriptron_sam2pal.store.stem import (
    basename,
    entry_stem,
    find_image_files,
    normalized_stem,
    parse_final_name,
)
from descriptron_sam2pal.store.validation import Warn

log = logging.getLogger(__name__)

AUTOSAVE_SNAPSHOT = "_descriptron_session_masks.json"  # Descriptron's folder-session crash snapshot
AUTOSAVE_KEYPOINTS = "_keypoints.json"  # `<image path without extension>_keypoints.json`


def is_descriptron_autosave(path: Path, folder: Path) -> bool:
    """Files Descriptron's folder session writes on every Next/Prev: not annotation stores of
    their own (reading them as such would hide the final saves, or refuse the folder)."""
    name = path.name
    if name == AUTOSAVE_SNAPSHOT:
        return True
    if name.lower().endswith(AUTOSAVE_KEYPOINTS):
        stem = name[: -len(AUTOSAVE_KEYPOINTS)]
        return any(
            p.is_file()
            for p in folder.glob(glob.escape(stem) + ".*")
            if normalized_stem(p.name) == normalized_stem(stem) and p.suffix.lower() in IMAGE_EXTENSIONS
        )
    return False


def is_labelme_file(path: Path) -> bool:
    """A readable JSON file written by labelme (not COCO)."""
    try:
        data, _ = read_json(path)
    except StoreError:
        return False
    return is_labelme(data)


def labelme_files(folder: Path) -> list[Path]:
    """The labelme files of ``folder`` (the store names them in a warning; they are not read)."""
    return [p for p in sorted(folder.glob("*.json")) if not p.name.startswith(".") and is_labelme_file(p)]


def looks_like_coco(path: Path) -> bool:
    """A readable JSON file with ``images`` or ``annotations``."""
    try:
        data, _ = read_json(path)
    except StoreError:
        return False
    return "images" in data or "annotations" in data


@dataclass
class FolderFiles:
    """The files of a folder that may hold its annotations."""

    finals: dict[str, dict[int, list[Path]]] = field(default_factory=dict)  # prefix -> ts -> its files
    others: list[Path] = field(default_factory=list)  # other .json files (and .rlejson without a .json)


def sort_folder_files(folder: Path) -> FolderFiles:
    """Per-image ``_final_`` saves and other JSON files of ``folder``; sam2pal's predictions files
    and Descriptron's autosaves are left out (the log says so)."""
    files = FolderFiles()
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        parsed = parse_final_name(p)
        if parsed:
            prefix, ts, _ = parsed
            files.finals.setdefault(prefix, {}).setdefault(ts, []).append(p)
        elif is_our_predictions(p):
            log.info(
                "%s: a predictions file written by sam2pal (unreviewed outlines); not read as the "
                "project's annotations",
                p,
            )
        elif is_descriptron_autosave(p, folder):
            log.info(
                "%s: Descriptron's folder-session autosave (keypoints / crash snapshot); not read, "
                "its final save holds the same",
                p,
            )
        elif p.suffix.lower() == ".json" or (
            p.suffix.lower() == ".rlejson" and not p.with_suffix(".json").exists()
        ):
            files.others.append(p)
    return files


def load_final_saves(finals: dict[str, dict[int, list[Path]]], warn: Warn) -> list[CocoDocument]:
    """Every per-image save (its .json, else its .rlejson), oldest first per image. An older save
    that cannot be read is warned about and skipped; the newest must be read (else StoreError)."""
    docs = []
    for prefix in sorted(finals):
        newest = max(finals[prefix])
        for ts in sorted(finals[prefix]):
            files = sorted(finals[prefix][ts], key=lambda q: q.suffix.lower() != ".json")
            try:
                docs.append(CocoDocument.load(files[0]))
            except StoreError as e:
                if ts == newest:
                    raise
                warn(f"{e} (an older file, not read)")
    return docs


def choose_session_file(folder: Path, others: list[Path]) -> tuple[Path | None, list[StoreError]]:
    """The folder-session COCO file among ``others`` (None: there is none) and why the files that
    could not be read were not. Several COCO files, or only unreadable ones, raise StoreError."""
    sessions, invalid = [], []
    for p in others:
        try:
            data, _ = read_json(p)
        except StoreError as e:
            invalid.append(e)
            continue
        if "images" in data or "annotations" in data:
            sessions.append(p)
    if len(sessions) > 1:
        raise StoreError(
            f"{folder}: several COCO annotation files ({', '.join(p.name for p in sessions)}); "
            "open the one you want directly."
        )
    if not sessions and invalid:
        raise invalid[0]
    return (sessions[0] if sessions else None), invalid


def file_age(doc: CocoDocument) -> tuple:
    """How new a file's content is: its ``_final_<ts>``, else its modification time (then name)."""
    parsed = parse_final_name(doc.path)
    ts = parsed[1] if parsed else int(file_stamp(doc.path)[0] // 10**9) if doc.exists else 0
    return ts, doc.path.name


def holds_several_photos(doc: CocoDocument) -> bool:
    """A folder-session save of Descriptron's (its Load Folder shows every photo from one file)."""
    return len({entry_stem(i) for i in doc.data.get("images", []) if isinstance(i, dict)}) > 1


def newest_session_document(docs: list[CocoDocument], folder: Path) -> CocoDocument | None:
    """The newest folder-session save in ``folder`` (a `_final_` file holding several photos), or None:
    where a photo without an annotation file of its own is written, so that session shows it."""
    sessions = [(parse_final_name(d.path)[1], str(d.path), d) for d in docs
                if parse_final_name(d.path) and d.path.parent == folder and holds_several_photos(d)]
    return max(sessions, key=lambda s: s[:2])[2] if sessions else None


@dataclass
class NewestFiles:
    """What :func:`choose_newest` decided."""

    kept: list[CocoDocument]  # the files that won a photo (or hold none)
    owner: dict[str, CocoDocument]  # stem -> the newest file holding that photo
    notes: list[str]  # which file won a photo that several hold
    superseded: dict[int, set]  # id(doc) -> image ids of its photos a newer file owns


def choose_newest(docs: list[CocoDocument]) -> NewestFiles:
    """Several files describe the same photo (folder-session saves, repeated per-image saves):
    each photo is read from the newest file that holds it (:func:`file_age`), and the log says
    which file won."""
    holders: dict[str, list[CocoDocument]] = {}
    names: dict[str, str] = {}
    for doc in docs:
        for raw in doc.data["images"]:
            if isinstance(raw, dict) and "id" in raw:
                stem = entry_stem(raw)
                if doc not in holders.setdefault(stem, []):
                    holders[stem].append(doc)
                names.setdefault(stem, str(raw.get("file_name") or raw["id"]))
    owner: dict[str, CocoDocument] = {}
    notes: list[str] = []
    for stem, held in holders.items():
        winner = max(held, key=file_age)
        owner[stem] = winner
        if len(held) > 1:
            newest_first = sorted(held, key=file_age, reverse=True)
            losers = ", ".join(d.path.name for d in newest_first if d is not winner)
            note = (
                f"{names[stem]}: in {len(held)} annotation files; read from {winner.path} (the newest), "
                f"not from {losers}"
            )
            notes.append(note)
            log.info(note)
    superseded = {
        id(doc): {
            id_key(raw["id"])
            for raw in doc.data["images"]
            if isinstance(raw, dict)
            and "id" in raw
            and hashable(id_key(raw["id"]))
            and owner.get(entry_stem(raw), doc) is not doc
        }
        for doc in docs
    }
    kept = [d for d in docs if any(o is d for o in owner.values()) or not d.data["images"]]
    for doc in docs:
        if doc not in kept:
            log.info("%s: every image in it is in a newer file; not used", doc.path)
    return NewestFiles(kept, owner, notes, superseded)


def drop_superseded(doc: CocoDocument, lost: set) -> None:
    """Before a per-image save: leave out the photos (image ids ``lost``) this file holds but a
    newer file owns, so the new (newest) file cannot bring their older version back."""
    if not lost:
        return
    doc.data["images"] = [
        r
        for r in doc.data["images"]
        if not (isinstance(r, dict) and hashable(id_key(r.get("id"))) and id_key(r.get("id")) in lost)
    ]
    kept = []
    for ann in doc.data["annotations"]:
        image_key = id_key(ann.get("image_id")) if isinstance(ann, dict) else None
        if isinstance(ann, dict) and hashable(image_key) and image_key in lost:
            if "id" in ann and hashable(id_key(ann["id"])):
                doc.rle.pop(id_key(ann["id"]), None)
            continue
        kept.append(ann)
    doc.data["annotations"] = kept
    log.info("%s: %d image(s) held by newer files are not copied into its new version", doc.path, len(lost))


class ImageFileIndex:
    """The image files of ``images`` entries, found as Descriptron finds them (by normalised
    stem); each folder is listed once."""

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, list[Path]]] = {}

    def in_folder(self, folder: Path) -> dict[str, list[Path]]:
        """Normalised stem -> the image files of ``folder`` with that stem."""
        folder = Path(folder)
        if folder not in self._folders:
            index: dict[str, list[Path]] = {}
            if folder.is_dir():
                for p in find_image_files(folder):
                    index.setdefault(normalized_stem(p.name), []).append(p)
            self._folders[folder] = index
        return self._folders[folder]

    def find(self, annotation_file: Path, raw: dict[str, Any], warn: Warn) -> Path | None:
        """The image file of the ``images`` entry ``raw`` of ``annotation_file``: next to that file,
        else in the folder its ``file_name`` or path-like id names; None when not found."""
        names = [raw.get("file_name"), raw.get("id") if isinstance(raw.get("id"), str) else None]
        folders = [annotation_file.parent]
        file_name = raw.get("file_name")
        if isinstance(file_name, str) and basename(file_name) != file_name:
            # a folder part (other tools write "images/a.jpg" or a full path): Descriptron matches
            # by the name alone; look next to the annotation file, then in that folder
            sub = Path(file_name.replace("\\", "/")).parent
            folders.append(sub if sub.is_absolute() else annotation_file.parent / sub)
        if isinstance(raw.get("id"), str):
            id_folder = Path(raw["id"].replace("\\", "/")).parent
            if str(id_folder) not in ("", ".") and id_folder != annotation_file.parent:
                folders.append(id_folder)
        for folder in folders:
            index = self.in_folder(folder)
            for name in names:
                if not isinstance(name, str) or not name:
                    continue
                found = index.get(normalized_stem(name), [])
                exact = [p for p in found if p.name == basename(name)]
                if exact or found:
                    if len(found) > 1 and not exact:
                        warn(
                            f"{annotation_file}: image id {raw['id']!r}: several files match "
                            f"({', '.join(p.name for p in found)}); using {found[0].name}."
                        )
                    return (exact or found)[0]
        return None
