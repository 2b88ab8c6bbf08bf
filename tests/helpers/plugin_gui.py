"""Helpers for the plugin's GUI tests: specimen photos, a message-box recorder, real mouse
input on an ImageCanvas. The fixtures built on them (``specimens``, ``messages``, ``settings``,
``window``, ``session``) are in ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


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


class Messages:
    """Records every QMessageBox shown (title, text) and answers it with the next queued button
    (``QMessageBox.Ok`` when none is queued)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.answers: list = []

    def exec_(self, box):
        from PyQt5.QtWidgets import QMessageBox

        self.seen.append((box.windowTitle(), box.text()))
        return self.answers.pop(0) if self.answers else QMessageBox.Ok

    def titles(self) -> list[str]:
        return [t for t, _ in self.seen]


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
