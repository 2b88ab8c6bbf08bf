"""atomic_write: new files follow the umask (not mkstemp's 0600); rewrites keep mode and group."""

import os
import stat

from descriptron_sam2pal.atomic import atomic_write_text


def test_new_file_follows_the_umask_and_a_rewrite_keeps_its_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.json", "1")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.chmod(path, 0o660)
        atomic_write_text(path, "2")
        assert stat.S_IMODE(path.stat().st_mode) == 0o660 and path.read_text() == "2"
    finally:
        os.umask(old)
