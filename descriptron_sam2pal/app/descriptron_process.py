"""One run of Descriptron's program started from the workspace, watched until it ends.

The program runs in its own session (closing the workspace leaves it open) and writes its
output to a log file; when it stops with a non-zero exit code, :attr:`DescriptronRun.failed`
carries the reason and the fix (:func:`app.descriptron_link.failure_advice`) and the end of
its output, so the workspace shows them in a dialog instead of leaving them in a terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

import descriptron_sam2pal
from descriptron_sam2pal.app.descriptron_link import Failure, failure_advice

#: Lines of the program's output shown under a failure dialog's details.
TAIL_LINES = 40


def package_root() -> str:
    """The folder holding this copy of ``descriptron_sam2pal`` (put first on the child's path,
    so the program runs the same copy of the starter as the workspace)."""
    return str(Path(descriptron_sam2pal.__file__).resolve().parent.parent)


class DescriptronRun(QObject):
    """Starts ``argv`` and polls it; emits :attr:`failed` (Failure, output tail, exit code)
    or :attr:`ended` (exit code 0) once, when the program stops."""

    failed = pyqtSignal(object, str, int)
    ended = pyqtSignal(int)

    POLL_MS = 400

    def __init__(self, argv: list[str], parent: QObject | None = None, cwd: str | None = None) -> None:
        super().__init__(parent)
        self.argv = list(argv)
        handle, name = tempfile.mkstemp(prefix="descriptron-", suffix=".log")
        self.log_path = Path(name)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root(), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with os.fdopen(handle, "wb") as log:  # the child keeps its own handle
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                            start_new_session=True)
        self.timer = QTimer(self)
        self.timer.setInterval(self.POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def poll(self) -> None:
        code = self.process.poll()
        if code is None:
            return
        self.timer.stop()
        if code == 0:
            self.ended.emit(code)
            return
        output = self.output()
        tail = "\n".join(output.splitlines()[-TAIL_LINES:])
        self.failed.emit(failure_advice(output, code), tail, code)

    def stop(self) -> None:
        """End the program (its whole session) and wait for it; for tests and cleanup."""
        self.timer.stop()
        if self.running():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # Descriptron's own helpers too
            except (AttributeError, ProcessLookupError, PermissionError):  # AttributeError: Windows
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


__all__ = ["DescriptronRun", "Failure", "package_root"]
