"""Finding, hashing and downloading SAM2 checkpoints (Descriptron's conventions).

Descriptron looks for the checkpoint in this order: the environment variable
``DESCRIPTRON_SAM2_CHECKPOINT`` (a missing file there is an error);
``../checkpoints/<name>`` from the start folder; ``$DESCRIPTRON_CACHE/sam2/``
(default ``~/.cache/descriptron/sam2/``). Downloads (``jobs.checkpoint_download``)
go into that cache, so the plugin and Descriptron share files and a user never
downloads twice.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from descriptron_sam2pal import UserError

from descriptron_sam2pal.model.configs import KNOWN_CHECKPOINTS, config_from_file_name

CHECKPOINT_ENV = "DESCRIPTRON_SAM2_CHECKPOINT"
CACHE_ENV = "DESCRIPTRON_CACHE"
DEFAULT_CHECKPOINT = "sam2_hiera_large.pt"  # what Descriptron downloads when asked
CHUNK = 1 << 20  #: bytes read at a time (hashing, downloading)


def file_sha256(path: str | Path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_hash_memo: dict[tuple[str, int, int], str] = {}


def checkpoint_sha256(path: str | Path) -> str:
    """``file_sha256`` remembered per (path, size, mtime) for this process:
    hashing a 900 MB checkpoint takes seconds and models are rebuilt often."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _hash_memo:
        _hash_memo[key] = file_sha256(p)
    return _hash_memo[key]


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$DESCRIPTRON_CACHE/sam2`` or ``~/.cache/descriptron/sam2`` (not created)."""
    root = env.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "descriptron"
    return base / "sam2"


def _env_checkpoint(env: Mapping[str, str]) -> Path | None:
    value = env.get(CHECKPOINT_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"{CHECKPOINT_ENV} is set to {value}, but there is no such file; "
                        f"fix the path or unset {CHECKPOINT_ENV}")
    return path


def _fallback_names() -> list[str]:
    """Meta's other checkpoints, SAM2.1 before SAM2, larger before smaller."""
    sizes = ("large", "base_plus", "small", "tiny")
    names = [f"{prefix}hiera_{size}.pt" for prefix in ("sam2.1_", "sam2_") for size in sizes]
    return [n for n in names if n != DEFAULT_CHECKPOINT and n in KNOWN_CHECKPOINTS]


def find_checkpoint(name: str | None = None, start_dir: str | Path | None = None,
                    env: Mapping[str, str] = os.environ) -> Path | None:
    """The checkpoint Descriptron would use, or None when there is none yet.

    ``name`` is a file name; ``start_dir`` the folder the program started in
    (default: the current one). The file named by ``DESCRIPTRON_SAM2_CHECKPOINT``
    wins when ``name`` is None or is that file's name; when set to a missing
    file it is an error. Then ``../checkpoints/<name>`` and the cache. Without
    a name: Descriptron's ``sam2_hiera_large.pt`` first, then any other of
    Meta's checkpoints there (SAM2.1 before SAM2, larger first), so a model
    downloaded with ``jobs.checkpoint_download`` is found.
    """
    from_env = _env_checkpoint(env)
    if from_env is not None and (name is None or from_env.name == name):
        return from_env
    start = Path(start_dir) if start_dir is not None else Path.cwd()
    folders = (start.resolve().parent / "checkpoints", cache_dir(env))
    for candidate_name in [name] if name else [DEFAULT_CHECKPOINT, *_fallback_names()]:
        for folder in folders:
            candidate = folder / candidate_name
            if candidate.is_file():
                return candidate
    return None


@dataclass(frozen=True)
class AvailableCheckpoint:
    """A checkpoint file found on disk (for the GUI's model chooser)."""

    path: Path
    source: str  # "environment", "checkpoints folder" or "cache"
    config: str | None  # from the file name (a hint; building checks the weights)
    size_bytes: int


def list_available_checkpoints(start_dir: str | Path | None = None,
                               env: Mapping[str, str] = os.environ) -> list[AvailableCheckpoint]:
    """Every ``*.pt`` / ``*.pth`` in Descriptron's places, in its search order."""
    found: list[AvailableCheckpoint] = []
    seen: set[Path] = set()

    def add(path: Path, source: str) -> None:
        real = path.resolve()
        if real not in seen and path.is_file():
            seen.add(real)
            found.append(AvailableCheckpoint(path, source, config_from_file_name(path.name),
                                             path.stat().st_size))

    value = env.get(CHECKPOINT_ENV)
    if value and Path(value).expanduser().is_file():
        add(Path(value).expanduser(), "environment")
    start = Path(start_dir) if start_dir is not None else Path.cwd()
    for folder, source in ((start.resolve().parent / "checkpoints", "checkpoints folder"),
                           (cache_dir(env), "cache")):
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix in (".pt", ".pth"):
                    add(path, source)
    return found
