"""One writer at a time: an OS file lock on the folder of an annotation store.

``store_lock(path)`` locks the folder that holds a store (the folder itself when
``path`` is a folder, else the file's folder) through the lock file
``<folder>/.sam2pal-store.lock`` (hidden, so no folder scan ever reads it). It is
an ``flock``/``fcntl`` lock (``filelock``): the system releases it when the
process ends, however it ends, so a killed run never leaves a stale lock.

Within one process the lock is re-entrant: ``AnnotationStore.save`` takes it
itself, and a caller may hold it around a whole run (open, predict, save) so a
second run waits for the first instead of failing at its save::

    with store_lock(folder, timeout=60):
        store = AnnotationStore.open(folder)
        ...
        store.save()
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from descriptron_sam2pal.store.coco import StoreError

LOCK_NAME = ".sam2pal-store.lock"
DEFAULT_TIMEOUT_S = 30.0

_locks: dict[Path, FileLock] = {}
_locks_guard = threading.Lock()


class StoreBusyError(StoreError):
    """Another program holds the store's lock and did not release it in time."""


def lock_file_for(path: str | os.PathLike) -> Path:
    """The lock file guarding the store at ``path`` (a folder, or a file in its folder)."""
    path = Path(path).expanduser().absolute()
    folder = path if path.is_dir() else path.parent
    return folder / LOCK_NAME


@contextmanager
def store_lock(path: str | os.PathLike, timeout: float | None = DEFAULT_TIMEOUT_S) -> Iterator[Path]:
    """Hold the write lock of the store at ``path``; waits up to ``timeout`` seconds
    (None: forever, 0: do not wait), then raises :class:`StoreBusyError`. Re-entrant
    within a process. Yields the lock file's path."""
    lock_path = lock_file_for(path)
    with _locks_guard:
        lock = _locks.get(lock_path)
        if lock is None:
            lock = _locks[lock_path] = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=-1 if timeout is None else timeout)
    except Timeout:
        raise StoreBusyError(
            f"{lock_path.parent}: another program (probably a second sam2pal run) is writing these "
            f"annotations and still held the lock {lock_path.name} after {timeout:g} s. Nothing was "
            "written. Let the other run finish, then run this one again (with --resume, finished "
            "images are not redone); the lock is released when that program ends.") from None
    except OSError as e:
        raise StoreError(f"{lock_path}: cannot create the lock file ({e.strerror or e}). Check write "
                         f"permission on {lock_path.parent}.") from None
    try:
        yield lock_path
    finally:
        lock.release()
