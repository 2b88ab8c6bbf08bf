"""One Descriptron COCO annotation file: its ``.json`` and ``.rlejson`` pair.

The ``.json`` is the document (every field kept, key order included). The
``.rlejson`` companion is the same file except that some annotations carry
RLE instead of polygons (masks with holes); on reading, its segmentation is
preferred for the annotations it has, on writing it is regenerated from the
document plus those RLE segmentations. A mask is never changed by a save: an
RLE the ``.json`` holds (another tool's) stays RLE, uncompressed (see
:meth:`CocoDocument.make_descriptron_safe`). Writing is atomic (temporary file in the
same folder, then ``os.replace``), optionally after copying the previous
version to ``<file name>.bak-<YYYYmmdd-HHMMSS>``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from descriptron_sam2pal import UserError
from descriptron_sam2pal.atomic import copy_permissions
from descriptron_sam2pal.imaging.masks import (
    has_hole,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_mask,
    segmentation_to_mask,
)
from descriptron_sam2pal.store.stem import companion_path

log = logging.getLogger(__name__)

DEFAULT_INDENT = 2

# Top-level key written with the same value into both files of a pair by every save of ours:
# a reader can tell that a .json and its .rlejson belong together (or that a save was cut
# off between the two renames). Descriptron ignores unknown top-level keys.
PAIR_KEY = "sam2pal_pair"


class StoreError(UserError):
    """A fatal problem with an annotation store; the message names the file and entry and says what to do."""


def read_json(path: Path) -> tuple[dict, int | str | None]:
    """Parse a COCO JSON file: (top-level dict, the indent it was written with)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise StoreError(f"{path}: file not found. Check the path.") from None
    except UnicodeDecodeError as e:
        raise StoreError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start}). "
                         "Open a Descriptron .json/.rlejson annotation file.") from None
    except OSError as e:
        raise StoreError(f"{path}: cannot be read ({e.strerror or e}). Check permissions.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). "
                         "Fix the file, or restore a backup (*.bak-*) or an older _final_ file.") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a COCO object with \"images\", \"annotations\" and "
                         f"\"categories\", found a JSON {type(data).__name__}.")
    return data, detect_indent(text)


def detect_indent(text: str) -> int | str | None:
    """The indentation of a JSON text (None for a one-line file), so rewrites diff cleanly."""
    lines = text.lstrip("\ufeff").splitlines()
    if len(lines) < 2:
        return None
    second = lines[1]
    stripped = second.lstrip(" \t")
    lead = second[: len(second) - len(stripped)]
    if not lead:
        return DEFAULT_INDENT
    return "\t" if lead[0] == "\t" else len(lead)


def check_top_level(data: dict, path: Path) -> None:
    """The three COCO lists exist and are lists; ``"images": []`` with annotations is refused.

    Missing ``annotations``/``categories`` are created empty (a new store); a
    missing or empty ``images`` with annotations is an error: those annotations
    could not be attached to anything (SAM2-PAL once loaded nothing, silently).
    """
    if is_labelme(data):
        raise StoreError(labelme_message(path))
    if "images" not in data:
        raise StoreError(f"{path}: no \"images\" list; this is not a COCO annotation file. "
                         "Open a Descriptron .json/.rlejson file.")
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise StoreError(f"{path}: \"{key}\" must be a list, found {type(data[key]).__name__}.")
    data.setdefault("annotations", [])
    data.setdefault("categories", [])
    if not data["images"] and data["annotations"]:
        raise StoreError(f"{path}: \"images\" is empty but the file has {len(data['annotations'])} "
                         "annotation(s), which point at no image. Restore the image entries "
                         "(id, file_name, height, width), e.g. from a backup or an older _final_ file.")


def is_labelme(data: Any) -> bool:
    """A labelme annotation file ({"shapes": [...], "imagePath": ...}), not COCO."""
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) and "images" not in data


def labelme_message(path: Path) -> str:
    return (
        f'{path}: this is a labelme file ("shapes", "imagePath"), not a COCO annotation file, so its '
        "outlines are not read. Convert it to COCO (e.g. `labelme2coco`, or open the image in Descriptron "
        "and save), or give the outlines as mask PNGs (--template-mask)."
    )


class CocoDocument:
    """One annotation file pair, loaded: ``data`` (the .json document, mutated in place) and
    ``rle`` (annotation id -> segmentation from the ``.rlejson``, preferred for masks)."""

    def __init__(self, path: Path, data: dict, *, indent: int | str | None = DEFAULT_INDENT,
                 rle: dict[Any, Any] | None = None, exists: bool = False):
        self.path = Path(path)          # the .json (written even if only a .rlejson was read)
        self.data = data
        self.indent = indent
        self.rle: dict[Any, Any] = rle if rle is not None else {}
        self.exists = exists            # read from disk (so a save replaces files, keeping backups)
        self.dirty = False
        self.warnings: list[str] = []
        # The document is a .rlejson (its .json missing or older): its RLE are the companion's,
        # so the .json written from it gets polygons (see make_descriptron_safe).
        self.read_from_rlejson = False

    @property
    def rlejson_path(self) -> Path:
        return companion_path(self.path)

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> CocoDocument:
        """Read ``path`` (.json or .rlejson) and its companion. The .json is the document;
        the .rlejson supplies segmentations (it keeps holes)."""
        path = Path(path)
        if path.suffix.lower() == ".rlejson":
            json_path, rle_path = companion_path(path), path
        else:
            json_path, rle_path = path, companion_path(path)
        if not json_path.exists() and not rle_path.exists():
            raise StoreError(f"{path}: file not found. Check the path.")
        if json_path.exists():
            data, indent = read_json(json_path)
            check_top_level(data, json_path)
            doc = cls(json_path, data, indent=indent, exists=True)
            if rle_path.exists():
                rle_data, rle_indent = read_json(rle_path)
                check_top_level(rle_data, rle_path)
                json_token, rle_token = data.get(PAIR_KEY), rle_data.get(PAIR_KEY)
                if json_token == rle_token:
                    doc._merge_rlejson(rle_data, rle_path)
                elif rle_token is not None:
                    # We write the .rlejson first and the .json last: a .rlejson of ours that does not
                    # belong to the .json is a newer save cut off before its .json was renamed. The
                    # .rlejson is a complete document, so it is the (new) version read.
                    doc = cls(json_path, rle_data, indent=rle_indent, exists=True)
                    doc.read_from_rlejson = True
                    doc.dirty = True
                    doc.warn(
                        f"{rle_path}: a save was interrupted between {rle_path.name} and {json_path.name} "
                        f"(they are not a pair); the newer {rle_path.name} is read and both files are "
                        "rewritten on the next save. Check the masks of this file."
                    )
                else:
                    doc.warn(
                        f"{rle_path}: does not belong to {json_path.name} ({json_path.name} was saved by "
                        f"SAM2-PAL, {rle_path.name} was not, or by another save); its RLE masks are not "
                        f"used, the polygons of {json_path.name} are (holes filled). Restore the matching "
                        f"{rle_path.name} from a *.bak-* file, or save again to rewrite it."
                    )
                    doc.dirty = True
            elif data.get(PAIR_KEY) is not None:
                doc.warn(
                    f"{json_path}: its companion {rle_path.name} is missing (deleted or moved?); masks with "
                    f"holes are read from the polygons (holes filled). Restore {rle_path.name}, or save "
                    "again to rewrite it."
                )
        else:
            # Only the .rlejson is there: it is the document; the .json is written on save.
            data, indent = read_json(rle_path)
            check_top_level(data, rle_path)
            doc = cls(json_path, data, indent=indent, exists=True)
            doc.read_from_rlejson = True
            doc.warn(f"{rle_path}: its companion {json_path.name} is missing; it will be written on save.")
        if not doc.data["images"]:
            doc.warn(f"{path}: \"images\" is empty; there is nothing to segment in this file.")
        return doc

    def _merge_rlejson(self, rle_data: dict, rle_path: Path) -> None:
        """Take the .rlejson's segmentation for each annotation of the .json (matched by id).

        Annotations only in the .rlejson are added to the document (with a warning) so
        nothing the user saved is lost; other differences: the .json wins.
        """
        by_id: dict[Any, dict] = {}
        dup: set = set()
        for ann in rle_data.get("annotations", []):
            if isinstance(ann, dict) and "id" in ann:
                key = id_key(ann["id"])
                if key in by_id:
                    dup.add(key)
                by_id[key] = ann
        json_ids = {id_key(a.get("id")) for a in self.data["annotations"] if isinstance(a, dict)}
        for key in sorted(dup, key=str):
            self.warn(f"{rle_path}: annotation id {key!r} occurs more than once; its .rlejson "
                      f"segmentation is not used (the {self.path.name} polygons are).")
        for ann in self.data["annotations"]:
            if not isinstance(ann, dict) or "id" not in ann:
                continue
            key = id_key(ann["id"])
            if key in by_id and key not in dup and "segmentation" in by_id[key]:
                if by_id[key]["segmentation"] != ann.get("segmentation"):
                    self.rle[key] = by_id[key]["segmentation"]
        extra = [a for k, a in by_id.items() if k not in json_ids and k not in dup]
        for ann in extra:
            self.warn(f"{rle_path}: annotation id {ann['id']!r} is not in {self.path.name}; "
                      f"kept (it will be written to both files on save).")
            self.data["annotations"].append(ann)
        if extra:
            self.dirty = True
        if [i.get("id") for i in rle_data.get("images", []) if isinstance(i, dict)] != \
                [i.get("id") for i in self.data["images"] if isinstance(i, dict)]:
            self.warn(f"{rle_path}: its images differ from {self.path.name}; {self.path.name} is used.")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)

    def segmentation(self, ann: dict) -> Any:
        """The segmentation to decode for ``ann``: the .rlejson one where there is one."""
        if "id" in ann:
            key = id_key(ann["id"])
            if key in self.rle:
                return self.rle[key]
        return ann.get("segmentation")

    # -- writing ---------------------------------------------------------------------------

    def rlejson_data(self) -> dict:
        """The .rlejson document: the .json with the RLE segmentations swapped in (same key order)."""
        anns = []
        for ann in self.data["annotations"]:
            if isinstance(ann, dict) and "id" in ann and id_key(ann["id"]) in self.rle:
                ann = {**ann, "segmentation": self.rle[id_key(ann["id"])]}
            anns.append(ann)
        return {k: (anns if k == "annotations" else v) for k, v in self.data.items()}

    def make_descriptron_safe(self) -> None:
        """Make every mask annotation readable by Descriptron 2.8.2 without changing a pixel:
        never compressed RLE (its Load Annotations crashes on it, and on a list of RLEs).

        An RLE the ``.json`` holds (a COCO file of another tool, often ``iscrowd: 1``) stays
        RLE in both files: uncompressed RLE is kept exactly as it is; compressed RLE (counts
        as a string) or a list of RLEs becomes the *uncompressed* RLE of the same pixels,
        the one RLE form Descriptron's Load Annotations decodes (holes included; polygons
        would fill them). Its View Predictions draws polygons only, so it shows such an
        annotation blank: an accepted cost, the mask itself is never changed. Compressed
        RLE in the ``.rlejson`` becomes uncompressed too. Only a document read from a
        ``.rlejson`` (its ``.json`` missing, or a save cut off between the two) gets polygons
        in the ``.json`` and the exact RLE in the ``.rlejson``, as a Descriptron save has."""
        sizes = {id_key(i["id"]): [i.get("height"), i.get("width")] for i in self.data["images"]
                 if isinstance(i, dict) and hashable(id_key(i.get("id")))}
        for ann in self.data["annotations"]:
            if not isinstance(ann, dict):
                continue
            seg = ann.get("segmentation")
            key = id_key(ann["id"]) if "id" in ann else None
            if _is_rle(seg):
                image_key = id_key(ann.get("image_id"))
                size = (seg if isinstance(seg, dict) else seg[0]).get("size")
                if not hashable(image_key) or sizes.get(image_key) != size:
                    continue    # does not fit its image (already reported): the user's to fix, kept as is
                if not self.read_from_rlejson and _is_uncompressed(seg):
                    continue    # the form Descriptron reads: kept exactly, field for field
                mask = self._decode_rle(seg, ann)
                if mask is None:
                    continue
                if not self.read_from_rlejson:
                    ann["segmentation"] = uncompressed_rle(mask)
                    continue
                polygons = mask_polygons(mask)
                ann["segmentation"] = polygons
                if key is not None and hashable(key) and key not in self.rle and needs_rle(mask, polygons):
                    self.rle[key] = uncompressed_rle(mask)
                elif key is None and has_hole(mask):
                    self.warn(f"{self.path}: an annotation without id had an RLE mask with a hole; it is "
                              "written as polygons only (hole filled). Give it an id in Descriptron.")
        for key, seg in list(self.rle.items()):
            if _is_rle(seg) and not _is_uncompressed(seg):
                mask = self._decode_rle(seg, {"id": key})
                if mask is not None:
                    self.rle[key] = uncompressed_rle(mask)

    def _decode_rle(self, seg: Any, ann: dict) -> np.ndarray | None:
        parts = seg if isinstance(seg, list) else [seg]
        try:
            size = parts[0]["size"]
            return np.asarray(segmentation_to_mask(seg, int(size[0]), int(size[1])), dtype=bool)
        except Exception as e:  # noqa: BLE001 - kept as it is: an undecodable entry is the user's to fix
            self.warn(f"{self.path}: annotation id {ann.get('id')!r}: its RLE cannot be decoded ({e}); "
                      "written unchanged. Redraw or remove it in Descriptron.")
            return None

    def write(self, json_path: Path | None = None, *, backup: bool) -> list[Path]:
        """Write .json + .rlejson (to ``json_path`` or ``self.path``) atomically as one pair
        (see :func:`write_pair`): Descriptron-safe segmentations (see
        :meth:`make_descriptron_safe`), a fresh :data:`PAIR_KEY` in both, the ``.rlejson``
        renamed first and the ``.json`` last. Returns [.json, .rlejson]."""
        json_path = Path(json_path) if json_path is not None else self.path
        self.make_descriptron_safe()
        previous_token = self.data.get(PAIR_KEY)
        self.data[PAIR_KEY] = uuid.uuid4().hex
        try:
            write_pair(
                [(companion_path(json_path), self.rlejson_data()), (json_path, self.data)],
                indent=self.indent, backup=backup)
        except BaseException:
            if previous_token is None:
                self.data.pop(PAIR_KEY, None)
            else:
                self.data[PAIR_KEY] = previous_token
            raise
        self.path = json_path
        self.exists = True
        self.dirty = False
        self.read_from_rlejson = False  # its .json is written now
        return [json_path, companion_path(json_path)]


def hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _is_rle(seg: Any) -> bool:
    if isinstance(seg, dict):
        return "counts" in seg
    return isinstance(seg, list) and bool(seg) and all(isinstance(p, dict) and "counts" in p for p in seg)


def _is_uncompressed(seg: Any) -> bool:
    return isinstance(seg, dict) and isinstance(seg.get("counts"), list)


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """The polygons Descriptron reads for ``mask`` (float coordinates, in its pixel frame)."""
    return [[float(v) for v in p] for p in mask_to_polygons(mask)]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """``mask`` as uncompressed RLE (plain int lists), the form Descriptron 2.8.2 reads."""
    rle = mask_to_rle(mask)
    return {"size": [int(v) for v in rle["size"]], "counts": [int(c) for c in rle["counts"]]}


def needs_rle(mask: np.ndarray, polygons: list) -> bool:
    """Polygons alone would not give back ``mask`` (a hole, or a shape they cannot hold)."""
    return has_hole(mask) or not np.array_equal(
        np.asarray(polygons_to_mask(polygons, *mask.shape), dtype=bool), mask)


def id_key(value: Any) -> Any:
    """Ids as dict keys: 3.0 is the same id as 3; a malformed (list/dict) id gets a hashable
    stand-in that equals no real id."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, dict)):
        return ("<malformed id>", json.dumps(value, sort_keys=True, default=repr))
    return value


def dumps(data: dict, indent: int | str | None) -> str:
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


def backup_path(path: Path) -> Path:
    """``<file name>.bak-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if taken): never an ``*.json``,
    so no tool mistakes a backup for a current annotation file."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    return candidate


def write_pair(files: list[tuple[Path, dict]], *, indent: int | str | None, backup: bool) -> list[Path]:
    """Write several JSON files as one step: all or nothing, as far as a file system allows.

    Everything is serialised first (a failure changes nothing), then written by
    :func:`write_streams`.
    """
    texts = []
    for path, data in files:
        try:
            texts.append((Path(path), dumps(data, indent)))
        except (TypeError, ValueError) as e:
            raise StoreError(f"{path}: cannot be written, the annotations contain a value that is "
                             f"not JSON ({e}). Nothing was changed.") from e
    return write_streams([(path, lambda f, text=text: f.write(text)) for path, text in texts], backup=backup)


def write_streams(files: list[tuple[Path, Callable[[TextIO], object]]], *, backup: bool) -> list[Path]:
    """Write several files as one step, each by a function writing its text to a stream:

    1. call each function on a temporary file in its target folder and fsync;
    2. copy each existing target to a backup (if ``backup``);
    3. ``os.replace`` each temporary file onto its target. If a later replace fails,
       targets already replaced are restored from their previous content.
    Temporary files never remain. Returns the written paths.
    """
    files = [(Path(path), write) for path, write in files]
    temps: list[Path] = []
    previous: dict[Path, bytes | None] = {}
    replaced: list[Path] = []
    backups: list[Path] = []
    try:
        for path, write in files:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append(Path(tmp))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            copy_permissions(path, tmp)   # the mode and group of the file replaced, else the umask's
        for path, _ in files:
            previous[path] = path.read_bytes() if path.exists() else None
            if backup and previous[path] is not None:
                backups.append(backup_path(path))
                shutil.copy2(path, backups[-1])
        for (path, _), tmp in zip(files, temps):
            os.replace(tmp, path)
            replaced.append(path)
    except OSError as e:
        restored = _restore(replaced, previous)
        if restored:  # nothing changed: the backups of this attempt are not needed
            for b in backups:
                b.unlink(missing_ok=True)
        what = "Nothing was changed." if not replaced or restored else (
            "Some files were replaced and could not be restored: " + ", ".join(map(str, replaced))
            + "; their previous versions are in the *.bak-* files next to them.")
        raise StoreError(f"{e.filename or files[0][0]}: could not save ({e.strerror or e}). {what} "
                         "Free disk space or check write permission on the folder, then save again.") from e
    finally:
        for tmp in temps:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            except OSError:  # pragma: no cover - best effort cleanup
                log.warning("could not remove temporary file %s", tmp)
    return [p for p, _ in files]


def _restore(replaced: list[Path], previous: dict[Path, bytes | None]) -> bool:
    """Put back the previous content of ``replaced`` files; True if all were restored."""
    ok = True
    for path in replaced:
        try:
            old = previous.get(path)
            if old is None:
                path.unlink()
            else:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                with os.fdopen(fd, "wb") as f:
                    f.write(old)
                copy_permissions(path, tmp)
                os.replace(tmp, path)
        except OSError:
            ok = False
    return ok
