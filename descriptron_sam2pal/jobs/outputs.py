"""What an output path may never be: one of the job's inputs. Checked before any work.

A predictions file written over the template store, a photo, the checkpoint or the
store that ``--write-to`` merges into would destroy a person's work. Every output
(with the companions it brings: ``.rlejson``, the journal) is compared with every
input (with theirs) after resolving links, and a clash is a UserError that says
what to do. The output's folder must be writable, which is also checked up front.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from descriptron_sam2pal import UserError
from descriptron_sam2pal.store.stem import companion_path


def _same_file_key(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser())).absolute()


def with_companions(path: str | os.PathLike) -> list[Path]:
    """``path`` and the files that travel with it (the ``.json``/``.rlejson`` pair)."""
    p = Path(path)
    if p.suffix.lower() in (".json", ".rlejson"):
        return [p, companion_path(p)]
    return [p]


def check_outputs(outputs: Mapping[str, Iterable[str | os.PathLike]],
                  inputs: Mapping[str, Iterable[str | os.PathLike]]) -> None:
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
                    raise UserError(f"{label} {p} would overwrite {taken[key]}; choose another output "
                                    "file (your annotations and photos are never written over)")
                if key in written and written[key] != label:
                    raise UserError(f"{label} and {written[key]} are the same file ({p}); give them "
                                    "different names")
                written[key] = label


def check_writable_folder(folder: str | os.PathLike, label: str) -> None:
    """UserError unless files can be created in ``folder``, or (when it does not exist yet)
    in the nearest folder above it that does; nothing is left behind."""
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
        raise UserError(f"cannot write {label} into {folder} ({exc.strerror or exc}); choose a folder you "
                        "can write to, or free some space") from None
