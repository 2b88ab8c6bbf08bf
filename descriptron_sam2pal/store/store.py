"""``AnnotationStore``: Descriptron's annotations for a set of images, read and written losslessly.

Two ways Descriptron keeps annotations, two write conventions:

* **session file** (one COCO file for many images, opened as a file or as the only
  COCO file of a folder): saved in place, atomically, after copying the previous
  version to ``<file name>.bak-<YYYYmmdd-HHMMSS>``.
* **per-image files** (``<image path without extension>_final_<unix seconds>.json`` +
  ``.rlejson`` next to each image; a folder-session save holds several images and is
  named after the image on screen): each photo is read from the newest file that holds
  it (``notes`` and the log say which file won). Saving writes a *new* ``_final_<ts>``
  pair whose timestamp is strictly newer than every existing one for that name, holding
  the previous content (less the photos a newer file owns) plus the changes. The user's
  files are never modified; the older file is the backup.

One photo may have two ``images`` entries in one file (Descriptron's own save writes one
for masks and one, with the bare stem as id, for a line or keypoints): they are one
:class:`ImageRecord` (``aliases``). Coordinates are in the image file's raw pixel frame
(no EXIF transpose), as Descriptron's. ``save`` holds the store lock (``store.lock``) and
refuses to overwrite files that changed on disk since they were read.

Everything not changed (fields, key order, keypoint/line/trait annotations,
categories, unknown fields) is written back as read. Problems that leave the data
usable are warnings (``store.warnings`` and the ``logging`` module), each naming
the file and the entry; problems that would make the store mislabel or lose data
raise :class:`StoreError`.

``AnnotationStore`` is the front every caller uses; it keeps the records, the index (images
by id and stem, annotations per image) and the edits, and delegates each other reason to
change to its own module: ``discovery.py`` (which files of a folder are read, the newest file
winning a photo, each entry's image file), ``validation.py`` (checking entries, sizes,
segmentations and structure names), ``categories.py`` (category names and ids across the
files) and ``saving.py`` (where a save writes, what changed on disk since reading, write
permission).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from descriptron_sam2pal.imaging.io import read_image_size
from descriptron_sam2pal.imaging.masks import (
    mask_area,
    mask_bbox,
    segmentation_to_mask,
)
from descriptron_sam2pal.store.categories import CategoryTable
from descriptron_sam2pal.store.coco import (
    CocoDocument,
    StoreError,
    hashable,
    id_key,
    labelme_message,
    mask_polygons,
    needs_rle,
    uncompressed_rle,
)
from descriptron_sam2pal.store.discovery import (
    ImageFileIndex,
    choose_newest,
    choose_session_file,
    drop_superseded,
    holds_several_photos,
    labelme_files,
    load_final_saves,
    looks_like_coco,
    newest_session_document,
    sort_folder_files,
)
from descriptron_sam2pal.store.lock import DEFAULT_TIMEOUT_S, store_lock
from descriptron_sam2pal.store.saving import (
    DiskSnapshot,
    changed_error,
    check_write_permission,
    save_targets,
)
from descriptron_sam2pal.store.stem import (
    final_name,
    find_image_files,
    normalized_stem,
    parse_final_name,
    photo_entries,
    strip_image_extension,
)
from descriptron_sam2pal.store.validation import (
    TRASH,
    Warn,
    annotation_kind,
    check_category_reference,
    check_image_entry,
    check_structure_name,
    image_size_problem,
    is_number,
    is_structure_category,
    labelled_annotations,
    mask_problem,
    positive_int,
    short_repr,
    usable_image_entries,
)

log = logging.getLogger(__name__)

SESSION = "session"
PER_IMAGE = "per_image"


class ImageRecord:
    """One image of the store. ``raw`` is the file's ``images`` entry itself (edited in place)."""

    def __init__(self, raw: dict, path: Path | None, doc: CocoDocument | None, prefix: str | None = None):
        self.raw = raw
        self.path = path                # the image file, or None when it cannot be found
        self.doc = doc                  # the annotation file it lives in (None: not written yet)
        self._prefix = prefix           # per-image files: `<image path without extension>`
        self.aliases: list[dict] = []   # other entries of the same photo in the same file

    @property
    def id(self) -> str | int:
        return self.raw.get("id")

    @property
    def file_name(self) -> str:
        return self.raw.get("file_name") or (self.path.name if self.path else "")

    @property
    def height(self) -> int | None:
        return positive_int(self.raw.get("height"))

    @property
    def width(self) -> int | None:
        return positive_int(self.raw.get("width"))

    @property
    def structure_status(self) -> dict:
        """{structure name: "absent" | "unknown" | ...} (a copy; change it with ``set_structure_status``)."""
        merged: dict = {}
        for raw in [*self.aliases, self.raw]:
            status = raw.get("structure_status")
            if isinstance(status, dict):
                merged.update(status)
        return merged

    @property
    def stem(self) -> str:
        """Descriptron's matching key for this image."""
        return normalized_stem(self.file_name or str(self.id))

    @property
    def source(self) -> Path | None:
        """The annotation file this image was read from (None for an image not yet annotated)."""
        return self.doc.path if self.doc is not None else None

    def __repr__(self) -> str:
        return f"ImageRecord(id={self.id!r}, file_name={self.file_name!r}, path={self.path})"


class AnnotationRecord:
    """One annotation: ``raw`` is the file's dict; ``kind`` is "mask", "keypoints", "line",
    "trait" or "other" (no segmentation). Only usable "mask" annotations are structures."""

    def __init__(self, raw: dict, image: ImageRecord, doc: CocoDocument, category: str | None,
                 kind: str, problem: str | None = None):
        self.raw = raw
        self.image = image
        self.doc = doc
        self.category = category        # category name, None if its id is unknown
        self.kind = kind
        self.problem = problem          # why its mask cannot be used (already warned), or None

    @property
    def id(self) -> Any:
        return self.raw.get("id")

    @property
    def category_id(self) -> Any:
        return self.raw.get("category_id")

    @property
    def is_structure(self) -> bool:
        return (self.kind == "mask" and self.problem is None and self.category is not None
                and self.category.lower() != TRASH)

    @property
    def segmentation(self) -> Any:
        """The segmentation decoded by :meth:`mask` (the .rlejson one where there is one)."""
        return self.doc.segmentation(self.raw)

    def mask(self) -> np.ndarray:
        """The annotation's mask, bool (height, width) of its image."""
        if self.kind != "mask":
            raise StoreError(f"{self.doc.path}: annotation id {self.id!r} is a {self.kind} annotation, "
                             "not a mask.")
        if self.problem:
            raise StoreError(self.problem)
        h, w = self.image.height, self.image.width
        if h is None or w is None:
            raise StoreError(f"{self.doc.path}: image id {self.image.id!r} has no valid height/width, so "
                             f"annotation id {self.id!r} cannot be decoded. Add \"height\" and \"width\".")
        try:
            return np.asarray(segmentation_to_mask(self.segmentation, h, w), dtype=bool)
        except Exception as e:  # the geometry layer says what is wrong; we say where
            raise StoreError(f"{self.doc.path}: annotation id {self.id!r} (image {self.image.id!r}): "
                             f"segmentation cannot be decoded ({e}). Redraw or remove it in "
                             "Descriptron.") from e

    def __repr__(self) -> str:
        return f"AnnotationRecord(id={self.id!r}, category={self.category!r}, kind={self.kind!r})"


class AnnotationStore:
    """Descriptron annotations for a set of images; see the module docstring for the conventions."""

    def __init__(self, path: Path, mode: str):
        self.path = Path(path)          # the file or folder that was opened / created
        self.mode = mode                # SESSION or PER_IMAGE
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self.images: list[ImageRecord] = []
        self._docs: list[CocoDocument] = []
        self._anns: dict[int, list[AnnotationRecord]] = {}      # id(ImageRecord) -> records
        self._category_table = CategoryTable()                   # names and ids across the files
        self._next_ann_id = 1
        self._image_files = ImageFileIndex()                    # image files by folder and stem
        self._by_id: dict[Any, list[ImageRecord]] = {}           # id_key(image id) -> records
        self._by_stem: dict[str, list[ImageRecord]] = {}         # normalised stem -> records
        self._sizes_checked: set[int] = set()                    # id(ImageRecord) checked against its file
        self._swapped: set[int] = set()                          # id(ImageRecord) with height/width swapped
        self.lock_timeout: float | None = DEFAULT_TIMEOUT_S      # how long save() waits for another writer
        self.notes: list[str] = []                               # informational: which file won an image
        self.session_files: list[Path] = []                      # folder-session files save() wrote
        self._stem_owner: dict[str, CocoDocument] = {}           # stem -> the newest file holding it
        self._lost_ids: dict[int, set] = {}                      # id(doc) -> image ids a newer file owns
        self._disk = DiskSnapshot()                              # the files as read, for save()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | Path) -> AnnotationStore:
        """Open a ``.json``/``.rlejson`` file (companion preferred for masks), a folder of images
        with per-image ``_final_<ts>`` files (newest per image wins) or a folder holding one
        folder-session COCO file. A folder of images without annotations opens empty."""
        path = Path(path).expanduser()
        if path.is_dir():
            return cls._open_folder(path)
        if path.suffix.lower() not in (".json", ".rlejson"):
            raise StoreError(f"{path}: not an annotation file; open a Descriptron .json/.rlejson "
                             "file or a folder of images.")
        doc = CocoDocument.load(path)
        # a `_final_` file is one image's Descriptron save: changes go to a newer `_final_` file
        store = cls(doc.path, PER_IMAGE if parse_final_name(doc.path) else SESSION)
        if store.mode == PER_IMAGE:
            store._disk.watch(doc.path.parent)
        store._add_documents([doc])
        return store

    @classmethod
    def _open_folder(cls, folder: Path) -> AnnotationStore:
        """See :meth:`open`; labelme files there are named in a warning (they are not COCO)."""
        labelme = labelme_files(folder)
        try:
            store = cls._open_folder_files(folder)
        except StoreError:
            if labelme and not find_image_files(folder):
                raise StoreError(labelme_message(labelme[0])) from None
            raise
        for p in labelme:
            store._warn(labelme_message(p))
        return store

    @classmethod
    def _open_folder_files(cls, folder: Path) -> AnnotationStore:
        """See :meth:`open`: per-image saves (each photo from the newest), else the folder's one
        session file, else the folder's images without annotations."""
        files = sort_folder_files(folder)
        if files.finals:
            store = cls(folder, PER_IMAGE)
            store._disk.watch(folder)
            store._add_documents(load_final_saves(files.finals, store._warn))  # each image from the newest
            for p in files.others:
                if looks_like_coco(p):
                    store._warn(f"{p}: a COCO file next to per-image _final_ files; not read. "
                                "Open it directly to work on it instead.")
            store._add_folder_images(folder)
            return store
        session, invalid = choose_session_file(folder, files.others)
        if session is not None:
            store = cls.open(session)
            for e in invalid:
                store._warn(f"{e} (not read; {session.name} is used)")
            return store
        if not find_image_files(folder):
            raise StoreError(f"{folder}: no images and no Descriptron annotation files here. "
                             "Choose the folder with the specimen photos.")
        store = cls(folder, PER_IMAGE)
        store._disk.watch(folder)
        store._add_folder_images(folder)
        return store

    @classmethod
    def create(cls, folder_or_file: str | Path,
               images: Iterable[str | Path] | None = None) -> AnnotationStore:
        """A new, empty store. A folder: per-image ``_final_`` files will be written next to each
        image (``images`` default: every image in the folder). A ``.json`` path: one session file
        for ``images`` (default: the images of its folder). Image ids are the image path without
        extension, as Descriptron's GUI writes them. Refuses to hide existing annotations."""
        target = Path(folder_or_file).expanduser()
        if target.is_dir():
            existing = [p.name for p in target.iterdir() if parse_final_name(p)]
            if existing:
                raise StoreError(f"{target}: already has Descriptron annotation files ({existing[0]}, ...); "
                                 "open the folder instead of creating a new store, or the new files would "
                                 "hide the user's annotations.")
            paths = [Path(p) for p in images] if images is not None else find_image_files(target)
            store = cls(target, PER_IMAGE)
            store._disk.watch(target)
            for p in paths:
                store._new_image(p)
            return store
        if target.suffix.lower() != ".json":
            raise StoreError(f"{target}: give an existing folder of images or a new .json file name.")
        if target.exists() or target.with_suffix(".rlejson").exists():
            raise StoreError(f"{target}: already exists; open it instead of creating a new store.")
        if not target.parent.is_dir():
            raise StoreError(f"{target.parent}: folder not found.")
        paths = [Path(p) for p in images] if images is not None else find_image_files(target.parent)
        doc = CocoDocument(target, {"images": [], "annotations": [], "categories": []})
        doc.dirty = True
        store = cls(target, SESSION)
        store._add_documents([doc])
        for p in paths:
            store.add_image(p)
        return store

    # ------------------------------------------------------------------ indexing & validation

    def _warn(self, message: str, *, logged: bool = False) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warnings.append(message)
            if not logged:
                log.warning(message)

    def _add_documents(self, docs: list[CocoDocument]) -> None:
        if len(docs) > 1:  # several files hold one photo: it is read from the newest
            newest = choose_newest(docs)
            self._stem_owner.update(newest.owner)
            self.notes += newest.notes
            self._lost_ids.update(newest.superseded)
            docs = newest.kept
        for doc in docs:
            self._disk.remember(doc.path)
            for w in doc.warnings:
                self._warn(w, logged=True)    # already logged by the document
            self._docs.append(doc)
            self._category_table.add_document(doc, self._warn)
        self._update_counters()
        for doc in docs:
            self._index_annotations(doc, self._index_images(doc))

    def _superseded(self, doc: CocoDocument, image_id: Any) -> bool:
        key = id_key(image_id)
        return hashable(key) and key in self._lost_ids.get(id(doc), set())

    def _update_counters(self) -> None:
        ann_ids = [a.get("id") for d in self._docs for a in d.data["annotations"] if isinstance(a, dict)]
        nums = [int(v) for v in ann_ids if is_number(v)]
        self._next_ann_id = max([self._next_ann_id - 1, *nums]) + 1
        self._category_table.reserve_ids(self._docs)

    def _index_images(self, doc: CocoDocument) -> list[ImageRecord]:
        """Records for the images of ``doc`` (returned), with their image files found.

        Entries that Descriptron's normalised stem says are the same photo (its own save writes
        one with the path-like id for masks and one with the bare stem for a line or keypoints)
        become one record: the path-like entry is the record, the others its ``aliases`` (their
        annotations and ``structure_status`` belong to it). An image that several files hold is
        read from the file that :meth:`_add_documents` chose (the newest)."""
        valid = usable_image_entries(doc, self._warn)
        records: list[ImageRecord] = []
        for key, raw, group in photo_entries(valid):
            record = ImageRecord(raw, self._image_files.find(doc.path, raw, self._warn), doc)
            record.aliases = [r for r in group if r is not raw]
            if record.aliases:
                log.info("%s: image %s has %d entries (ids %s); read as one photo, as Descriptron does",
                         doc.path, record.file_name, len(group), ", ".join(repr(r["id"]) for r in group))
            owner = self._stem_owner.get(record.stem)
            if owner is not None and owner is not doc:
                continue                     # a newer file holds this image (said in _add_documents)
            clash = next((r for r in self._by_stem.get(record.stem, []) if r.doc is not doc), None)
            if clash is not None:
                self._warn(f"{doc.path}: image id {key!r} ({record.file_name}) is also in {clash.source}; "
                           f"the entry from {clash.source} is used.")
                continue
            check_image_entry(doc.path, record, self._warn)
            self._register(record)
            for alias in record.aliases:
                self._by_id.setdefault(id_key(alias["id"]), []).append(record)
            records.append(record)
        for key, _ in valid:
            same_id = [r for r in self._by_id.get(key, [])]
            if len({id(r) for r in same_id}) > 1 and same_id[-1].doc is doc:
                self._warn(f"image id {key!r} occurs in several annotation files "
                           f"({', '.join(str(r.source) for r in same_id)}); "
                           "refer to those images by record or file name.")
        return records

    def _index_annotations(self, doc: CocoDocument, images: list[ImageRecord]) -> None:
        by_key: dict[Any, ImageRecord] = {}
        by_str: dict[str, ImageRecord] = {}
        for r in images:
            for raw in [r.raw, *r.aliases]:
                by_key.setdefault(id_key(raw["id"]), r)
                by_str.setdefault(str(raw["id"]), r)
        cats = self._category_table.by_doc[id(doc)]
        for label, ann in labelled_annotations(doc, self._warn):
            image_key = id_key(ann.get("image_id"))
            image = by_key.get(image_key) if hashable(image_key) else None
            if image is None and str(ann.get("image_id")) in by_str:
                image = by_str[str(ann.get("image_id"))]
                self._warn(f"{doc.path}: {label} has image_id {ann.get('image_id')!r} but the image's id is "
                           f"{image.id!r} (a {type(image.id).__name__}); matched as the same image.")
            if image is None and self._superseded(doc, ann.get("image_id")):
                continue                 # that image is read from a newer file
            if image is None:
                self._warn(f"{doc.path}: {label} points at image id {ann.get('image_id')!r}, which is not in "
                           "\"images\" (or its entry was skipped); kept in the file, not used.")
                continue
            cat = cats.get(id_key(ann.get("category_id")))
            check_category_reference(doc.path, label, ann, cat, self._warn)
            record = self._make_record(doc, ann, image, cat, label)
            self._anns[id(image)].append(record)

    def _make_record(self, doc: CocoDocument, ann: dict, image: ImageRecord, cat: dict | None,
                     label: str) -> AnnotationRecord:
        kind = annotation_kind(ann, cat, doc.segmentation(ann))
        problem = None
        if kind == "mask":
            where = f"{doc.path}: {label} (image {image.id!r})"
            problem = mask_problem(where, doc.segmentation(ann), image.height, image.width, self._warn)
        return AnnotationRecord(ann, image, doc, cat["name"] if cat else None, kind, problem)

    def _add_folder_images(self, folder: Path) -> None:
        """Per-image mode: images of the folder without an annotation file yet."""
        for p in find_image_files(folder):
            if normalized_stem(p.name) not in self._by_stem:
                self._new_image(p)

    def _new_image(self, path: Path) -> ImageRecord:
        """Per-image mode: a record for an image that has no annotation file yet."""
        path = Path(path).expanduser().absolute()
        raw = _image_entry(path, str_id=True)
        record = ImageRecord(raw, path if path.is_file() else None, None,
                             prefix=strip_image_extension(str(path)))
        if record.path is None:
            self._warn(f"{path}: image file not found.")
        self._register(record)
        return record

    def _register(self, record: ImageRecord) -> None:
        self.images.append(record)
        self._anns[id(record)] = []
        self._by_id.setdefault(id_key(record.id), []).append(record)
        stems = {record.stem} | ({normalized_stem(record.path.name)} if record.path is not None else set())
        for stem in stems:
            self._by_stem.setdefault(stem, []).append(record)

    # ------------------------------------------------------------------ reading API

    @property
    def categories(self) -> dict[str, int]:
        """Category name -> id (the first id seen for the name), structures and keypoint categories alike."""
        return dict(self._category_table.ids)

    def category_entry(self, name: str) -> dict | None:
        """The file's category dict for ``name`` (supercategory, occluder, occludes...), or None."""
        return self._category_table.entries.get(name)

    def structure_names(self) -> list[str]:
        """Names of categories used (or usable) as mask structures: no Trash, no keypoint categories."""
        return self._category_table.structure_names()

    def image(self, image_id: Any) -> ImageRecord:
        """The image with this id (or the record itself). Raises StoreError if unknown or ambiguous."""
        return self._image(image_id)

    def image_by_file(self, name_or_path: str | Path) -> ImageRecord | None:
        """The image matching a file name or path by Descriptron's normalised stem, or None."""
        stem = normalized_stem(name_or_path)
        matches = self._by_stem.get(stem, [])
        if len(matches) > 1:
            exact = [r for r in matches if r.path is not None and Path(name_or_path).name == r.path.name]
            if len(exact) == 1:
                return exact[0]
            raise StoreError(f"{self.path}: several images match \"{name_or_path}\" "
                             f"({', '.join(repr(r.id) for r in matches)}); give the image's full path, "
                             "or pick its record from store.images.")
        return matches[0] if matches else None

    def annotations_for(self, image_id: Any) -> list[AnnotationRecord]:
        """All annotations of an image (masks, keypoints, lines, traits), in file order."""
        return list(self._anns[id(self._image(image_id))])

    def structure_masks(self, image_id: Any) -> dict[str, np.ndarray]:
        """{structure name: bool mask} for an image: the union of that category's mask annotations."""
        image = self._image(image_id)
        self._check_size(image)
        out: dict[str, np.ndarray] = {}
        if id(image) in self._swapped:      # already warned: masks would not fit the photo
            return out
        for rec in self._anns[id(image)]:
            if not rec.is_structure:
                continue
            try:
                m = rec.mask()
            except StoreError as e:
                self._warn(f"{e} Not used.")
                continue
            out[rec.category] = out[rec.category] | m if rec.category in out else m
        return out

    def check_image_sizes(self) -> list[str]:
        """Compare every image's height/width with its file (raw pixel frame, as Descriptron); returns
        the new warnings. Done lazily by :meth:`structure_masks` for the images it reads."""
        before = len(self.warnings)
        for image in self.images:
            self._check_size(image)
        return self.warnings[before:]

    def _check_size(self, image: ImageRecord) -> None:
        if image.path is None or id(image) in self._sizes_checked:
            return
        self._sizes_checked.add(id(image))
        problem, swapped = image_size_problem(image)
        if swapped:
            self._swapped.add(id(image))
        if problem:
            self._warn(problem)

    @property
    def is_dirty(self) -> bool:
        """There are changes not yet saved."""
        return any(d.dirty for d in self._docs)

    @property
    def source_files(self) -> list[Path]:
        """The annotation files that were read (.json, or .rlejson where only that exists)."""
        return [d.path for d in self._docs if d.exists]

    @property
    def files(self) -> list[Path]:
        """The files :meth:`save` would write now (.json and .rlejson of each changed document)."""
        return [p for target in self._targets().values() for p in (target, target.with_suffix(".rlejson"))]

    # ------------------------------------------------------------------ writing API

    def remove_annotation(self, image_id: Any, ann_id: Any) -> dict:
        """Remove one annotation of an image (e.g. Undo of an accepted structure); returns its raw dict.

        Only the named annotation goes; the user's other annotations are untouched.
        """
        record = next((a for a in self.annotations_for(image_id) if id_key(a.id) == id_key(ann_id)), None)
        if record is None:
            raise StoreError(f"annotation {ann_id!r} is not on image {image_id!r}; nothing was removed")
        self._remove(record)
        return record.raw

    def update_attributes(self, image_id: Any, ann_id: Any, attributes: dict) -> None:
        """Merge ``attributes`` into one annotation's ``attributes`` (e.g. a prediction's review
        score redone at the end of its run); everything else of it is kept."""
        record = next((a for a in self.annotations_for(image_id) if id_key(a.id) == id_key(ann_id)), None)
        if record is None:
            raise StoreError(f"annotation {ann_id!r} is not on image {image_id!r}; nothing was changed")
        old = record.raw.get("attributes")
        if old is not None and not isinstance(old, dict):
            raise StoreError(f"{record.doc.path}: annotation id {ann_id!r}: attributes {short_repr(old)} "
                             "are not an object; nothing was changed")
        record.raw["attributes"] = {**(old or {}), **attributes}
        record.doc.dirty = True

    def add_structure(self, image_id: Any, name: str, mask: np.ndarray, attributes: dict | None = None,
                      replace: bool = False) -> int:
        """Add ``mask`` as an annotation of structure ``name`` on an image; returns its new id.

        The category is matched by name (a new name gets a new id that clashes with none).
        ``replace=True`` first removes that structure's *mask* annotations on that image (only
        those; their ``attributes`` and ``notes`` carry over); keypoints, lines and other
        structures are never touched. ``attributes`` (e.g. provenance) are merged into the
        annotation's ``attributes`` dict.
        """
        image = self._image(image_id)
        name = check_structure_name(name)
        mask = np.asarray(mask)
        if mask.ndim != 2 or (image.height, image.width) != mask.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image {image.id!r} "
                             f"({image.height} x {image.width})")
        mask = mask.astype(bool)
        if not mask.any():
            raise ValueError(f"empty mask for structure {name!r} on image {image.id!r}")
        entry = self._category_table.entries.get(name)
        if entry is not None and not is_structure_category(entry):
            raise StoreError(f"\"{name}\" is a keypoint category in {self.path}; "
                             "choose another structure name.")
        doc = self._doc_for_write(image)
        cat_id = self._category_table.id_in(doc, name)

        insert_at = None
        replaced = [r for r in self._anns[id(image)]
                    if replace and r.kind == "mask" and r.category == name]
        carried = fields_carried_over(replaced, attributes, self._warn)
        for rec in replaced:
            index = self._remove(rec)
            if insert_at is None and rec.doc is doc:
                insert_at = index
        ann_id = self._next_ann_id
        self._next_ann_id += 1
        instances = [r.raw.get("instance_id") for r in self._anns[id(image)] if r.category == name]
        instance_id = max([int(v) for v in instances if is_number(v)] + [0]) + 1
        ann = {**mask_annotation(mask, ann_id, image.id, cat_id, instance_id), **carried}
        if insert_at is None:
            doc.data["annotations"].append(ann)
        else:  # where the replaced annotation was, so the file diff stays small
            doc.data["annotations"].insert(insert_at, ann)
        if needs_rle(mask, ann["segmentation"]):
            doc.rle[ann_id] = uncompressed_rle(mask)
        doc.dirty = True
        self._anns[id(image)].append(AnnotationRecord(ann, image, doc, name, "mask"))
        return ann_id

    def set_structure_status(self, image_id: Any, name: str, status: str | None) -> None:
        """Record that a structure is "absent"/"unknown"/... on an image (None removes the entry)."""
        image = self._image(image_id)
        name = check_structure_name(name)
        current = image.raw.get("structure_status")
        if current is not None and not isinstance(current, dict):
            raise StoreError(f"{image.source}: image id {image.id!r} has a structure_status that is not an "
                             f"object ({current!r}); fix it in Descriptron first.")
        merged = image.structure_status
        if (merged.get(name) == status and (current or {}).get(name) == status) or \
                (status is None and name not in merged):
            return
        doc = self._doc_for_write(image)
        wanted = dict(merged)
        if status is None:
            wanted.pop(name, None)
        else:
            wanted[name] = status
        write_structure_status(image, wanted, removing=status is None)
        doc.dirty = True

    def add_image(self, path: str | Path) -> ImageRecord:
        """Add an image file to the store (or return its record if already there, matched by stem).

        Session files get an ``images`` entry (string id = path without extension, or the next
        integer id if the file uses integers); per-image stores write it with its first change.
        """
        path = Path(path).expanduser().absolute()
        existing = self.image_by_file(path)
        if existing is not None:
            return existing
        if self.mode == PER_IMAGE:
            return self._new_image(path)
        doc = self._docs[0]
        int_ids = [r.id for r in self.images if isinstance(r.id, int) and not isinstance(r.id, bool)]
        raw = _image_entry(path, str_id=not int_ids)
        if int_ids:
            raw["id"] = max(id_key(v) for v in int_ids) + 1
        doc.data["images"].append(raw)
        record = ImageRecord(raw, path if path.is_file() else None, doc)
        if record.path is None:
            self._warn(f"{path}: image file not found.")
        self._register(record)
        doc.dirty = True
        return record

    def lock(self, timeout: float | None = None):
        """Context manager holding this store's write lock (see ``store.lock.store_lock``);
        ``timeout`` defaults to ``self.lock_timeout``. :meth:`save` takes it itself."""
        return store_lock(self.path, self.lock_timeout if timeout is None else timeout)

    def folders(self) -> set[Path]:
        """The folders :meth:`save` may write into (the store's, its files', its photos')."""
        folders = {self.path if self.path.is_dir() else self.path.parent}
        folders |= {d.path.parent for d in self._docs}
        folders |= {Path(r._prefix).parent for r in self.images if r._prefix is not None}
        return folders

    def check_writable(self, lock_timeout: float = 0) -> None:
        """Before long work: raise now what would make :meth:`save` fail at the end — a folder
        or file it must write without write permission, or another run holding the lock
        (:class:`StoreBusyError` after ``lock_timeout`` s). Changes nothing."""
        files = [p for d in self._docs for p in (d.path, d.rlejson_path)] if self.mode == SESSION else []
        check_write_permission(self.folders(), files)
        with self.lock(timeout=lock_timeout):
            pass

    def changed_since_read(self) -> list[str]:
        """What changed on disk since the store read it, one line per file: its own
        annotation files modified, removed or created, and (per-image folders) new
        ``_final_`` files holding one of the images this store is about to write."""
        stems = {r.stem for d in self._docs if d.dirty for r in self.images if r.doc is d}
        return self._disk.changes(stems)

    def save(self) -> list[Path]:
        """Write every changed document (.json polygons + .rlejson with RLE for masks polygons
        cannot hold exactly) atomically; see the module docstring. Returns the files written.

        Holds the store's lock (waits up to ``lock_timeout`` s for another writer, then
        :class:`StoreBusyError`) and first checks that nothing it read changed on disk since
        (:meth:`changed_since_read`); if something did, it writes nothing and raises
        :class:`StoreChangedError`, so another program's save is never lost."""
        with self.lock():
            problems = self.changed_since_read()
            if problems:
                raise changed_error(self.path, problems)
            written: list[Path] = []
            targets = self._targets()
            for doc in self._docs:
                if not doc.dirty:
                    continue
                try:
                    if self.mode == PER_IMAGE:
                        drop_superseded(doc, self._lost_ids.pop(id(doc), set()))
                        written += doc.write(targets[id(doc)], backup=False)
                        if holds_several_photos(doc):
                            self.session_files.append(doc.path)
                    else:
                        written += doc.write(backup=doc.exists)
                except StoreError as e:
                    if written:
                        raise StoreError(f"{e} (already saved: {', '.join(map(str, written))})") from e
                    raise
                finally:
                    for p in written:
                        self._disk.remember(p)
            if self._docs and not self.path.is_dir():   # a single file was opened: follow it
                self.path = self._docs[0].path
            return written

    # ------------------------------------------------------------------ internals

    def _image(self, image_id: Any) -> ImageRecord:
        if isinstance(image_id, ImageRecord):
            if id(image_id) not in self._anns:
                raise StoreError(f"image {image_id.id!r} is not part of the store {self.path}.")
            return image_id
        key = id_key(image_id)
        candidates = self._by_id.get(key, []) if hashable(key) else []
        matches = [r for r in candidates if type(r.id) is type(image_id)] or candidates
        if not matches:
            raise StoreError(f"{self.path}: no image with id {image_id!r}.")
        if len(matches) > 1:
            raise StoreError(f"{self.path}: image id {image_id!r} is used by several annotation files "
                             f"({', '.join(str(r.source) for r in matches)}); use image_by_file().")
        return matches[0]

    def _doc_for_write(self, image: ImageRecord) -> CocoDocument:
        """The document an image's changes go into. A photo without an annotation file goes into
        the folder's newest Descriptron folder-session file when there is one (so a session loaded
        from that file shows it, and the session's next save keeps it), else into a new file of its own."""
        if image.doc is not None:
            return image.doc
        if image._prefix is None:  # pragma: no cover - records without doc always have a prefix
            raise StoreError(f"image {image.id!r} has no annotation file to write to.")
        session = newest_session_document(self._docs, Path(image._prefix).parent)
        if session is not None:
            session.data["images"].append(image.raw)
            image.doc = session
            self._stem_owner[image.stem] = session
            return session
        cats = self._category_table.for_new_document()
        data = {"images": [image.raw], "annotations": [], "categories": cats}
        doc = CocoDocument(final_name(image._prefix, 0), data)
        image.doc = doc
        self._docs.append(doc)
        self._category_table.adopt(doc)
        return doc

    def _remove(self, rec: AnnotationRecord) -> int | None:
        """Remove an annotation from its document; returns the list position it had."""
        anns = rec.doc.data["annotations"]
        index = next((i for i, a in enumerate(anns) if a is rec.raw), None)
        if index is not None:
            del anns[index]
        if "id" in rec.raw and not any(id_key(a.get("id")) == id_key(rec.raw["id"])
                                       for a in anns if isinstance(a, dict)):
            rec.doc.rle.pop(id_key(rec.raw["id"]), None)
        self._anns[id(rec.image)].remove(rec)
        rec.doc.dirty = True
        return index

    def _targets(self) -> dict[int, Path]:
        """id(doc) -> where each changed document is saved: in place (session) or, per image, a new
        `_final_<ts>` pair strictly newer than every existing one for that image (and than now)."""
        return save_targets([d for d in self._docs if d.dirty], per_image=self.mode == PER_IMAGE)


# ---------------------------------------------------------------------- helpers

def _image_entry(path: Path, *, str_id: bool) -> dict:
    """A new ``images`` entry as Descriptron's GUI writes it (id = image path without extension)."""
    raw: dict[str, Any] = {"id": strip_image_extension(str(path)) if str_id else None, "file_name": path.name}
    try:
        h, w = read_image_size(path)
        raw["height"], raw["width"] = int(h), int(w)
    except Exception as e:
        raise StoreError(f"{path}: cannot read the image size ({e}). Check the image file.") from e
    return raw


def mask_annotation(mask: np.ndarray, ann_id: int, image_id: Any, cat_id: Any, instance_id: int) -> dict:
    """A new mask annotation as Descriptron writes one: polygons (the caller adds the RLE to the
    ``.rlejson`` where they cannot hold the mask exactly, see ``coco.needs_rle``), area, bbox."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat_id,
        "segmentation": mask_polygons(mask),
        "area": int(mask_area(mask)),
        "bbox": [float(v) for v in mask_bbox(mask)],
        "iscrowd": 0,
        "instance_id": instance_id,
    }


def fields_carried_over(replaced: list[AnnotationRecord], attributes: dict | None,
                        warn: Warn) -> dict:
    """``notes`` and ``attributes`` of a new annotation that replaces ``replaced``: their notes
    (each once) and attributes carry over, ``attributes`` merged on top."""
    carried_attrs: dict = {}
    carried_notes: list = []
    for rec in replaced:
        old_attrs = rec.raw.get("attributes")
        if isinstance(old_attrs, dict):
            carried_attrs.update(old_attrs)
        elif old_attrs is not None:
            warn(f"{rec.doc.path}: annotation id {rec.id!r}: attributes {short_repr(old_attrs)} are "
                 "not an object and cannot be carried over to its replacement.")
        notes = rec.raw.get("notes")
        if notes not in (None, "") and notes not in carried_notes:
            carried_notes.append(notes)
    fields: dict[str, Any] = {}
    if carried_notes:
        fields["notes"] = (carried_notes[0] if len(carried_notes) == 1
                           else "\n".join(str(n) for n in carried_notes))
    if carried_attrs or attributes:
        fields["attributes"] = {**carried_attrs, **(attributes or {})}
    return fields


def write_structure_status(image: ImageRecord, wanted: dict, removing: bool) -> None:
    """Every ``images`` entry of the photo says ``wanted`` (Descriptron keeps one entry's
    statuses: the last). ``removing``: an entry was removed, so aliases without one get none."""
    for raw in [image.raw, *image.aliases]:
        entry = raw.get("structure_status")
        if not isinstance(entry, dict):
            if entry is not None or not wanted or (raw is not image.raw and removing):
                continue
            entry = raw["structure_status"] = {}
        for key in [k for k in entry if k not in wanted]:
            del entry[key]
        entry.update(wanted)
        if not entry:
            del raw["structure_status"]
