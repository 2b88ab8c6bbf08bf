"""The callbacks plugins subscribe to through the host contract (``host/api.py``): store changed,
current image changed, image clicked, box drawn."""

from __future__ import annotations

from typing import Any, Callable


class Callbacks:
    """Subscribers of one event. ``subscribe`` returns the function that unsubscribes; calling
    the list calls each subscriber, and one that raises goes to ``failed(callback, exception)``
    (called while the exception is handled) without stopping the others."""

    def __init__(self, failed: Callable[[Callable, Exception], None]) -> None:
        self.callbacks: list[Callable] = []
        self.failed = failed

    def subscribe(self, callback: Callable) -> Callable[[], None]:
        self.callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self.callbacks:
                self.callbacks.remove(callback)

        return unsubscribe

    def __call__(self, *args: Any) -> None:
        for callback in list(self.callbacks):
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the others
                self.failed(callback, exc)
