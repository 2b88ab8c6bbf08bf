"""Fixtures shared by the plugin's GUI tests: a specimen folder, a workspace, a model session.

Import the fixtures into a test module with ``from plugin_fixtures import *``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QMessageBox

__all__ = ["write_specimens", "specimens", "messages", "settings", "window", "session", "wait_image",
           "Messages", "drag_on", "click_on"]


def write_specimens(folder: Path, n: int = 4) -> Path:
    """``n`` small non-square specimen photos: a bright body on a dark textured background."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        h, w = 72 + 4 * i, 112
        img = rng.integers(10, 60, (h, w, 3), dtype=np.uint8)
        img[20:50, 30 + 2 * i:80 + 2 * i] = (210, 190, 120)
        Image.fromarray(img).save(folder / f"specimen_{i + 1:02d}.png")
    return folder


@pytest.fixture
def specimens(tmp_path) -> Path:
    return write_specimens(tmp_path / "specimens")


class Messages:
    """Records every QMessageBox shown (title, text) and answers it with the next queued button."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.answers: list = []

    def exec_(self, box: QMessageBox):
        self.seen.append((box.windowTitle(), box.text()))
        return self.answers.pop(0) if self.answers else QMessageBox.Ok


@pytest.fixture
def messages(monkeypatch) -> Messages:
    m = Messages()
    monkeypatch.setattr(QMessageBox, "exec_", lambda box: m.exec_(box))
    return m


@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def window(qtbot, settings, messages):
    from descriptron_sam2pal.gui.workers import running_workers
    from descriptron_sam2pal.app.workspace import Workspace

    win = Workspace(settings=settings)
    win.resize(900, 600)
    win.show()
    qtbot.waitExposed(win)
    yield win
    for worker in running_workers():
        worker.cancel()
        worker.wait(20000)
    qtbot.wait(10)  # deliver the workers' last signals
    messages.answers = [QMessageBox.Yes, QMessageBox.Discard]
    win.close()
    win.image_loader.wait(5000)
    win.deleteLater()


@pytest.fixture
def session(window, settings, mini_checkpoint):
    """A model session on the mini checkpoint at 128 px (nothing loaded yet)."""
    from descriptron_sam2pal.gui.model_session import ModelSession

    s = ModelSession(window, settings, image_size=128)
    s.set_checkpoint(str(mini_checkpoint))
    return s


def wait_image(qtbot, win, file_name: str) -> None:
    qtbot.waitUntil(lambda: win.current_image() is not None and win.current_image().file_name == file_name
                    and win.current_image_array() is not None and not win.image_loader.busy, timeout=10000)


def click_on(qtbot, canvas, x: float, y: float, button=None) -> None:
    """A click on image point (x, y) of an ImageCanvas."""
    from PyQt5.QtCore import Qt

    qtbot.mouseClick(canvas.view.viewport(), button or Qt.LeftButton, pos=canvas.map_to_widget(x, y))


def drag_on(qtbot, canvas, points) -> None:
    """A left-button drag through image points of an ImageCanvas (real mouse events)."""
    from PyQt5.QtCore import QPointF, Qt
    from PyQt5.QtGui import QMouseEvent
    from PyQt5.QtWidgets import QApplication

    viewport = canvas.view.viewport()
    pos = [canvas.map_to_widget(x, y) for x, y in points]
    qtbot.mousePress(viewport, Qt.LeftButton, pos=pos[0])
    for p in pos[1:]:
        qtbot.wait(40)  # pyqtgraph drops mouse moves that come faster than a screen refresh
        QApplication.sendEvent(viewport, QMouseEvent(QMouseEvent.MouseMove, QPointF(p), Qt.NoButton,
                                                     Qt.LeftButton, Qt.NoModifier))
    qtbot.wait(40)
    qtbot.mouseRelease(viewport, Qt.LeftButton, pos=pos[-1])
