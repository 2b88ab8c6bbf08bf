"""Fix by clicks in the Review panel: each click on the photo re-segments the selected structure
with SAM2, in a worker thread (``EngineWorker``). Clicks made while SAM2 is busy wait and go
together when it is done, and only the latest wish counts (the pattern of
``gui.image_loader.LatestImageLoader``): a click on another structure drops the waiting ones."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from PyQt5.QtCore import QObject, pyqtSignal

from descriptron_sam2pal.gui.workers import EngineWorker
from descriptron_sam2pal.jobs.review import ReviewItem

#: ``reprompt(image_id, points, labels) -> mask``: see :class:`~.review_panel.ReviewPanel`.
Reprompt = Callable[[Any, list, list], Optional[np.ndarray]]


class FixController(QObject):
    """The re-segmentation worker of the Review panel's fix mode.

    ``current_item()`` says which structure is selected now (a waiting click on another one is
    dropped). Signals: ``fixed(item, points, mask)`` (mask: (H, W) bool, or None when SAM2 found
    nothing; a ``(mask, score)`` pair is unpacked), ``failed(message, details)``."""

    fixed = pyqtSignal(object, object, object)
    failed = pyqtSignal(str, str)

    def __init__(
        self,
        host: Any,
        current_item: Callable[[], ReviewItem | None],
        reprompt: Reprompt | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.current_item = current_item
        self.reprompt = reprompt
        self.active = False
        self._worker: EngineWorker | None = None
        self._pending: tuple[ReviewItem, list] | None = None  # points clicked while SAM2 was busy

    def set_active(self, on: bool) -> None:
        """Fix mode on or off; clicks waiting for SAM2 are dropped either way."""
        self.active = bool(on)
        self._pending = None

    def can_fix(self, item: ReviewItem | None) -> bool:
        """Fix mode is possible: a model, and a selected structure not written to the store yet."""
        return self.reprompt is not None and item is not None and not item.written

    def click(self, item: ReviewItem, x: float, y: float, button: str) -> list:
        """A click at image point (x, y) ("left": part of the structure, else not): SAM2
        re-segments ``item`` with its points so far and this one, now or when it is free.
        Returns every point of the fix, (x, y, 1 | 0), to show."""
        points = list(item.points) + [(float(x), float(y), 1 if button == "left" else 0)]
        if self._pending is not None and self._pending[0] is item:
            points = self._pending[1] + [points[-1]]
        if self._worker is not None:  # SAM2 busy: send all points when it is done
            self._pending = (item, points)
        else:
            self._start(item, points)
        return points

    def running(self) -> bool:
        return self._worker is not None

    def _start(self, item: ReviewItem, points: list) -> None:
        self._pending = None
        worker = EngineWorker(
            self.reprompt,
            item.target.prompt_id,
            [(px, py) for px, py, _ in points],
            [lab for _, _, lab in points],
            description=f"fixing {item.label}",
        )
        worker.result.connect(lambda mask, it=item, pts=points: self._on_result(it, pts, mask))
        worker.error.connect(self.failed)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.host.show_status(f"Re-segmenting {item.label}\u2026", 0)
        self.host.register_worker(worker)
        worker.start()

    def _on_result(self, item: ReviewItem, points: list, mask: Any) -> None:
        if isinstance(mask, tuple):  # (mask, score) from an interactive segmenter
            mask = mask[0]
        self.fixed.emit(item, points, None if mask is None else np.asarray(mask))

    def _on_finished(self) -> None:
        self._worker = None
        if self._pending is not None and self.active and self._pending[0] is self.current_item():
            item, points = self._pending
            self._start(item, points)
        else:
            self._pending = None
