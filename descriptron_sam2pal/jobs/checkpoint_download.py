"""The Download use case: one of Meta's SAM2 checkpoints into Descriptron's cache.

Both faces drive it as any other long work: ``download_run(request, progress, cancel,
log_fn)`` reports ``engine.control.Progress`` (stage ``"download"``, in bytes) and stops at the
next chunk once its ``CancelToken`` is cancelled. Bytes go to ``<name>.part``, renamed to
``<name>`` only when complete and checked, so a checkpoint under its own name is never partial;
a ``.part`` left by a cancel or a lost connection is resumed (HTTP Range) by the next download.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.control import CancelToken, ProgressCallback, ProgressReporter, is_cancelled
from descriptron_sam2pal.model.checkpoints import CHUNK, cache_dir, file_sha256
from descriptron_sam2pal.model.configs import KNOWN_CHECKPOINTS

#: What ``sam2pal download`` fetches when no name is given: small enough for a laptop CPU.
DEFAULT_DOWNLOAD = "sam2.1_hiera_tiny.pt"
STAGE = "download"


@dataclass(frozen=True)
class DownloadRequest:
    """Checkpoint ``name`` (a plain file name) into ``dest_dir`` (None: Descriptron's cache),
    from ``url`` (None: Meta's address for the known names); ``expected_size`` and
    ``expected_sha256``, when given, must match before the file gets its name."""

    name: str = DEFAULT_DOWNLOAD
    dest_dir: str | os.PathLike | None = None
    url: str | None = None
    expected_size: int | None = None
    expected_sha256: str | None = None
    timeout: float = 60.0


class DownloadCancelled(UserError):
    """The download's CancelToken was cancelled; the ``.part`` file is kept for resuming."""


def approx_mb(name: str) -> int:
    """About how many MB checkpoint ``name`` is (0 when it is not one of Meta's)."""
    known = KNOWN_CHECKPOINTS.get(name)
    return known.approx_mb if known is not None else 0


def download_run(
    request: DownloadRequest,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log_fn: Callable[[str], None] | None = None,
) -> Path:
    """Download ``request.name``; returns the path of the checked file.

    An existing ``<name>`` that passes the request's checks is returned without downloading.
    A download whose size differs from the server's length or ``expected_size``, whose sha256
    differs from ``expected_sha256`` or that is not a PyTorch (zip) file is deleted and a
    UserError raised. Network and disk problems are UserErrors that say what to do;
    a cancel raises DownloadCancelled.
    """
    name = request.name
    if not name or Path(name).name != name or name in (".", ".."):
        raise UserError(f"checkpoint name {name!r} must be a plain file name")
    url = request.url
    if url is None:
        known = KNOWN_CHECKPOINTS.get(name)
        if known is None:
            raise UserError(
                f"{name} is not one of Meta's SAM2 checkpoints "
                f"({', '.join(KNOWN_CHECKPOINTS)}); give its URL to download it"
            )
        url = known.url
    dest = Path(request.dest_dir) if request.dest_dir is not None else cache_dir()
    final = dest / name
    if final.is_file() and _problem_with(final, None, request) is None:
        return final
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the checkpoint folder {dest}: {exc}") from exc
    if log_fn is not None:
        log_fn(f"downloading {name} from {url} into {dest}")
    part = dest / (name + ".part")
    total = _fetch(request, url, part, dest, progress, cancel)
    problem = _problem_with(part, total, request)
    if problem:
        part.unlink(missing_ok=True)
        raise UserError(
            f"the download of {name} from {url} is not a valid checkpoint ({problem}); "
            f"nothing was kept. Try again, or download the file manually into {dest}"
        )
    os.replace(part, final)
    return final


def _network_error(name: str, url: str, dest_dir: Path, reason: object) -> UserError:
    return UserError(
        f"could not download {name} from {url} ({reason}); check the network "
        f"or download the file manually into {dest_dir}"
    )


def _open(request: DownloadRequest, url: str, dest: Path, done: int):
    """The server's response from byte ``done`` on, or None when the ``.part`` holds everything."""
    headers = {"User-Agent": "descriptron-sam2pal"}
    if done:
        headers["Range"] = f"bytes={done}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=request.timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # the .part already holds everything
            return None
        raise _network_error(request.name, url, dest, f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _network_error(request.name, url, dest, getattr(exc, "reason", exc)) from exc


def _fetch(
    request: DownloadRequest,
    url: str,
    part: Path,
    dest: Path,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> int | None:
    """Stream ``url`` into ``part`` (resuming it); returns the full length or None."""
    name = request.name
    done = part.stat().st_size if part.is_file() else 0
    if request.expected_size is not None and done > request.expected_size:
        part.unlink()
        done = 0
    response = _open(request, url, dest, done)
    if response is None:
        return request.expected_size if request.expected_size is not None else done
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
            total = request.expected_size
        reporter = ProgressReporter(STAGE, total or 0, progress, start_done=done)  # total 0: unknown
        reporter.report(done, name)
        try:
            with open(part, mode) as out:
                while True:
                    if is_cancelled(cancel):
                        raise DownloadCancelled(
                            f"download of {name} cancelled; {part.name} is kept in {dest} and "
                            f"the next download resumes from it"
                        )
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    reporter.report(done, name)
        except (OSError, http.client.HTTPException, socket.timeout) as exc:
            if isinstance(exc, OSError) and exc.filename:  # a local disk problem, not the network
                raise UserError(f"cannot write {exc.filename}: {exc.strerror}") from exc
            raise _network_error(
                name,
                url,
                dest,
                f"connection lost after {done} bytes: {exc}; "
                f"{part.name} is kept and the next download resumes",
            ) from exc
    if total is not None and done < total:
        raise _network_error(
            name,
            url,
            dest,
            f"connection closed after {done} of {total} bytes; "
            f"{part.name} is kept and the next download resumes",
        )
    return total


def _problem_with(path: Path, total: int | None, request: DownloadRequest) -> str | None:
    size = path.stat().st_size
    if total is not None and size != total:
        return f"{size} bytes, the server announced {total}"
    if request.expected_size is not None and size != request.expected_size:
        return f"{size} bytes, expected {request.expected_size}"
    if request.expected_sha256 is not None and file_sha256(path) != request.expected_sha256.lower():
        return f"sha256 differs from the expected {request.expected_sha256[:12]}..."
    if not zipfile.is_zipfile(path):  # torch.save files are zip archives
        return "not a PyTorch checkpoint file (perhaps an error page)"
    return None
