"""How long engine calls report progress and learn they should stop.

The engine never imports Qt: the GUI passes a callback that emits a signal, the
CLI one that moves a tqdm bar. Both pass the same ``CancelToken``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable


class CancelToken:
    """Thread-safe flag checked by the engine at step/image boundaries."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Progress:
    """One progress report: ``done`` of ``total`` units of ``stage``."""

    stage: str
    done: int
    total: int
    message: str = ""
    eta_s: float | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


ProgressCallback = Callable[[Progress], None]


class ProgressReporter:
    """Computes ETA from the pace so far and forwards reports to a callback."""

    def __init__(self, stage: str, total: int, callback: ProgressCallback | None,
                 start_done: int = 0) -> None:
        self.stage, self.total, self.callback = stage, total, callback
        self._t0 = time.monotonic()
        self._start_done = start_done

    def report(self, done: int, message: str = "", **metrics) -> Progress:
        elapsed = time.monotonic() - self._t0
        new = done - self._start_done
        eta = elapsed / new * (self.total - done) if new > 0 else None
        progress = Progress(self.stage, done, self.total, message, eta, metrics)
        if self.callback is not None:
            self.callback(progress)
        return progress


def is_cancelled(cancel: CancelToken | None) -> bool:
    return cancel is not None and cancel.cancelled
