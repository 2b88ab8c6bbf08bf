"""Where a review is kept and found: ``review.json`` in the run folder, next to the predictions
(earlier versions: ``<predictions stem>.review.json``), and a project's newest review (its
``sam2pal_runs/*/review.json``), read without decoding any mask."""

from __future__ import annotations

import json
import os
from pathlib import Path

from descriptron_sam2pal.jobs.propagation import journal_path
from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED, SESSION_FORMAT, UNREVIEWED

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
    return same_folder and (
        JOURNAL_NAME in (recorded.name, opened.name)
        or journal_path(recorded).name == opened.name
        or journal_path(opened).name == recorded.name
    )


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
    return {
        "path": str(path),
        "predictions": d.get("predictions"),
        "saved": d.get("saved"),
        "total": len(states),
        "reviewed": sum(s != UNREVIEWED for s in states),
        "accepted": states.count(ACCEPTED),
        "rejected": states.count(REJECTED),
    }


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


def predictions_folder(session_path: str | os.PathLike | None, project_path: str | os.PathLike | None) -> str:
    """Where "Open predictions..." starts: the open review's run folder, else the project's newest
    run, else its runs folder, else the project folder ("" without any)."""
    if session_path is not None:
        return str(Path(session_path).parent)
    latest = latest_review(project_path)
    if latest is not None:
        return str(latest.parent)
    if project_path:
        base = Path(project_path) if Path(project_path).is_dir() else Path(project_path).parent
        runs = base / RUNS_FOLDER_NAME
        return str(runs if runs.is_dir() else base)
    return ""
