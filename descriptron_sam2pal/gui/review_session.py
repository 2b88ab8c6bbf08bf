"""What a review of propagation results is, without any Qt: items, states, undo, write-back.

A :class:`ReviewSession` holds one :class:`ReviewItem` per (target specimen,
structure) of a propagation run, ordered **worst first** (predicted-absent
structures first, then by the review score ascending (engine.review_score), ties by SAM2's object
score ascending). Each item is *unreviewed*, *accepted* or *rejected*; a
correction (point prompts re-run through SAM2) replaces the item's mask. Every
change is one undoable action.

:meth:`ReviewSession.write_back` puts the accepted items (only those) into a
Descriptron :class:`~descriptron_sam2pal.store.AnnotationStore`, with a
provenance record in the annotation's ``attributes``; items written are marked
so a second write-back does not duplicate them, and they are locked (the store
has them now: change them in Descriptron). Writing back cannot be undone here,
so it clears the undo history.

A session is saved as JSON (:meth:`ReviewSession.save`, masks as uncompressed
COCO RLE), by default next to the predictions as ``<predictions>.review.json``,
so a review can be continued later. The panel saves it after every change.

The session file (``"format": "sam2pal-review"``, ``"version": 1``)::

    {"format": "sam2pal-review", "version": 1, "saved": "<ISO time>",
     "predictions": "<predictions file or null>",
     "targets": [{"image_id": .., "path": .., "file_name": .., "height": int, "width": int,
                  "orientation": "..", "error": null | ".."}],
     "items": [{"target": <index into targets>, "structure": "eye", "present": bool,
                "score": float | null, "object_score": float | null,
                "predicted_iou": float | null, "mask": RLE | null,
                "state": "unreviewed" | "accepted" | "rejected",
                "correction": null | {"mask": RLE | null, "points": [[x, y, 1 | 0], ...]},
                "written": null | {"annotation_id": int | null, "status": "absent" | null}}]}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from descriptron_sam2pal import UserError
from descriptron_sam2pal.atomic import atomic_write_text
from descriptron_sam2pal.jobs.propagation import journal_path
from descriptron_sam2pal.imaging.drawing import drop_fragments, fragment_area
from descriptron_sam2pal.store.merge import find_image, why_not_writable, write_structure
from descriptron_sam2pal.store.provenance import PREDICTION_SOURCE
from descriptron_sam2pal.imaging.masks import mask_to_rle, rle_to_mask

UNREVIEWED = "unreviewed"
ACCEPTED = "accepted"
REJECTED = "rejected"
STATES = (UNREVIEWED, ACCEPTED, REJECTED)

#: Filter names (the panel's combo box) -> the states they show.
FILTERS: dict[str, tuple[str, ...]] = {
    "all": STATES, UNREVIEWED: (UNREVIEWED,), ACCEPTED: (ACCEPTED,), REJECTED: (REJECTED,),
}

SESSION_FORMAT = "sam2pal-review"
SESSION_VERSION = 1
#: ``attributes["source"]`` of every annotation written back.
SOURCE = PREDICTION_SOURCE


class ReviewError(UserError):
    """A review action that cannot be done (the message says why and what to do)."""


# --------------------------------------------------------------------------- items

@dataclass(eq=False)
class ReviewTarget:
    """One specimen photo of the run. ``image_id`` is its store id (None if it had none)."""

    image_id: Any
    path: Optional[str]
    height: int
    width: int
    file_name: str = ""
    orientation: str = "identity"
    error: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.file_name:
            self.file_name = os.path.basename(self.path) if self.path else str(self.image_id)

    @property
    def label(self) -> str:
        return self.file_name or str(self.image_id)

    @property
    def prompt_id(self) -> Any:
        """What identifies this specimen to a re-prompt callable: its store id, else its path."""
        return self.image_id if self.image_id is not None else self.path

    def to_json(self) -> dict:
        return {"image_id": self.image_id, "path": self.path, "file_name": self.file_name,
                "height": self.height, "width": self.width, "orientation": self.orientation,
                "error": self.error}

    @classmethod
    def from_json(cls, d: dict) -> "ReviewTarget":
        return cls(d.get("image_id"), d.get("path"), int(d.get("height") or 0), int(d.get("width") or 0),
                   d.get("file_name") or "", d.get("orientation") or "identity", d.get("error"))


class ReviewItem:
    """One structure predicted on one specimen, and what the reviewer made of it.

    ``mask`` is the prediction ((H, W) bool on the specimen's own grid; None when
    SAM2 predicted the structure absent). ``corrected_mask`` (if the reviewer fixed
    it with points; None otherwise) replaces it for display and write-back;
    ``points`` are the prompts of that correction ((x, y, 1 positive | 0 negative)).
    ``written`` is set once the item went into the store.

    Hundreds of full-resolution masks do not fit in memory, so once a prediction
    has its RLE (:meth:`compact`, or read from a session file) only the RLE is
    kept; ``mask`` decodes it on demand and the last :data:`DECODED_CACHE_SIZE`
    decoded masks are kept.
    """

    def __init__(self, target: ReviewTarget, structure: str, present: bool, mask: Optional[np.ndarray],
                 score: Optional[float], object_score: Optional[float], predicted_iou: Optional[float],
                 state: str = UNREVIEWED, corrected_mask: Optional[np.ndarray] = None,
                 points: Optional[list] = None, written: Optional[dict] = None, *,
                 mask_rle: Optional[dict] = None) -> None:
        self.target = target
        self.structure = structure
        self.score, self.object_score, self.predicted_iou = score, object_score, predicted_iou
        self.state = state
        self.corrected_mask = corrected_mask
        self.points = list(points or [])
        #: The corrected mask was drawn or edited by hand (polygon, brush, eraser, vertices).
        self.hand_edited = False
        self.written = written
        self.index = 0  # position in the run (targets in input order, structures in order)
        self._mask = None if mask is None else np.asarray(mask, dtype=bool)
        self._rle = mask_rle
        self._decoded: Optional[np.ndarray] = None
        if self._mask is not None:
            self._empty = not bool(self._mask.any())
        elif mask_rle is not None:
            self._empty = not any(mask_rle["counts"][1::2])
        else:
            self._empty = True
        self.present = bool(present) and not self._empty

    # -- masks ---------------------------------------------------------------------
    @property
    def mask(self) -> Optional[np.ndarray]:
        if self._mask is not None:
            return self._mask
        if self._rle is None:
            return None
        if self._decoded is None:
            self._decoded = rle_to_mask(self._rle)
            _remember_decoded(self)
        return self._decoded

    def mask_rle(self) -> Optional[dict]:
        """The prediction as uncompressed COCO RLE (computed once)."""
        if self._rle is None and self._mask is not None:
            self._rle = mask_to_rle(self._mask)
        return self._rle

    def compact(self) -> None:
        """Keep the prediction as RLE only (the full mask is decoded again when needed)."""
        if self._mask is not None:
            self.mask_rle()
            self._mask = None

    @property
    def corrected(self) -> bool:
        return bool(self.points) or self.hand_edited

    @property
    def current_mask(self) -> Optional[np.ndarray]:
        return self.corrected_mask if self.corrected else self.mask

    @property
    def absent(self) -> bool:
        """Nothing to write as a mask: predicted absent and not fixed into a mask."""
        if self.corrected:
            return self.corrected_mask is None or not bool(self.corrected_mask.any())
        return self._empty

    @property
    def label(self) -> str:
        return f"{self.target.label} / {self.structure}"

    def sort_key(self) -> tuple:
        """Worst first: absent (flagged) first, then Score ascending, then object score."""
        score = self.score if self.score is not None and not math.isnan(self.score) else -1.0
        obj = self.object_score if self.object_score is not None else -1.0
        return (0 if not self.present else 1, score, obj, self.index)

    def _snapshot(self) -> tuple:
        return (self.state, self.corrected_mask, list(self.points), self.hand_edited)

    def _restore(self, snap: tuple) -> None:
        self.state, self.corrected_mask, points, self.hand_edited = snap
        self.points = list(points)

    def __repr__(self) -> str:
        return f"ReviewItem({self.label!r}, {self.state}, score={self.score})"


#: How many masks decoded from RLE stay in memory (a specimen's structures and some more).
DECODED_CACHE_SIZE = 48
_DECODED: "OrderedDict[int, ReviewItem]" = OrderedDict()


def _remember_decoded(item: ReviewItem) -> None:
    _DECODED[id(item)] = item
    _DECODED.move_to_end(id(item))
    while len(_DECODED) > DECODED_CACHE_SIZE:
        _, old = _DECODED.popitem(last=False)
        old._decoded = None


@dataclass
class WriteBackSummary:
    """What :meth:`ReviewSession.write_back` did."""

    written: list = field(default_factory=list)          # (image_id, structure, annotation id)
    marked_absent: list = field(default_factory=list)    # (image_id, structure)
    skipped: list = field(default_factory=list)          # (item label, reason): accepted, not written
    already_written: int = 0                             # accepted items written by an earlier write-back
    not_accepted: int = 0                                # rejected or unreviewed: never touched

    @property
    def changed(self) -> bool:
        return bool(self.written or self.marked_absent)

    def message(self) -> str:
        parts = [f"{len(self.written)} structure{'s' * (len(self.written) != 1)} written to the store"]
        if self.marked_absent:
            parts.append(f"{len(self.marked_absent)} marked absent")
        if self.already_written:
            parts.append(f"{self.already_written} written earlier (not written again)")
        if self.not_accepted:
            parts.append(f"{self.not_accepted} rejected or unreviewed (left out)")
        text = "; ".join(parts) + "."
        if self.skipped:
            text += f"\n{len(self.skipped)} accepted not written:\n" + "\n".join(
                f"  {label}: {reason}" for label, reason in self.skipped[:20])
            if len(self.skipped) > 20:
                text += f"\n  ... and {len(self.skipped) - 20} more"
        return text


# --------------------------------------------------------------------------- session

class ReviewSession:
    """Review state of one propagation run; see the module docstring."""

    def __init__(self, targets: Sequence[ReviewTarget], items: Sequence[ReviewItem],
                 predictions_path: str | os.PathLike | None = None) -> None:
        self.targets: list[ReviewTarget] = list(targets)
        self.items: list[ReviewItem] = list(items)
        for i, item in enumerate(self.items):
            item.index = i
        self.order: list[ReviewItem] = sorted(self.items, key=ReviewItem.sort_key)
        self.predictions_path = str(predictions_path) if predictions_path else None
        #: Index (in ``items``) of the item the reviewer was at, saved with the session so that
        #: Continue goes back there; None: not known (start at the first unreviewed one).
        self.position: int | None = None
        self._undo: list[tuple[str, list[tuple[ReviewItem, tuple]]]] = []
        self._redo: list[tuple[str, list[tuple[ReviewItem, tuple]]]] = []
        #: Called with no arguments after every change (the panel autosaves and redraws).
        self.listeners: list[Callable[[], None]] = []

    # -- building -------------------------------------------------------------
    @classmethod
    def from_results(cls, results: Iterable[Any], predictions_path: str | os.PathLike | None = None,
                     compact: bool = False) -> "ReviewSession":
        """From ``engine.propagate.TargetResult`` objects (anything with their attributes).

        ``compact`` keeps the masks as RLE only (about 10 ms per 6-megapixel mask, so do
        it in a worker thread for big runs): memory stays small once the results are
        dropped, and saving the session is quick from the start."""
        targets, items = [], []
        for r in results:
            t = ReviewTarget(r.image_id, str(r.path) if r.path is not None else None,
                             int(r.height or 0), int(r.width or 0),
                             orientation=getattr(r, "orientation", "identity") or "identity",
                             error=getattr(r, "error", None))
            targets.append(t)
            for name, s in (r.structures or {}).items():
                mask = None if s.mask is None else np.asarray(s.mask, dtype=bool)
                items.append(ReviewItem(t, name, bool(s.present) and mask is not None, mask,
                                        _opt_float(s.score), _opt_float(s.object_score),
                                        _opt_float(s.predicted_iou)))
                if compact:
                    items[-1].compact()
        return cls(targets, items, predictions_path)

    @classmethod
    def from_predictions_file(cls, path: str | os.PathLike) -> "ReviewSession":
        """From a predictions file written by ``sam2pal propagate``.

        * A COCO file (``.json``/``.rlejson``; its companion is used for RLE masks):
          one structure per category per image (several annotations of a category
          are unioned); ``score``, ``object_score``, ``predicted_iou``, ``orientation``
          are read from the annotation or its ``attributes``. A structure of the
          file's categories with no annotation on an image was predicted absent there
          (an image's optional ``predicted_absent`` {name: {"object_score":,
          "predicted_iou":}} adds SAM2's scores for those). Targets listed in
          ``info.errors`` are counted as not read.
        * A ``.jsonl`` propagation journal (``TargetResult.to_json`` per line,
          possibly wrapped as ``{"result": ...}``).
        """
        path = Path(path)
        if not path.is_file():
            raise ReviewError(f"{path}: predictions file not found.")
        if path.suffix.lower() == ".jsonl":
            return cls._from_jsonl(path)
        return cls._from_coco(path)

    @classmethod
    def _from_jsonl(cls, path: Path) -> "ReviewSession":
        from descriptron_sam2pal.engine.results import TargetResult

        results = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    results.append(TargetResult.from_json(d.get("result", d)))
                except (ValueError, KeyError, TypeError) as e:
                    raise ReviewError(f"{path}:{lineno}: not a propagation result ({e}).") from e
        return cls.from_results(results, path)

    @classmethod
    def _from_coco(cls, path: Path) -> "ReviewSession":
        from descriptron_sam2pal.store import AnnotationStore, StoreError

        try:
            preds = AnnotationStore.open(path)
        except StoreError as e:
            raise ReviewError(f"Cannot read the predictions: {e}") from e
        targets, items = [], []
        # Every structure the run propagated, in category order (absent ones have no annotation).
        structures = [n for n in preds.structure_names()]
        for rec in preds.images:
            t = ReviewTarget(rec.id, str(rec.path) if rec.path is not None else None,
                             rec.height or 0, rec.width or 0, file_name=rec.file_name)
            targets.append(t)
            by_name: dict[str, ReviewItem] = {}
            masks: dict[str, list] = {}
            for ann in preds.annotations_for(rec.id):
                if not ann.is_structure:
                    continue
                try:
                    mask = ann.mask()
                except StoreError as e:
                    raise ReviewError(str(e)) from e
                attrs = ann.raw.get("attributes") if isinstance(ann.raw.get("attributes"), dict) else {}

                def value(key: str, ann=ann, attrs=attrs) -> Optional[float]:
                    return _opt_float(ann.raw.get(key, attrs.get(key)))

                found = masks.get(ann.category)
                if found is None:
                    masks[ann.category] = [mask, value("score"), value("object_score"), value("predicted_iou")]
                else:  # several instances: one structure, the union, the worst score
                    found[0] = found[0] | mask
                    if value("score") is not None:
                        found[1] = value("score") if found[1] is None else min(found[1], value("score"))
                t.orientation = str(ann.raw.get("orientation", attrs.get("orientation")) or t.orientation)
            absent = rec.raw.get("predicted_absent") or {}
            if isinstance(absent, list):
                absent = {n: {} for n in absent}
            for name in structures:
                if name in masks:
                    mask, score, obj, piou = masks[name]
                    by_name[name] = ReviewItem(t, name, True, mask, score, obj, piou)
                    by_name[name].compact()
                else:
                    info = absent.get(name) if isinstance(absent.get(name), dict) else {}
                    by_name[name] = ReviewItem(t, name, False, None, None, _opt_float(info.get("object_score")),
                                               _opt_float(info.get("predicted_iou")))
            items.extend(by_name.values())
        info = _info_of(path)
        info = info if isinstance(info, dict) else {}
        for err in info.get("errors") or []:
            if isinstance(err, dict):
                targets.append(ReviewTarget(err.get("image_id"), err.get("path"), 0, 0,
                                            error=str(err.get("error") or "could not be read")))
        return cls(targets, items, path)

    # -- saving and loading ------------------------------------------------------
    def to_json(self) -> dict:
        index = {id(t): i for i, t in enumerate(self.targets)}
        items = []
        for item in self.items:
            rle = item.mask_rle()
            correction = None
            if item.corrected:
                correction = {"mask": mask_to_rle(item.corrected_mask) if item.corrected_mask is not None
                              else None,
                              "points": [[float(x), float(y), int(lab)] for x, y, lab in item.points],
                              "hand_edited": item.hand_edited}
            items.append({"target": index[id(item.target)], "structure": item.structure,
                          "present": item.present, "score": item.score, "object_score": item.object_score,
                          "predicted_iou": item.predicted_iou, "mask": rle, "state": item.state,
                          "correction": correction, "written": item.written})
        return {"format": SESSION_FORMAT, "version": SESSION_VERSION,
                "saved": _dt.datetime.now().isoformat(timespec="seconds"),
                "predictions": self.predictions_path,
                "targets": [t.to_json() for t in self.targets], "items": items,
                "position": self.position}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the session atomically (a temporary file renamed over ``path``)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_json(), separators=(",", ":")))
        return path

    @classmethod
    def from_json(cls, d: dict) -> "ReviewSession":
        if not isinstance(d, dict) or d.get("format") != SESSION_FORMAT:
            raise ReviewError("not a SAM2-PAL review session file")
        if int(d.get("version", 0)) > SESSION_VERSION:
            raise ReviewError(f"this review session was written by a newer version (format "
                              f"{d.get('version')}); update descriptron-sam2pal to continue it.")
        targets = [ReviewTarget.from_json(t) for t in d["targets"]]
        items = []
        for e in d["items"]:
            state = e.get("state", UNREVIEWED)
            if state not in STATES:
                raise ReviewError(f"unknown review state {state!r} in the session file")
            rle = e.get("mask")
            if rle is not None:
                _check_rle(rle, e.get("structure"))
            item = ReviewItem(targets[int(e["target"])], e["structure"], bool(e.get("present")), None,
                              _opt_float(e.get("score")), _opt_float(e.get("object_score")),
                              _opt_float(e.get("predicted_iou")), state, written=e.get("written"),
                              mask_rle=rle)
            corr = e.get("correction")
            if corr:
                item.corrected_mask = rle_to_mask(corr["mask"]) if corr.get("mask") is not None else None
                item.points = [(float(x), float(y), int(lab)) for x, y, lab in corr.get("points", [])]
                item.hand_edited = bool(corr.get("hand_edited"))
            items.append(item)
        session = cls(targets, items, d.get("predictions"))
        position = d.get("position")
        if isinstance(position, int) and 0 <= position < len(items):
            session.position = position
        return session

    def resume_item(self) -> ReviewItem | None:
        """Where to continue: the item the reviewer was at, else the first unreviewed one in
        review order, else the first."""
        if self.position is not None and 0 <= self.position < len(self.items):
            return self.items[self.position]
        return next((i for i in self.order if i.state == UNREVIEWED), self.order[0] if self.order else None)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReviewSession":
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            raise ReviewError(f"{path}: cannot read the review session ({e}).") from e
        try:
            return cls.from_json(d)
        except ReviewError as e:
            raise ReviewError(f"{path}: {e}") from e
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ReviewError(f"{path}: damaged review session ({type(e).__name__}: {e}).") from e

    @classmethod
    def open_predictions(cls, path: str | os.PathLike) -> "ReviewSession":
        """The review of a predictions file (or of a review file itself), continued from its
        review file if there is one; see :func:`find_review_for`."""
        if is_review_file(path):
            return cls.load(path)
        found = find_review_for(path)
        if found is not None:
            return cls.load(found)
        return cls.from_predictions_file(path)

    # -- queries -------------------------------------------------------------------
    def visible(self, filter_name: str = "all") -> list[ReviewItem]:
        """Items in worst-first order, those the filter shows ("all", or a state)."""
        try:
            states = FILTERS[filter_name]
        except KeyError:
            raise ValueError(f"unknown filter {filter_name!r}; one of {sorted(FILTERS)}") from None
        return [item for item in self.order if item.state in states]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for item in self.items:
            out[item.state] += 1
        out["total"] = len(self.items)
        out["reviewed"] = out[ACCEPTED] + out[REJECTED]
        out["written"] = sum(1 for item in self.items if item.written)
        out["specimens"] = len(self.targets)
        out["failed"] = sum(1 for t in self.targets if t.error)
        return out

    def counts_text(self) -> str:
        c = self.counts()
        text = (f"{c['reviewed']} of {c['total']} reviewed: {c[ACCEPTED]} accepted, "
                f"{c[REJECTED]} rejected")
        if c["written"]:
            text += f" ({c['written']} written to the store)"
        return text

    def items_of(self, target: ReviewTarget) -> list[ReviewItem]:
        return [item for item in self.items if item.target is target]

    def structure_names(self) -> list[str]:
        return list(dict.fromkeys(item.structure for item in self.items))

    # -- actions (each one undoable) -----------------------------------------------
    def set_state(self, item: ReviewItem, state: str) -> bool:
        """Accept/reject/un-review one item; returns False if it already had that state."""
        return self._set_states(f"{state} {item.label}", [item], state)

    def accept(self, item: ReviewItem) -> bool:
        return self.set_state(item, ACCEPTED)

    def reject(self, item: ReviewItem) -> bool:
        return self.set_state(item, REJECTED)

    def set_target_state(self, target: ReviewTarget, state: str, only_unreviewed: bool = True) -> int:
        """Accept/reject the structures of a specimen in one action: by default only those
        not reviewed yet, so an explicit decision on one structure is never overridden.
        Items already written to the store are left as they are. Returns how many changed."""
        items = [i for i in self.items_of(target)
                 if not i.written and (not only_unreviewed or i.state == UNREVIEWED) and i.state != state]
        self._set_states(f"{state} {target.label}", items, state)
        return len(items)

    def _set_states(self, description: str, items: list[ReviewItem], state: str) -> bool:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        for item in items:
            self._check_not_written(item)
        items = [i for i in items if i.state != state]
        if not items:
            return False
        self._undo.append((description, [(i, i._snapshot()) for i in items]))
        for item in items:
            item.state = state
        self._changed()
        return True

    def correct(self, item: ReviewItem, mask: Optional[np.ndarray], points: Sequence[tuple]) -> None:
        """Replace the item's mask by a corrected one (from ``points``: (x, y, 1|0)); undoable.
        The item's state is kept; the reviewer still accepts it."""
        self._check_not_written(item)
        t = item.target
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if t.height and t.width and mask.shape != (t.height, t.width):
                raise ReviewError(f"the corrected mask of {item.label} is {mask.shape[1]} x {mask.shape[0]} px "
                                  f"but the specimen is {t.width} x {t.height} px.")
        if not points:
            raise ValueError("a correction needs at least one point")
        self._undo.append((f"fix {item.label}", [(item, item._snapshot())]))
        item.corrected_mask = mask
        item.points = [(float(x), float(y), int(lab)) for x, y, lab in points]
        self._changed()

    def edit(self, item: ReviewItem, mask: np.ndarray, description: str = "edit") -> None:
        """Replace the item's mask by one drawn or edited by hand (polygon, brush, eraser,
        vertices, fill holes); undoable, one step per edit. The state is kept."""
        self._check_not_written(item)
        mask = np.asarray(mask, dtype=bool)
        t = item.target
        if t.height and t.width and mask.shape != (t.height, t.width):
            raise ReviewError(f"the edited mask of {item.label} is {mask.shape[1]} x {mask.shape[0]} px "
                              f"but the specimen is {t.width} x {t.height} px.")
        self._undo.append((f"{description} {item.label}", [(item, item._snapshot())]))
        item.corrected_mask = mask
        item.hand_edited = True
        self._changed()

    def revert_correction(self, item: ReviewItem) -> bool:
        """Back to the predicted mask (undoable); False if the item was not corrected."""
        self._check_not_written(item)
        if not item.corrected:
            return False
        self._undo.append((f"revert fix of {item.label}", [(item, item._snapshot())]))
        item.corrected_mask, item.points, item.hand_edited = None, [], False
        self._changed()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo_text(self) -> str:
        return self._undo[-1][0] if self._undo else ""

    def undo(self) -> list[ReviewItem]:
        """Undo the last action; returns the items it restored ([] if nothing to undo)."""
        return self._move(self._undo, self._redo)

    def _move(self, source: list, target: list) -> list[ReviewItem]:
        """Restore the snapshots on top of ``source`` (undo or redo), keeping the present state
        on ``target`` so it can be restored in turn."""
        if not source:
            return []
        text, snaps = source.pop()
        target.append((text, [(item, item._snapshot()) for item, _ in snaps]))
        for item, snap in snaps:
            item._restore(snap)
        self._changed(redoable=True)
        return [item for item, _ in snaps]

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def redo(self) -> list[ReviewItem]:
        """Do again what the last undo took back; returns the items it changed."""
        return self._move(self._redo, self._undo)

    def _check_not_written(self, item: ReviewItem) -> None:
        if item.written:
            raise ReviewError(f"{item.label} is already in the Descriptron store; change it there.")

    def _changed(self, redoable: bool = False) -> None:
        if not redoable:
            self._redo.clear()  # a new action: what was undone cannot be redone any more
        for listener in list(self.listeners):
            listener()

    # -- write-back -------------------------------------------------------------------
    def write_back(self, store: Any, replace_existing: bool = False, record_absent: bool = True
                   ) -> WriteBackSummary:
        """Put the accepted items into ``store`` (an AnnotationStore); nothing else is touched.

        Each accepted item with a mask becomes ``store.add_structure(image, name, mask,
        attributes={"source": "sam2pal", "score", "object_score", "predicted_iou",
        "reviewed": "accepted", "corrected"}, replace=...)``. An unreviewed sam2pal
        prediction of that structure already in the store (``attributes.source ==
        "sam2pal"``) is replaced; an outline of the user's is replaced only with
        ``replace_existing``, else the item is skipped (reported), never duplicated. An accepted *absent*
        prediction (the reviewer agrees the structure is missing) sets the image's
        ``structure_status`` to "absent" when ``record_absent``. Items are matched to
        store images by file name (by id only for a specimen without a file); every accepted item is checked
        before the store is changed, so one bad item cannot leave half a change.
        The caller saves the store.
        """
        from descriptron_sam2pal.store import StoreError

        summary = WriteBackSummary()
        plan: list[tuple[ReviewItem, Any]] = []
        for item in self.items:
            if item.state != ACCEPTED:
                summary.not_accepted += 1
                continue
            if item.written:
                summary.already_written += 1
                continue
            reason, image = self._check_writable(store, item, replace_existing, record_absent)
            if reason:
                summary.skipped.append((item.label, reason))
            else:
                plan.append((item, image))
        done = 0
        try:
            for item, image in plan:
                if item.absent:
                    store.set_structure_status(image.id, item.structure, "absent")
                    item.written = {"annotation_id": None, "status": "absent"}
                    summary.marked_absent.append((image.id, item.structure))
                else:
                    attrs = {"source": SOURCE, "score": _round(item.score),
                             "object_score": _round(item.object_score),
                             "predicted_iou": _round(item.predicted_iou),
                             "reviewed": ACCEPTED, "corrected": item.corrected}
                    ann_id = write_structure(store, image, item.structure, drop_fragments(item.current_mask),
                                             attrs, replace_user=replace_existing)
                    item.written = {"annotation_id": ann_id, "status": None}
                    summary.written.append((image.id, item.structure, ann_id))
                done += 1
        except (StoreError, ValueError) as e:
            item = plan[done][0]
            raise ReviewError(f"Writing {item.label} into the store failed: {e}. "
                              f"{done} structures were written before it (they stay marked as written).") from e
        finally:
            if done:
                self._undo.clear()  # the store has them now: no undo past this point
                self._changed()
        return summary

    def _check_writable(self, store: Any, item: ReviewItem, replace_existing: bool,
                        record_absent: bool) -> tuple[str, Any]:
        """("", store image) when the item may be written, else (reason, None): the rules of
        ``store.merge`` (the same as ``propagate --write-to``)."""
        from descriptron_sam2pal.store import StoreError

        t = item.target
        try:
            image = find_image(store, t.image_id, t.path, t.file_name)
        except StoreError as e:
            return str(e), None
        if image is None:
            return "this specimen is not in the open Descriptron project", None
        if item.absent and not record_absent:
            return "predicted absent (nothing to write)", None
        shape = None if item.absent else tuple(item.current_mask.shape)
        if shape is not None and not drop_fragments(item.current_mask).any():
            return (f"its outline is only specks smaller than {fragment_area(shape):.0f} px\u00b2 "
                    "(draw or fix it larger)"), None
        reason = why_not_writable(store, image, item.structure, shape, replace_user=replace_existing)
        return (reason, None) if reason else ("", image)


#: The one name of a review file: in the run folder, next to the predictions (``review.json``).
REVIEW_FILE_NAME = "review.json"
#: Where ``sam2pal`` puts its runs inside a project folder (``<project>/sam2pal_runs/run-*/``).
RUNS_FOLDER_NAME = "sam2pal_runs"


def review_path_for(predictions_path: str | os.PathLike) -> Path:
    """Where the review of a predictions file (or a run folder) is kept: ``review.json`` in the
    run folder. A review file is its own review path."""
    p = Path(predictions_path)
    if p.is_dir():
        return p / REVIEW_FILE_NAME
    if is_review_file(p):
        return p
    return p.with_name(REVIEW_FILE_NAME)


def legacy_review_path_for(predictions_path: str | os.PathLike) -> Path:
    """Where versions before 0.3 kept the review from the panel: ``<predictions stem>.review.json``."""
    p = Path(predictions_path)
    return p.with_name(p.stem + ".review.json")


def is_review_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a saved review (``"format": "sam2pal-review"``), read cheaply."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() != ".json":
        return False
    try:
        with open(p, encoding="utf-8") as f:
            head = f.read(256)
    except OSError:
        return False
    return f'"format":"{SESSION_FORMAT}"' in head.replace(" ", "")


def find_review_for(predictions_path: str | os.PathLike) -> Path | None:
    """The saved review of a predictions file: ``review.json`` in its folder when that review is
    of this file (or of a file of the same run, e.g. the journal next to the COCO predictions),
    else the older ``<stem>.review.json``; None when there is none."""
    p = Path(predictions_path)
    candidate = review_path_for(p)
    if candidate.is_file() and candidate != p:
        recorded = review_summary(candidate).get("predictions")
        if not recorded or _same_run(Path(recorded), p):
            return candidate
    legacy = legacy_review_path_for(p)
    return legacy if legacy.is_file() else None


#: The journal the GUI wrote before runs kept a predictions file (``<run>/propagation.jsonl``).
JOURNAL_NAME = "propagation.jsonl"


def _same_run(recorded: Path, opened: Path) -> bool:
    """The review recorded ``recorded`` as its predictions: is ``opened`` that file, or the other
    record of the same run (the journal and the predictions written from it)?"""
    try:
        if recorded.resolve() == opened.resolve():
            return True
        same_folder = recorded.parent.resolve() == opened.parent.resolve()
    except OSError:
        return False
    return same_folder and (JOURNAL_NAME in (recorded.name, opened.name)
                            or journal_path(recorded).name == opened.name
                            or journal_path(opened).name == recorded.name)


def review_summary(path: str | os.PathLike) -> dict:
    """What a review file holds, without decoding masks: ``{"path", "predictions", "saved",
    "total", "reviewed", "accepted", "rejected"}`` ({} when it cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(d, dict) or d.get("format") != SESSION_FORMAT:
        return {}
    states = [e.get("state", UNREVIEWED) for e in d.get("items") or [] if isinstance(e, dict)]
    return {"path": str(path), "predictions": d.get("predictions"), "saved": d.get("saved"),
            "total": len(states), "reviewed": sum(s != UNREVIEWED for s in states),
            "accepted": states.count(ACCEPTED), "rejected": states.count(REJECTED)}


def latest_review(project_path: str | os.PathLike | None) -> Path | None:
    """The most recently saved review of a project: the newest ``sam2pal_runs/*/review.json``
    under the project's folder (the folder itself, or the annotation file's folder)."""
    if not project_path:
        return None
    base = Path(project_path)
    base = base if base.is_dir() else base.parent
    runs = base / RUNS_FOLDER_NAME
    if not runs.is_dir():
        return None
    found = [p for p in runs.glob(f"*/{REVIEW_FILE_NAME}") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _info_of(path: Path) -> Any:
    """The ``info`` of a COCO file (the store does not expose it)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("info")
    except (OSError, ValueError, AttributeError):
        return None


def _check_rle(rle: Any, name: Any) -> None:
    """Masks are decoded only when shown; check now that they will decode (cheaply)."""
    if not (isinstance(rle, dict) and isinstance(rle.get("counts"), list) and isinstance(rle.get("size"), list)
            and len(rle["size"]) == 2 and sum(rle["counts"]) == rle["size"][0] * rle["size"][1]):
        raise ValueError(f"the mask of {name!r} is not a valid RLE")


def _opt_float(value: Any) -> Optional[float]:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 4)
