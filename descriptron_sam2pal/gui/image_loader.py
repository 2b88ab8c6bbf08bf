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

from descriptron_sam2pal.gui.workers import EngineWorker
from descriptron_sam2pal.imaging.io import load_image


class LatestImageLoader(QObject):
    """``request(key, path)``; emits ``loaded(key, pixels)`` or ``failed(key, message, details)``
    for the latest request only. ``key`` is whatever identifies the wish (a record, a path)."""

    loaded = pyqtSignal(object, object)
    failed = pyqtSignal(object, str, str)

    def __init__(self, parent: QObject | None = None, register: Callable[[EngineWorker], Any] | None = None,
                 load: Callable[[str], np.ndarray] = load_image) -> None:
        super().__init__(parent)
        self._register = register
        self._load = load
        self._worker: EngineWorker | None = None
        self._wanted: tuple[Any, str] | None = None  # the latest request not answered yet
        self._loading: tuple[Any, str] | None = None  # the request being decoded

    @property
    def busy(self) -> bool:
        """A load is running or waiting."""
        return self._worker is not None or self._wanted is not None

    @property
    def wanted(self) -> Any:
        """The key of the request not answered yet, or None."""
        return self._wanted[0] if self._wanted is not None else None

    def request(self, key: Any, path: str | Path) -> None:
        self._wanted = (key, str(path))
        if self._worker is None:
            self._start()

    def forget(self) -> None:
        """Drop the pending request (e.g. another project was opened)."""
        self._wanted = None

    def wait(self, timeout_ms: int = 10000) -> bool:
        return True if self._worker is None else self._worker.wait(timeout_ms)

    def _start(self) -> None:
        self._loading = self._wanted
        worker = EngineWorker(self._load, self._loading[1], description=f"loading {Path(self._loading[1]).name}")
        # Bound methods, not lambdas: Qt disconnects them if this loader is deleted first.
        worker.result.connect(self._on_result)
        worker.error.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        if self._register is not None:
            self._register(worker)
        worker.start()

    def _on_result(self, pixels) -> None:
        self._answer(pixels, None)

    def _on_error(self, message: str, details: str) -> None:
        self._answer(None, (message, details))

    def _answer(self, pixels, error) -> None:
        key, path = self._loading
        if self._wanted is None or self._wanted[0] is not key or self._wanted[1] != path:
            return  # the user moved on while it loaded
        self._wanted = None
        if error is None:
            self.loaded.emit(key, pixels)
        else:
            self.failed.emit(key, *error)

    def _on_finished(self) -> None:
        self._worker = None
        if self._wanted is not None:
            self._start()
