"""The Review use case, without any Qt: what a review of propagation results is (items, states,
undo), and its session file. The Review panel (``gui.review_panel``) drives it.

A :class:`ReviewSession` holds one :class:`ReviewItem` per (target specimen,
structure) of a propagation run, ordered **worst first** (predicted-absent
structures first, then by the review score ascending (engine.review_score), ties by SAM2's object
score ascending). Each item is *unreviewed*, *accepted* or *rejected*; a
correction (point prompts re-run through SAM2) replaces the item's mask. Every
change is one undoable action.

Its neighbours, each with one reason to change:

* ``jobs.review_predictions``: reading a predictions file (COCO or a journal) into a session;
* ``jobs.review_files``: where a review is kept (``review.json`` in the run folder) and found;
* ``jobs.write_back``: :meth:`ReviewSession.write_back` puts the accepted items (only those)
  into a Descriptron :class:`~descriptron_sam2pal.store.AnnotationStore`, after the checks
  ``propagate --write-to`` passes too (``jobs.store_target``); items written are marked so a
  second write-back does not duplicate them, and they are locked (the store has them now:
  change them in Descriptron). Writing back cannot be undone here, so it clears the undo history.

A session is saved as JSON (:meth:`ReviewSession.save`, masks as uncompressed
COCO RLE), as ``review.json`` in the run folder (``jobs.review_files.review_path_for``),
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
                "correction": null | {"mask": RLE | null, "points": [[x, y, 1 | 0], ...],
                                      "hand_edited": bool},
                "written": null | {"annotation_id": int | null, "status": "absent" | null}}],
     "position": <index into items> | null}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections import OrderedDict
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import numpy as np

from descriptron_sam2pal import UserError
from descriptron_sam2pal.atomic import atomic_write_text
from descriptron_sam2pal.imaging.masks import mask_to_rle, rle_to_mask

if TYPE_CHECKING:
    from descriptron_sam2pal.jobs.write_back import WriteBackSummary

UNREVIEWED = "unreviewed"
ACCEPTED = "accepted"
REJECTED = "rejected"
STATES = (UNREVIEWED, ACCEPTED, REJECTED)

#: Filter names (the panel's combo box) -> the states they show.
FILTERS: dict[str, tuple[str, ...]] = {
    "all": STATES,
    UNREVIEWED: (UNREVIEWED,),
    ACCEPTED: (ACCEPTED,),
    REJECTED: (REJECTED,),
}

SESSION_FORMAT = "sam2pal-review"
SESSION_VERSION = 1


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
        return {
            "image_id": self.image_id,
            "path": self.path,
            "file_name": self.file_name,
            "height": self.height,
            "width": self.width,
            "orientation": self.orientation,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: dict) -> "ReviewTarget":
        return cls(
            d.get("image_id"),
            d.get("path"),
            int(d.get("height") or 0),
            int(d.get("width") or 0),
            d.get("file_name") or "",
            d.get("orientation") or "identity",
            d.get("error"),
        )


@dataclass(eq=False, repr=False)
class ReviewItem:
    """One structure predicted on one specimen, and what the reviewer made of it.

    ``prediction`` is the predicted mask ((H, W) bool on the specimen's own grid; None when
    SAM2 predicted the structure absent), or ``prediction_rle`` the same as uncompressed COCO
    RLE; :attr:`mask` gives it back. ``corrected_mask`` (if the reviewer fixed it with points
    or by hand; None otherwise) replaces it for display and write-back; ``points`` are the
    prompts of that correction ((x, y, 1 positive | 0 negative)), ``hand_edited`` says it was
    drawn or edited by hand (polygon, brush, eraser, vertices). ``written`` is set once the
    item went into the store; ``index`` is its position in the run (targets in input order,
    structures in order).

    Hundreds of full-resolution masks do not fit in memory, so once a prediction
    has its RLE (:meth:`compact`, or read from a session file) only the RLE is
    kept; ``mask`` decodes it on demand and the last :data:`DECODED_CACHE_SIZE`
    decoded masks are kept.
    """

    target: ReviewTarget
    structure: str
    present: bool
    prediction: InitVar[Optional[np.ndarray]]
    score: Optional[float]
    object_score: Optional[float]
    predicted_iou: Optional[float]
    state: str = UNREVIEWED
    corrected_mask: Optional[np.ndarray] = None
    points: list = field(default_factory=list)
    written: Optional[dict] = None
    prediction_rle: InitVar[Optional[dict]] = None
    hand_edited: bool = False
    index: int = 0
    _mask: Optional[np.ndarray] = field(init=False, default=None)
    _rle: Optional[dict] = field(init=False, default=None)
    _decoded: Optional[np.ndarray] = field(init=False, default=None)
    _empty: bool = field(init=False, default=True)

    def __post_init__(self, prediction: Optional[np.ndarray], prediction_rle: Optional[dict]) -> None:
        self.points = list(self.points or [])
        self._mask = None if prediction is None else np.asarray(prediction, dtype=bool)
        self._rle = prediction_rle
        if self._mask is not None:
            self._empty = not bool(self._mask.any())
        elif prediction_rle is not None:
            self._empty = not any(prediction_rle["counts"][1::2])
        self.present = bool(self.present) and not self._empty

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


# --------------------------------------------------------------------------- session


class ReviewSession:
    """Review state of one propagation run; see the module docstring."""

    def __init__(
        self,
        targets: Sequence[ReviewTarget],
        items: Sequence[ReviewItem],
        predictions_path: str | os.PathLike | None = None,
    ) -> None:
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
    def from_results(
        cls, results: Iterable[Any], predictions_path: str | os.PathLike | None = None, compact: bool = False
    ) -> "ReviewSession":
        """From ``engine.memory_propagation.TargetResult`` objects (anything with their attributes).

        ``compact`` keeps the masks as RLE only (encoding big masks takes a while, so do
        it in a worker thread for big runs): memory stays small once the results are
        dropped, and saving the session is quick from the start."""
        targets, items = [], []
        for r in results:
            t = ReviewTarget(
                r.image_id,
                str(r.path) if r.path is not None else None,
                int(r.height or 0),
                int(r.width or 0),
                orientation=getattr(r, "orientation", "identity") or "identity",
                error=getattr(r, "error", None),
            )
            targets.append(t)
            for name, s in (r.structures or {}).items():
                mask = None if s.mask is None else np.asarray(s.mask, dtype=bool)
                items.append(
                    ReviewItem(
                        t,
                        name,
                        bool(s.present) and mask is not None,
                        mask,
                        optional_float(s.score),
                        optional_float(s.object_score),
                        optional_float(s.predicted_iou),
                    )
                )
                if compact:
                    items[-1].compact()
        return cls(targets, items, predictions_path)

    @classmethod
    def from_predictions_file(cls, path: str | os.PathLike) -> "ReviewSession":
        """From a predictions file written by ``sam2pal propagate``: a COCO file (``.json`` /
        ``.rlejson``) or a ``.jsonl`` journal, every item unreviewed (``jobs.review_predictions``)."""
        from descriptron_sam2pal.jobs.review_predictions import read_predictions

        return read_predictions(path)

    # -- saving and loading ------------------------------------------------------
    def to_json(self) -> dict:
        index = {id(t): i for i, t in enumerate(self.targets)}
        items = []
        for item in self.items:
            rle = item.mask_rle()
            correction = None
            if item.corrected:
                correction = {
                    "mask": mask_to_rle(item.corrected_mask) if item.corrected_mask is not None else None,
                    "points": [[float(x), float(y), int(lab)] for x, y, lab in item.points],
                    "hand_edited": item.hand_edited,
                }
            items.append(
                {
                    "target": index[id(item.target)],
                    "structure": item.structure,
                    "present": item.present,
                    "score": item.score,
                    "object_score": item.object_score,
                    "predicted_iou": item.predicted_iou,
                    "mask": rle,
                    "state": item.state,
                    "correction": correction,
                    "written": item.written,
                }
            )
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "saved": _dt.datetime.now().isoformat(timespec="seconds"),
            "predictions": self.predictions_path,
            "targets": [t.to_json() for t in self.targets],
            "items": items,
            "position": self.position,
        }

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
            raise ReviewError(
                f"this review session was written by a newer version (format "
                f"{d.get('version')}); update descriptron-sam2pal to continue it."
            )
        targets = [ReviewTarget.from_json(t) for t in d["targets"]]
        items = []
        for e in d["items"]:
            state = e.get("state", UNREVIEWED)
            if state not in STATES:
                raise ReviewError(f"unknown review state {state!r} in the session file")
            rle = e.get("mask")
            if rle is not None:
                _check_rle(rle, e.get("structure"))
            item = ReviewItem(
                targets[int(e["target"])],
                e["structure"],
                bool(e.get("present")),
                None,
                optional_float(e.get("score")),
                optional_float(e.get("object_score")),
                optional_float(e.get("predicted_iou")),
                state,
                written=e.get("written"),
                prediction_rle=rle,
            )
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
        review file if there is one; see ``jobs.review_files.find_review_for``."""
        from descriptron_sam2pal.jobs.review_files import find_review_for, is_review_file

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
        text = f"{c['reviewed']} of {c['total']} reviewed: {c[ACCEPTED]} accepted, {c[REJECTED]} rejected"
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
        items = [
            i
            for i in self.items_of(target)
            if not i.written and (not only_unreviewed or i.state == UNREVIEWED) and i.state != state
        ]
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
                raise ReviewError(
                    f"the corrected mask of {item.label} is {mask.shape[1]} x {mask.shape[0]} px "
                    f"but the specimen is {t.width} x {t.height} px."
                )
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
            raise ReviewError(
                f"the edited mask of {item.label} is {mask.shape[1]} x {mask.shape[0]} px "
                f"but the specimen is {t.width} x {t.height} px."
            )
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

    def forget_undo(self) -> None:
        """Nothing done so far can be undone (it went into the store); listeners are told."""
        self._undo.clear()
        self._changed()

    # -- write-back ------------------------------------------------------------------
    def check_write_back(self, store: Any) -> None:
        """Raise (a UserError saying what to do) when :meth:`write_back` into ``store`` is refused
        before anything is written; see ``jobs.write_back.check_write_back``."""
        from descriptron_sam2pal.jobs.write_back import check_write_back

        check_write_back(self, store)

    def write_back(
        self, store: Any, replace_existing: bool = False, record_absent: bool = True
    ) -> "WriteBackSummary":
        """Put the accepted items into ``store`` (an AnnotationStore) after the checks of
        :meth:`check_write_back`; see ``jobs.write_back.write_back``. The caller saves the store."""
        from descriptron_sam2pal.jobs.write_back import write_back

        return write_back(self, store, replace_existing=replace_existing, record_absent=record_absent)


def _check_rle(rle: Any, name: Any) -> None:
    """Masks are decoded only when shown; check now that they will decode (cheaply)."""
    if not (
        isinstance(rle, dict)
        and isinstance(rle.get("counts"), list)
        and isinstance(rle.get("size"), list)
        and len(rle["size"]) == 2
        and sum(rle["counts"]) == rle["size"][0] * rle["size"][1]
    ):
        raise ValueError(f"the mask of {name!r} is not a valid RLE")


def optional_float(value: Any) -> Optional[float]:
    """``value`` as a float; None when it is missing, not a number or NaN."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
