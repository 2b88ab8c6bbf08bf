"""Writing a file so that it is either wholly the old or wholly the new version.

Every file we write for the user (adapters, run state, review sessions, cached
features) goes through here: a temporary file in the same folder, flushed and
fsynced, then renamed over the target. A crash or a full disk leaves the old
file and no temporary one. The new file keeps the mode and group of the file it
replaces; a new file gets the user's umask (not ``mkstemp``'s 0600).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a binary temporary file, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        copy_permissions(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write`` of UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (briefly) and restoring it
    os.umask(mask)
    return mask


def copy_permissions(target: str | os.PathLike, tmp: str | os.PathLike) -> None:
    """Give ``tmp`` (about to be renamed onto ``target``) the mode and group of ``target`` if it
    exists, else the mode a plain ``open()`` would give (0666 less the umask). Best effort for
    the group (only the owner's groups are allowed)."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        os.chmod(tmp, 0o666 & ~current_umask())
        return
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    if os.stat(tmp).st_gid != st.st_gid:
        try:
            os.chown(tmp, -1, st.st_gid)
        except OSError:
            pass
