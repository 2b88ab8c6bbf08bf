"""File > Open in Descriptron: the window's hand-off of the current specimen to Descriptron's own
annotation GUI, what the menu action says (how to install it when it is not installed), and the
runs started from the window, watched until they end (a failure becomes a dialog)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PyQt5.QtWidgets import QAction

from descriptron_sam2pal import UserError
from descriptron_sam2pal.app.descriptron_link import descriptron_command, find_descriptron, install_command
from descriptron_sam2pal.app.descriptron_process import DescriptronRun
from descriptron_sam2pal.gui.errors import shown_errors

NOT_INSTALLED = (
    "Descriptron's annotation GUI (the descriptron-gui package) is not installed "
    "in this Python. Install it (as install.sh does) with:\n\n"
    "{install}\n\n--no-deps keeps this PyTorch: Descriptron's own "
    "dependencies would replace it with a CUDA build of several GB."
)


class DescriptronHandoff:
    """``host`` is the window (``show_error``, ``show_status``, the parent of the runs);
    ``settle_unsaved(doing)`` asks to save first and says whether to go on."""

    def __init__(self, host: Any, settle_unsaved: Callable[[str], bool]) -> None:
        self.host = host
        self.settle_unsaved = settle_unsaved
        self.runs: list[DescriptronRun] = []
        self._launcher: Any = None
        self._looked = False

    @property
    def launcher(self):
        """The installed Descriptron's launcher (found once), or None: not installed."""
        if not self._looked:
            self._launcher, self._looked = find_descriptron(), True
        return self._launcher

    @launcher.setter
    def launcher(self, launcher) -> None:
        self._launcher, self._looked = launcher, True

    def describe(self, action: QAction, record) -> None:
        """What File > Open in Descriptron says and whether it can be used for ``record``."""
        launcher = self.launcher
        if launcher is None:  # enabled: it says how to install Descriptron
            action.setEnabled(True)
            action.setText("Open in &Descriptron (not installed: how to install…)")
            tip = (
                "Descriptron's annotation GUI is not installed in this Python. "
                f"Install it with: {install_command()}"
            )
        else:
            action.setEnabled(record is not None and record.path is not None)
            action.setText("Open in &Descriptron")
            tip = (
                f"Open this photo with its annotation file in Descriptron {launcher.version}"
                if action.isEnabled()
                else "Choose a photo first"
            )
        action.setToolTip(tip)
        action.setStatusTip(tip)

    def command(self, record) -> list[str]:
        """The command that opens ``record`` with its annotation file in Descriptron."""
        launcher = self.launcher
        if launcher is None:
            raise UserError(
                "Descriptron's annotation GUI is not installed in this Python (pip install descriptron-gui)."
            )
        if record is None or record.path is None:
            raise UserError("Choose a specimen whose photo is found first.")
        return descriptron_command(launcher, record.path, record.source)

    def open(self, record) -> DescriptronRun | None:
        """Save first if needed (Descriptron reads the files), then start Descriptron on ``record``
        and watch it: if it stops with an error, a dialog says why and what to do."""
        if self.launcher is None:
            self.host.show_error("Open in Descriptron", NOT_INSTALLED.format(install=install_command()))
            return None
        done, argv = shown_errors(self.host, "Open in Descriptron", lambda: self.command(record) if
                                  self.settle_unsaved("open the specimen in Descriptron") else None)
        if not done or argv is None:
            return None
        try:
            run = DescriptronRun(argv, self.host, cwd=str(Path(record.path).parent))
        except OSError as exc:
            self.host.show_error("Open in Descriptron", f"Could not start Descriptron: {exc}", " ".join(argv))
            return None
        run.failed.connect(lambda failure, tail, code: self._failed(run, failure, tail, code))
        run.ended.connect(lambda _code: self.runs.remove(run))
        self.runs.append(run)
        self.host.show_status(
            f"Opening {record.file_name} in Descriptron (its window takes a few seconds; "
            f"output in {run.log_path})",
            10000,
        )
        return run

    def _failed(self, run: DescriptronRun, failure, tail: str, code: int) -> None:
        self.runs.remove(run)
        self.host.show_error(
            "Open in Descriptron",
            f"{failure.reason}\n\nFix: {failure.fix}",
            f"Exit code {code}. Command:\n{' '.join(run.argv)}\n\n"
            f"Last lines of its output ({run.log_path}):\n{tail}",
        )
