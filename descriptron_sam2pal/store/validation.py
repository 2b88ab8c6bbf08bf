"""Checking what Descriptron's files say before the store uses it: category and image
entries, image sizes against the image files, segmentations (polygons and RLE), structure
names. Problems that leave the data usable are warnings (passed to ``warn``, each naming the
file and the entry); those that would make the store mislabel data raise :class:`StoreError`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from descriptron_sam2pal.imaging.io import read_image_size
from descriptron_sam2pal.store.coco import CocoDocument, StoreError, id_key
from descriptron_sam2pal.store.stem import basename

if TYPE_CHECKING:
    from descriptron_sam2pal.store.store import ImageRecord

Warn = Callable[[str], None]  # where a check reports a problem that leaves the data usable

TRASH = "trash"  # Descriptron drops this category on save; never a structure
KEYPOINT_SUPERCATEGORY = "keypoints"
POLYGON_BOUNDS_TOLERANCE = 1.0  # px a polygon vertex may lie outside the image before we warn


def positive_int(value: Any) -> int | None:
    """``value`` as an int when it is a whole number > 0 (a usable height or width), else None."""
    if isinstance(value, bool) or not is_number(value) or int(value) != value or value <= 0:
        return None
    return int(value)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool and not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for warnings that quote a bad entry."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_structure_category(entry: dict | None) -> bool:
    """A category entry that can name a mask structure (not Trash, not a keypoint category)."""
    if entry is None:
        return True
    return (
        str(entry.get("name", "")).lower() != TRASH and entry.get("supercategory") != KEYPOINT_SUPERCATEGORY
    )


def check_structure_name(name: str) -> str:
    """``name`` stripped; ValueError when empty, :class:`StoreError` for Descriptron's Trash."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"structure name must be a non-empty string, got {name!r}")
    name = name.strip()
    if name.lower() == TRASH:
        raise StoreError('"Trash" is Descriptron\'s discard category, not a structure; choose another name.')
    return name


def usable_categories(doc: CocoDocument, warn: Warn) -> dict[Any, dict]:
    """id_key(category id) -> entry for the categories of ``doc`` that can label annotations;
    the others are warned about (kept in the file). Raises :class:`StoreError` when one id
    names two categories (its annotations could not be labelled safely)."""
    by_id: dict[Any, dict] = {}
    for i, cat in enumerate(doc.data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            warn(f"{doc.path}: category #{i} ({cat!r}) has no id or name; kept in the file, not used.")
            continue
        key = id_key(cat["id"])
        if not isinstance(key, int) or isinstance(key, bool):
            warn(
                f'{doc.path}: category "{cat["name"]}" has id {cat["id"]!r}, not an integer; '
                "kept in the file, not used."
            )
            continue
        if key in by_id:
            other = by_id[key]["name"]
            if other != cat["name"]:
                raise StoreError(
                    f'{doc.path}: category id {key!r} is used by both "{other}" and "{cat["name"]}", so '
                    "its annotations cannot be labelled safely. Give one of them a new id in the file "
                    "(and its annotations' category_id), then open it again."
                )
            warn(
                f'{doc.path}: category "{cat["name"]}" (id {key!r}) is listed twice; '
                "kept as it is, treated as one."
            )
            continue
        by_id[key] = cat
    return by_id


def usable_image_entries(doc: CocoDocument, warn: Warn) -> list[tuple[Any, dict]]:
    """(id_key(id), entry) for the ``images`` entries of ``doc`` that can be used, in file
    order; entries without a usable id, and repeats of an id, are warned about."""
    valid: list[tuple[Any, dict]] = []
    seen: dict[Any, dict] = {}
    for i, raw in enumerate(doc.data["images"]):
        if not isinstance(raw, dict) or "id" not in raw:
            warn(f"{doc.path}: images entry #{i} ({short_repr(raw)}) has no id; kept in the file, not used.")
            continue
        key = id_key(raw["id"])
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            warn(
                f"{doc.path}: images entry #{i} has id {short_repr(key)}, neither a string nor an "
                "integer; kept in the file, not used."
            )
            continue
        if key in seen:
            warn(
                f"{doc.path}: image id {key!r} is listed twice ({seen[key].get('file_name')!r} and "
                f"{raw.get('file_name')!r}); its annotations go to the first."
            )
            continue
        seen[key] = raw
        valid.append((key, raw))
    return valid


def labelled_annotations(doc: CocoDocument, warn: Warn) -> Iterator[tuple[str, dict]]:
    """(label for warnings, entry) for each ``annotations`` entry of ``doc`` that is an object,
    in file order; the others, entries without an id and ids used twice are warned about."""
    seen_ids: set = set()
    for i, ann in enumerate(doc.data["annotations"]):
        if not isinstance(ann, dict):
            warn(f"{doc.path}: annotations entry #{i} is not an object ({short_repr(ann)}); kept, not used.")
            continue
        label = f"annotation id {ann['id']!r}" if "id" in ann else f"annotation #{i} (no id)"
        if "id" not in ann:
            warn(f"{doc.path}: {label}; kept, but give it an id in Descriptron.")
        else:
            key = id_key(ann["id"])
            if key in seen_ids:
                warn(f"{doc.path}: annotation id {key!r} is used more than once; all are kept.")
            seen_ids.add(key)
        yield label, ann


def check_category_reference(
    annotation_file: Path, label: str, ann: dict, cat: dict | None, warn: Warn
) -> None:
    """Warn when an annotation has no ``category_id`` or one its file does not list (``cat`` None)."""
    if cat is None and "category_id" in ann:
        warn(
            f"{annotation_file}: {label} has category_id {ann.get('category_id')!r}, which is not in "
            '"categories"; kept in the file, not used as a structure.'
        )
    elif "category_id" not in ann:
        warn(f"{annotation_file}: {label} has no category_id; kept in the file, not used as a structure.")


def mask_problem(where: str, seg: Any, h: int | None, w: int | None, warn: Warn) -> str | None:
    """Why a mask annotation's segmentation ``seg`` cannot be used (warned about, ``where`` names
    the file and the entry), or None; usable oddities are warned about too."""
    error, warning = segmentation_problem(seg, h, w)
    if warning:
        warn(f"{where}: {warning}.")
    if error:
        problem = f"{where}: {error}"
        warn(problem + "; kept in the file, its mask is not used.")
        return problem
    return None


def check_image_entry(annotation_file: Path, record: ImageRecord, warn: Warn) -> None:
    """Warn when the image file of an ``images`` entry (read from ``annotation_file``) was not
    found, or when the entry has no valid height/width; then the image file's size is written
    into the entry (saved with the next save) where the image can be read."""
    if record.path is None:
        name = record.file_name or "?"
        where = (
            f"in {annotation_file.parent} nor in the folder its file_name names ({name!r}; Descriptron uses "
            f"the name {basename(name)!r} alone)"
            if basename(name) != name
            else f"in {annotation_file.parent}"
        )
        warn(
            f"{annotation_file}: image id {record.id!r} ({name}): image file not found "
            f"{where}. Its masks can be read, but it cannot be shown, trained on or "
            "predicted; put the image next to the annotation file."
        )
    if record.height is None or record.width is None:
        size = None
        if record.path is not None:
            try:
                size = read_image_size(record.path)
            except Exception:  # noqa: BLE001 - reported just below
                size = None
        if size is None:
            warn(
                f"{annotation_file}: image id {record.id!r} has no valid height/width "
                f"({record.raw.get('height')!r} x {record.raw.get('width')!r}); its masks cannot be decoded."
            )
        else:
            warn(
                f"{annotation_file}: image id {record.id!r} has no valid height/width; using the image "
                f"file's {size[0]} x {size[1]} (written to the file on the next save)."
            )
            record.raw["height"], record.raw["width"] = int(size[0]), int(size[1])


def image_size_problem(image: ImageRecord) -> tuple[str | None, bool]:
    """(a warning when the entry's height/width differ from its image file's, as stored, or the
    file cannot be read; whether they are swapped: then its masks would not fit the photo)."""
    where = f"{image.source or image.path}: image id {image.id!r}"
    try:
        h, w = read_image_size(image.path)
    except Exception as e:  # noqa: BLE001 - any reason the image cannot be read is reported
        return f"{where}: {image.path} cannot be read ({e}).", False
    if (image.height, image.width) == (w, h) and h != w:
        return (
            f"{where}: height and width are swapped "
            f"({image.height} x {image.width}, but {image.path.name} is {h} x {w} pixels as stored; "
            "perhaps a viewer's EXIF rotation was recorded). Its masks are not used. Set "
            f'"height": {h}, "width": {w} in the image entry (Descriptron\'s frame) and check '
            "the outlines in Descriptron."
        ), True
    if (image.height, image.width) != (h, w):
        return (
            f"{where}: height x width in the file "
            f"({image.height} x {image.width}) differ from {image.path.name} ({h} x {w}, as "
            "stored); its masks may not line up with the photo. Re-annotate it "
            "or fix the image entry."
        ), False
    return None, False


def annotation_kind(ann: dict, cat: dict | None, segmentation: Any) -> str:
    """ "line", "keypoints", "trait", "other" (no segmentation) or "mask"."""
    if ann.get("is_line"):
        return "line"
    if ann.get("keypoints") or (cat is not None and cat.get("supercategory") == KEYPOINT_SUPERCATEGORY):
        return "keypoints"
    if ann.get("is_trait_only"):
        return "trait"
    if not segmentation:
        return "other"
    return "mask"


def segmentation_problem(seg: Any, h: int | None, w: int | None) -> tuple[str | None, str | None]:
    """(why the segmentation cannot be decoded, a usable oddity worth a warning); None when fine.

    Cheap structural checks made when a file is opened, so every bad entry is reported up
    front; the same forms as ``imaging.masks.segmentation_to_mask`` are accepted.
    """
    if isinstance(seg, dict):
        return rle_problem(seg, h, w), None
    if not isinstance(seg, list):
        return f"segmentation is a {type(seg).__name__}, neither polygons nor RLE", None
    if seg and all(isinstance(part, dict) for part in seg):
        for part in seg:
            problem = rle_problem(part, h, w)
            if problem:
                return problem, None
        return None, None
    polygons = [seg] if all(is_number(v) for v in seg) else seg
    out_of_bounds = False
    flat: list[int] = []
    for j, poly in enumerate(polygons):
        if not isinstance(poly, list) or not all(is_number(v) and math.isfinite(v) for v in poly):
            return f"polygon #{j} is not a list of finite numbers [x1, y1, x2, y2, ...]", None
        if len(poly) % 2:
            return f"polygon #{j} has an odd number of coordinates ({len(poly)})", None
        if len(poly) < 6 or _polygon_area(poly) == 0:
            flat.append(j)
        if poly and h is not None and w is not None:
            xs, ys = poly[0::2], poly[1::2]
            t = POLYGON_BOUNDS_TOLERANCE
            if min(xs) < -t or min(ys) < -t or max(xs) > w + t or max(ys) > h + t:
                out_of_bounds = True
    if polygons and len(flat) == len(polygons):
        return (
            "its outline has zero area (fewer than 3 points, or all points on one line); "
            "redraw it in Descriptron or delete it"
        ), None
    notes = []
    if flat:
        notes.append(
            f"polygon(s) #{', #'.join(map(str, flat))} have zero area (fewer than 3 points, or "
            "all on one line) and add only a line of pixels (as in Descriptron); "
            "redraw them in Descriptron if a part is missing"
        )
    if out_of_bounds:
        notes.append(f"polygon points lie outside the image ({w} x {h} px); the mask is clipped to the image")
    return None, ("; ".join(notes) or None)


def _polygon_area(flat: list) -> float:
    xs, ys = flat[0::2], flat[1::2]
    return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2.0


def rle_problem(seg: dict, h: int | None, w: int | None) -> str | None:
    if "counts" not in seg or "size" not in seg:
        return 'RLE segmentation without "size" and "counts"'
    size = seg["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_number(v) for v in size)):
        return f"RLE size {size!r} is not [height, width]"
    if h is not None and w is not None and list(size) != [h, w]:
        return (
            f"RLE size {list(size)} does not match the image's [height, width] [{h}, {w}] "
            "(wrong image, or the image was resized or rotated)"
        )
    counts = seg["counts"]
    if isinstance(counts, list):
        if not all(is_number(c) and c >= 0 for c in counts):
            return "RLE counts contain values that are not non-negative numbers"
        total = sum(counts)
        if total != size[0] * size[1]:
            return f"RLE counts sum to {total}, not {size[0]} x {size[1]} = {size[0] * size[1]} pixels"
    elif not isinstance(counts, (str, bytes)):
        return f"RLE counts must be a list or a string, found {type(counts).__name__}"
    return None
