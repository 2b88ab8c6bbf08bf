"""Fixtures for the workspace-window tests: a small project on disk (images + a Descriptron
session file) and a bare workspace window (``dialogs`` comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QMessageBox

from tests.helpers.workspace_project import write_project


@pytest.fixture
def project(tmp_path) -> Path:
    write_project(tmp_path / "specimens")
    return tmp_path / "specimens"


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
