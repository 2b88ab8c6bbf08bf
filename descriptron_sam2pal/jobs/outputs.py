"""The one rule for every path we write, checked before any work.

**The output rule.** A path we would write is allowed only if (1) nothing is there, or
(2) it is a file this program wrote, recognised by its content (``store.ours``: a mark in
our predictions files and journals, a manifest in our training run folders), or (3) the
user said so explicitly (``--overwrite``; the GUI only ever writes into run folders of its
own). Anything else is refused before any work, with a message naming the file and what to
do. Nothing is ever moved aside to a ``.bak`` in place of a refusal. On top of that an
output may never be one of the job's inputs (a template store, a photo, the checkpoint,
the store ``--write-to`` merges into), not even with ``--overwrite``; and an output that
is a folder where a file is expected (or the other way round), or whose folder cannot be
written, is refused up front too. ``propagate --out`` (with its ``.rlejson`` and journal),
``train --out``, the GUI's run folders and ``--write-to`` / Write back (a new ``_final_``
file never replaces one, a session file is the store the user chose) go through here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping

from descriptron_sam2pal import UserError
from descriptron_sam2pal.store.ours import (
    OUTPUT_KEY,
    PREDICTIONS,
    RUN_MANIFEST,
    TRAINING_RUN,
    is_our_run_folder,
    our_file_kind,
    our_leftover_temps,
)
from descriptron_sam2pal.store.stem import companion_path

log = logging.getLogger(__name__)

#: What to add to a command for rule (3).
OVERWRITE_HINT = "add --overwrite to replace it"
#: An output folder with less free space than this is refused before the work (a full disk).
MIN_FREE_BYTES = 16 * 1024 * 1024
#: A temporary file of ours older than this is a leftover of a killed run (a live one is newer).
LEFTOVER_AGE_S = 120.0


def _same_file_key(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser())).absolute()


def with_companions(path: str | os.PathLike) -> list[Path]:
    """``path`` and the files that travel with it (the ``.json``/``.rlejson`` pair)."""
    p = Path(path)
    if p.suffix.lower() in (".json", ".rlejson"):
        return [p, companion_path(p)]
    return [p]


def check_outputs(
    outputs: Mapping[str, Iterable[str | os.PathLike]], inputs: Mapping[str, Iterable[str | os.PathLike]]
) -> None:
    """UserError when an output file is one of the inputs (or two outputs are one file).
    ``outputs`` / ``inputs``: {what it is for the user ("--out"): paths}."""
    taken: dict[Path, str] = {}
    for label, paths in inputs.items():
        for p in paths:
            for q in with_companions(p):
                taken.setdefault(_same_file_key(q), f"{label} ({p})")
    written: dict[Path, str] = {}
    for label, paths in outputs.items():
        for p in paths:
            for q in with_companions(p):
                key = _same_file_key(q)
                if key in taken:
                    raise UserError(
                        f"{label} {p} would overwrite {taken[key]}; choose another output "
                        "file (your annotations and photos are never written over)"
                    )
                if key in written and written[key] != label:
                    raise UserError(
                        f"{label} and {written[key]} are the same file ({p}); give them different names"
                    )
                written[key] = label


def check_writable_folder(folder: str | os.PathLike, label: str) -> None:
    """UserError unless files can be created in ``folder``, or (when it does not exist yet)
    in the nearest folder above it that does, and its disk has ``MIN_FREE_BYTES`` free;
    nothing is left behind."""
    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write {label} into {folder}: {existing} is a file; choose a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".sam2pal-write-test-"):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write {label} into {folder} ({exc.strerror or exc}); choose a folder you "
            "can write to, or free some space"
        ) from None
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise UserError(
            f"cannot write {label} into {folder}: only {free // 1024} KiB free on its disk; free "
            "some space (or choose a folder on another disk) and run again; nothing was done"
        )


def check_output_file(
    path: str | os.PathLike,
    label: str,
    *,
    overwrite: bool = False,
    kinds: Iterable[str] = (PREDICTIONS,),
    example: str = "predictions.json",
) -> None:
    """The output rule for one file we would write (see the module docstring); ``label`` names
    it for the user (the path is added unless it holds it). UserError unless
    nothing is there, it is a file of ours of one of ``kinds`` (``store.ours``), or ``overwrite``.
    A folder where the file should be is refused whatever ``overwrite`` says."""
    p = Path(path).expanduser()
    label = f"{label} {p}" if str(p) not in label else label
    if p.is_dir():
        raise UserError(f"{label} is a folder; give a file name instead, e.g. {p / example}")
    if not os.path.lexists(p):
        return
    if not p.is_file():
        raise UserError(f"{label} exists and is not a regular file; choose another file name")
    if our_file_kind(p) in set(kinds) or overwrite:
        return
    raise UserError(
        f"{label} already exists and was not written by sam2pal, so it is not replaced; "
        f"nothing was done. Choose a new file name, or {OVERWRITE_HINT}"
    )


def check_predictions_out(
    out: str | os.PathLike, journal: str | os.PathLike, label: str = "--out", *, overwrite: bool = False
) -> None:
    """``propagate --out``: a ``.json`` (or ``.rlejson``) name, and the rule for the file, its
    companion and its journal."""
    p = Path(out).expanduser()
    if not p.is_dir() and p.suffix.lower() not in (".json", ".rlejson"):
        raise UserError(
            f"{label} {p}: the predictions are a COCO annotation file; give a name ending "
            f"in .json, e.g. {p.with_suffix('.json').name}"
        )
    for q in with_companions(p):
        check_output_file(
            q,
            f"{label} {q}" if q == p else f"{q} (the .json/.rlejson pair of {label} {p.name})",
            overwrite=overwrite,
        )
    check_output_file(
        journal, f"{journal} (the journal of {label} {p.name})", overwrite=overwrite, kinds=("journal",)
    )


def run_files() -> tuple[str, ...]:
    """The names a training run writes into its folder."""
    from descriptron_sam2pal.engine.run_folder import (
        ADAPTER_FILE,
        LOG_FILE,
        RESULT_FILE,
        SETTINGS_FILE,
        STATE_FILE,
    )

    return (RUN_MANIFEST, SETTINGS_FILE, LOG_FILE, ADAPTER_FILE, STATE_FILE, RESULT_FILE)


def check_run_folder(run_dir: str | os.PathLike, label: str = "--out", *, overwrite: bool = False) -> None:
    """The output rule for a training run folder: a new or empty folder, one of ours (its
    manifest), or a folder holding none of the files a run writes; else refused, naming the
    files, unless ``overwrite``."""
    folder = Path(run_dir).expanduser()
    if os.path.lexists(folder) and not folder.is_dir():
        raise UserError(f"{label} {folder} is a file; give a folder for the training run (--out RUN_DIR)")
    if not folder.is_dir() or is_our_run_folder(folder) or overwrite:
        return
    clashes = [name for name in run_files() if os.path.lexists(folder / name)]
    if clashes:
        raise UserError(
            f"{label} {folder} already holds {', '.join(clashes)}, which sam2pal did not write "
            f"(it has no {RUN_MANIFEST}), so they are not replaced; nothing was done. Choose a new "
            f"or empty folder for the training run, or add --overwrite to replace them"
        )


def mark_run_folder(run_dir: str | os.PathLike) -> Path:
    """Write the manifest that makes ``run_dir`` a run folder of ours (``store.ours``)."""
    from descriptron_sam2pal import __version__
    from descriptron_sam2pal.atomic import atomic_write_text

    path = Path(run_dir).expanduser() / RUN_MANIFEST
    if is_our_run_folder(path.parent) and path.is_file():
        return path
    return atomic_write_text(
        path,
        json.dumps(
            {
                OUTPUT_KEY: TRAINING_RUN,
                "package_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=2,
        )
        + "\n",
    )


def remove_leftover_temps(
    folder: str | os.PathLike, names: Iterable[str] | None = None, min_age_s: float = LEFTOVER_AGE_S
) -> list[Path]:
    """Remove the temporary files that an atomic write of ours left in ``folder`` when it was
    killed (``.<name>.<random>.tmp``, for ``names``, or for Descriptron ``_final_`` pairs), at
    least ``min_age_s`` old (a write in progress keeps its file newer). Returns what was removed."""
    removed = []
    now = time.time()
    for p in our_leftover_temps(folder, set(names) if names is not None else None):
        try:
            if now - p.stat().st_mtime < min_age_s:
                continue
            p.unlink()
            removed.append(p)
        except OSError as exc:
            log.warning("could not remove the leftover temporary file %s (%s)", p, exc.strerror or exc)
    return removed
