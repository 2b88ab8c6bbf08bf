"""What propagation produces and remembers, without torch: results, targets and the journal.

The GUI, the store side (predictions files, write-back) and the CLI exchange
these; importing them must stay cheap (no torch, no Qt).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from descriptron_sam2pal.engine.orientation import IDENTITY
from descriptron_sam2pal.imaging.masks import mask_to_polygons, mask_to_rle, rle_to_mask
from descriptron_sam2pal.store.merge import SKIP_STATUSES

if TYPE_CHECKING:
    from descriptron_sam2pal.engine.preprocess import PreparedImage

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1


@dataclass(eq=False)
class StructureResult:
    """One structure on one target.

    ``mask``: (H, W) bool on the target's own pixel grid, None when absent.
    ``score``: the review score in [0, 1], what the Review sorts by (worst
    first): the measured best predictor of a bad mask (engine.review_score;
    None when absent). ``object_score``: sigmoid of SAM2's object score logit
    (> 0.5 means present). ``predicted_iou``: SAM2's IoU estimate.
    ``palindrome_confidence``: the palindrome round trip's IoU in [0, 1] (None
    when absent or when the backward half was not run). ``stability``: SAM's
    stability of the mask (IoU of the mask at logit +1 and at -1), kept so that
    the score can be redone with the run's collection (engine.collection_score).
    """

    name: str
    present: bool
    mask: np.ndarray | None
    score: float | None
    object_score: float
    predicted_iou: float
    palindrome_confidence: float | None = None
    stability: float | None = None

    def polygons(self, tolerance: float = 0.0) -> list[list[float]]:
        """Flat COCO polygons of every component of the mask ([] when absent)."""
        return mask_to_polygons(self.mask, tolerance) if self.mask is not None else []

    def to_json(self) -> dict:
        return {
            "present": self.present,
            "score": self.score,
            "object_score": self.object_score,
            "predicted_iou": self.predicted_iou,
            "palindrome_confidence": self.palindrome_confidence,
            "stability": self.stability,
            "mask": mask_to_rle(self.mask) if self.mask is not None else None,
        }

    @classmethod
    def from_json(cls, name: str, d: dict) -> "StructureResult":
        mask = rle_to_mask(d["mask"]) if d.get("mask") is not None else None
        return cls(name, bool(d["present"]), mask, d.get("score"), float(d["object_score"]),
                   float(d["predicted_iou"]), d.get("palindrome_confidence"), d.get("stability"))


@dataclass(eq=False)
class TargetResult:
    """All structures of one target. ``error`` is set (and ``structures`` empty) when the
    target could not be read; ``skipped`` lists structures not predicted because the
    target's ``structure_status`` marks them absent/unknown; ``orientation`` is the one
    used (see :mod:`.orientation`); ``review_fit`` names the fit its scores come from
    (a key of ``engine.review_score.FITS``; None: not from propagation, not redone)."""

    image_id: Any
    path: str | None
    height: int
    width: int
    structures: dict[str, StructureResult] = field(default_factory=dict)
    orientation: str = IDENTITY
    error: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    from_journal: bool = False
    review_fit: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return {"image_id": self.image_id, "path": self.path, "height": self.height, "width": self.width,
                "orientation": self.orientation, "skipped": self.skipped, "review_fit": self.review_fit,
                "structures": {n: s.to_json() for n, s in self.structures.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "TargetResult":
        return cls(d.get("image_id"), d.get("path"), int(d["height"]), int(d["width"]),
                   {n: StructureResult.from_json(n, s) for n, s in d["structures"].items()},
                   d.get("orientation", IDENTITY), None, dict(d.get("skipped") or {}), True,
                   d.get("review_fit"))


@dataclass(eq=False)
class Target:
    """What to propagate to: an image file (``path``) or pixels (``image``: an RGB array
    or a PreparedImage), with an optional id and ``structure_status``."""

    path: str | None = None
    image: np.ndarray | PreparedImage | None = None
    image_id: Any = None
    structure_status: dict = field(default_factory=dict)

    @property
    def skipped(self) -> dict[str, str]:
        """{structure: status} of the structures its ``structure_status`` says not to predict."""
        return {n: s for n, s in (self.structure_status or {}).items() if s in SKIP_STATUSES}


class ResultJournal:
    """Append-only JSONL file of finished targets, so an interrupted run resumes.

    One line per target: ``{"v": 1, "run": <hash of model weights + templates +
    settings>, "key": <hash of image path + file content + structure_status>,
    "result": TargetResult.to_json()}`` (masks as uncompressed COCO RLE). Lines of
    another run are ignored; a damaged line (a crash mid-write) is skipped.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self, run: str) -> dict[str, dict]:
        records: dict[str, dict] = {}
        if not self.path.exists():
            return records
        with open(self.path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                    if rec.get("v") == JOURNAL_VERSION and rec.get("run") == run:
                        records[rec["key"]] = rec["result"]
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                    log.warning("%s:%d: damaged journal line ignored", self.path, lineno)
        return records

    def index(self, run: str) -> dict[str, int]:
        """{key: offset of its line} for ``run`` (the latest line of a key wins, as in :meth:`load`):
        what a long run keeps in memory instead of every result; :meth:`read` gives one back."""
        offsets: dict[str, int] = {}
        if not self.path.exists():
            return offsets
        with open(self.path, "rb") as f:
            offset = 0
            for lineno, line in enumerate(f, 1):
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    if rec.get("v") == JOURNAL_VERSION and rec.get("run") == run and "result" in rec:
                        offsets[rec["key"]] = start
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
                    log.warning("%s:%d: damaged journal line ignored", self.path, lineno)
        return offsets

    def read(self, offset: int) -> dict:
        """The result (``TargetResult.to_json()``) of the line at ``offset`` (from :meth:`index`)."""
        with open(self.path, "rb") as f:
            f.seek(offset)
            return json.loads(f.readline())["result"]

    def append(self, run: str, entries: list[tuple[str, TargetResult]]) -> None:
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({"v": JOURNAL_VERSION, "run": run, "key": key, "result": r.to_json()},
                                   separators=(",", ":")) + "\n" for key, r in entries)
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # a crash may have left a partial last line: start a fresh one
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    lines = "\n" + lines
            f.write(lines.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
