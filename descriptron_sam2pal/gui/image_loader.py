"""Decode image files off the GUI thread, one at a time, where only the latest request counts.

Browsing fast through specimens must neither block the window nor pile up loads:
while a file decodes, newer requests replace each other, and when it ends only the
newest one starts. Results of requests the user has moved past are dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from PyQt5.QtCore import QObject, pyqtSignal

from descriptron_sam2pal.gui.workers import EngineWorker, LatestCall
from descriptron_sam2pal.imaging.io import load_image


class LatestImageLoader(QObject):
    """``request(key, path)``; emits ``loaded(key, pixels)`` or ``failed(key, message, details)``
    for the latest request only. ``key`` is whatever identifies the wish (a record, a path)."""

    loaded = pyqtSignal(object, object)
    failed = pyqtSignal(object, str, str)

    def __init__(self, parent: QObject | None = None, register: Callable[[EngineWorker], Any] | None = None,
                 load: Callable[[str], np.ndarray] = load_image) -> None:
        super().__init__(parent)
        self._load = load
        self._calls = LatestCall(self, register, "loading an image")
        # Bound methods, not lambdas: Qt disconnects them if this loader is deleted first.
        self._calls.answered.connect(self._on_loaded)
        self._calls.failed.connect(self._on_failed)

    @property
    def busy(self) -> bool:
        """A load is running or waiting."""
        return self._calls.busy

    @property
    def wanted(self) -> Any:
        """The key of the request not answered yet, or None."""
        wish = self._calls.wanted
        return wish[0] if wish is not None else None

    def request(self, key: Any, path: str | Path) -> None:
        self._calls.request((key, str(path)), self._load, str(path), description=f"loading {Path(path).name}")

    def forget(self) -> None:
        """Drop the pending request (e.g. another project was opened)."""
        self._calls.forget()

    def wait(self, timeout_ms: int = 10000) -> bool:
        return self._calls.wait(timeout_ms)

    def _on_loaded(self, wish: tuple, pixels) -> None:
        self.loaded.emit(wish[0], pixels)

    def _on_failed(self, wish: tuple, message: str, details: str) -> None:
        self.failed.emit(wish[0], message, details)
