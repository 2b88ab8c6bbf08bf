"""Files this program wrote, recognised by their content (never by their name alone).

Every file we write for a run carries a mark that a person's annotation file does not:

* a predictions file (``propagate --out``, its ``.rlejson`` companion, a GUI run's
  ``predictions.json``) starts with the top-level key ``"sam2pal_output": "predictions"``
  (files of earlier versions start with ``"info": {"description": "SAM2-PAL predictions"``);
* a propagation journal (``<out>.journal.jsonl``) is JSON lines ``{"v": .., "run": .., ...}``;
* a training run folder holds ``sam2pal_run.json`` (``"sam2pal_output": "training run"``), or,
  from earlier versions, a ``settings.json`` with the trainer's own keys.

Only the first few kilobytes of a file are read. A file of ours may be replaced by a later run
(``jobs.outputs``) and is never read as the user's store or templates.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

#: Top-level key (first in the file) of every JSON file we write as a run output.
OUTPUT_KEY = "sam2pal_output"
PREDICTIONS = "predictions"
TRAINING_RUN = "training run"
JOURNAL = "journal"
#: The manifest that makes a folder a training run folder of ours.
RUN_MANIFEST = "sam2pal_run.json"

_HEAD_BYTES = 4096
_PREDICTIONS_HEAD = re.compile(
    r'^\s*\{\s*(?:"%s"\s*:\s*"%s"|"info"\s*:\s*\{\s*"description"\s*:\s*"SAM2-PAL predictions")'
    % (OUTPUT_KEY, PREDICTIONS))
_JOURNAL_HEAD = re.compile(r'^\{"v":\s*\d+,\s*"run":\s*"')
_TRAINER_SETTINGS_KEYS = {"package_version", "versions", "config", "model", "structures", "templates"}


def _head(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(_HEAD_BYTES).decode("utf-8", errors="replace").lstrip("\ufeff")
    except OSError:
        return ""


def is_our_predictions(path: str | os.PathLike) -> bool:
    """A predictions file (.json or .rlejson) this program wrote."""
    p = Path(path)
    return p.is_file() and bool(_PREDICTIONS_HEAD.match(_head(p)))


def is_our_journal(path: str | os.PathLike) -> bool:
    """A propagation journal this program wrote (an empty file counts: a run cut off at once)."""
    p = Path(path)
    if not p.is_file():
        return False
    head = _head(p)
    return head == "" and p.stat().st_size == 0 or bool(_JOURNAL_HEAD.match(head))


def is_our_run_folder(path: str | os.PathLike) -> bool:
    """A training run folder this program made (its manifest, or an earlier version's settings)."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    manifest = folder / RUN_MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get(OUTPUT_KEY) == TRAINING_RUN:
            return True
    settings = folder / "settings.json"
    if settings.is_file() and settings.stat().st_size < 50_000_000:
        try:
            data = json.loads(settings.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (isinstance(data, dict) and _TRAINER_SETTINGS_KEYS <= set(data)
                and isinstance(data.get("config"), dict))
    return False


def our_file_kind(path: str | os.PathLike) -> str | None:
    """What a file of ours is (PREDICTIONS, JOURNAL), or None for anything else."""
    if is_our_predictions(path):
        return PREDICTIONS
    if Path(path).name.endswith(".jsonl") and is_our_journal(path):
        return JOURNAL
    return None


#: The temporary files our atomic writes make next to their target: ``.<name>.<random>.tmp``.
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def our_leftover_temps(folder: str | os.PathLike, names: set[str] | None = None) -> list[Path]:
    """Temporary files an atomic write of ours left in ``folder`` when it was killed: for the
    target ``names`` given, or (None) for Descriptron ``_final_`` pairs and our own outputs."""
    from descriptron_sam2pal.store.stem import parse_final_name

    folder = Path(folder)
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if not m or not p.is_file():
            continue
        target = m["name"]
        if names is not None:
            if target in names:
                found.append(p)
        elif parse_final_name(target):
            found.append(p)
    return sorted(found)
