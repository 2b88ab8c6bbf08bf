"""A small project on disk (images + a Descriptron session file) and a workspace window."""

from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QMessageBox

from workspace_helpers import write_project


@pytest.fixture
def project(tmp_path) -> Path:
    write_project(tmp_path / "specimens")
    return tmp_path / "specimens"


class Dialogs:
    """Answers every QMessageBox.exec_ with the next queued button and records what was asked."""

    def __init__(self) -> None:
        self.answers: list = []
        self.seen: list[tuple[str, str]] = []

    def exec_(self, box: QMessageBox):
        self.seen.append((box.windowTitle(), box.text()))
        return self.answers.pop(0) if self.answers else QMessageBox.Ok

    def titles(self) -> list[str]:
        return [t for t, _ in self.seen]


@pytest.fixture
def dialogs(monkeypatch) -> Dialogs:
    d = Dialogs()
    monkeypatch.setattr(QMessageBox, "exec_", lambda box: d.exec_(box))
    return d


@pytest.fixture
def window(qtbot, tmp_path, dialogs):
    from descriptron_sam2pal.app.workspace import Workspace

    win = Workspace(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    dialogs.answers = [QMessageBox.Yes, QMessageBox.Discard]
    win.close()
    win.image_loader.wait(5000)
