"""Finding, hashing and downloading SAM2 checkpoints (Descriptron's conventions).

Descriptron looks for the checkpoint in this order: the environment variable
``DESCRIPTRON_SAM2_CHECKPOINT`` (a missing file there is an error);
``../checkpoints/<name>`` from the start folder; ``$DESCRIPTRON_CACHE/sam2/``
(default ``~/.cache/descriptron/sam2/``). Downloads go into that cache through
a ``<name>.part`` file that is renamed only when complete and checked, so the
plugin and Descriptron share files and a user never downloads twice.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from descriptron_sam2pal import UserError

from descriptron_sam2pal.model.configs import KNOWN_CHECKPOINTS, config_from_file_name

CHECKPOINT_ENV = "DESCRIPTRON_SAM2_CHECKPOINT"
CACHE_ENV = "DESCRIPTRON_CACHE"
DEFAULT_CHECKPOINT = "sam2_hiera_large.pt"  # what Descriptron downloads when asked
_CHUNK = 1 << 20


def file_sha256(path: str | Path, chunk: int = _CHUNK) -> str:
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
    downloaded with ``download_checkpoint`` is found.
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


class DownloadCancelled(UserError):
    """The caller's ``cancel()`` returned True; the ``.part`` file is kept for resuming."""


def _network_error(name: str, url: str, dest_dir: Path, reason: object) -> UserError:
    return UserError(f"could not download {name} from {url} ({reason}); check the network "
                     f"or download the file manually into {dest_dir}")


def download_checkpoint(name: str, dest_dir: str | Path | None = None, url: str | None = None,
                        progress: Callable[[int, int | None], None] | None = None,
                        cancel: Callable[[], bool] | None = None,
                        expected_size: int | None = None, expected_sha256: str | None = None,
                        timeout: float = 60.0) -> Path:
    """Download checkpoint ``name`` into ``dest_dir`` (default ``cache_dir()``).

    ``url`` defaults to Meta's public URL for the known file names. Bytes go to
    ``<name>.part``, which is resumed (HTTP Range) when a previous download was
    interrupted or cancelled. The file is renamed to ``<name>`` only when its
    size matches the server's length and ``expected_size``, its sha256 matches
    ``expected_sha256`` and it is a PyTorch (zip) file; otherwise the ``.part``
    is deleted and UserError raised, so a final file is never corrupt.
    ``progress(bytes_done, bytes_total)`` is called as bytes arrive
    (``bytes_total`` None when unknown); ``cancel()`` is polled between chunks
    and True raises DownloadCancelled. An existing ``<name>`` that passes the
    given checks is returned without downloading.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise UserError(f"checkpoint name {name!r} must be a plain file name")
    if url is None:
        known = KNOWN_CHECKPOINTS.get(name)
        if known is None:
            raise UserError(f"{name} is not one of Meta's SAM2 checkpoints "
                            f"({', '.join(KNOWN_CHECKPOINTS)}); give its URL to download it")
        url = known.url
    dest = Path(dest_dir) if dest_dir is not None else cache_dir()
    final = dest / name
    if final.is_file() and _passes(final, expected_size, expected_sha256):
        return final
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the checkpoint folder {dest}: {exc}") from exc
    part = dest / (name + ".part")
    total = _fetch(name, url, part, dest, progress, cancel, expected_size, timeout)
    problem = _problem_with(part, total, expected_size, expected_sha256)
    if problem:
        part.unlink(missing_ok=True)
        raise UserError(f"the download of {name} from {url} is not a valid checkpoint ({problem}); "
                        f"nothing was kept. Try again, or download the file manually into {dest}")
    os.replace(part, final)
    return final


def _fetch(name: str, url: str, part: Path, dest: Path, progress, cancel,
           expected_size: int | None, timeout: float) -> int | None:
    """Stream ``url`` into ``part`` (resuming it); returns the full length or None."""
    done = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and done > expected_size:
        part.unlink()
        done = 0
    request = urllib.request.Request(url, headers={"User-Agent": "descriptron-sam2pal"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # the .part already holds everything
            return expected_size if expected_size is not None else done
        raise _network_error(name, url, dest, f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _network_error(name, url, dest, getattr(exc, "reason", exc)) from exc
    with response:
        total: int | None = None
        mode = "wb"
        if done and response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == done:
                mode = "ab"
                total = int(match.group(2)) if match.group(2) != "*" else None
        if mode == "wb":  # fresh start (the server ignored the Range request)
            done = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is None:
            total = expected_size
        if progress:
            progress(done, total)
        try:
            with open(part, mode) as out:
                while True:
                    if cancel is not None and cancel():
                        raise DownloadCancelled(
                            f"download of {name} cancelled; {part.name} is kept in {dest} and "
                            f"the next download resumes from it")
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except (OSError, http.client.HTTPException, socket.timeout) as exc:
            if isinstance(exc, OSError) and exc.filename:  # a local disk problem, not the network
                raise UserError(f"cannot write {exc.filename}: {exc.strerror}") from exc
            raise _network_error(name, url, dest, f"connection lost after {done} bytes: {exc}; "
                                 f"{part.name} is kept and the next download resumes") from exc
    if total is not None and done < total:
        raise _network_error(name, url, dest, f"connection closed after {done} of {total} bytes; "
                             f"{part.name} is kept and the next download resumes")
    return total


def _problem_with(path: Path, total: int | None, expected_size: int | None,
                  expected_sha256: str | None) -> str | None:
    size = path.stat().st_size
    if total is not None and size != total:
        return f"{size} bytes, the server announced {total}"
    if expected_size is not None and size != expected_size:
        return f"{size} bytes, expected {expected_size}"
    if expected_sha256 is not None and file_sha256(path) != expected_sha256.lower():
        return f"sha256 differs from the expected {expected_sha256[:12]}..."
    if not zipfile.is_zipfile(path):  # torch.save files are zip archives
        return "not a PyTorch checkpoint file (perhaps an error page)"
    return None


def _passes(path: Path, expected_size: int | None, expected_sha256: str | None) -> bool:
    return _problem_with(path, None, expected_size, expected_sha256) is None
