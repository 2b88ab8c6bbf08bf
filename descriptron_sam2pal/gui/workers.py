"""Run engine calls in a QThread so the GUI never blocks.

``EngineWorker(fn, *args, **kwargs)`` calls ``fn(*args, **kwargs)`` in a
background thread. ``EngineWorker(fn, *args, job=True)`` is for a use case that
takes the ``jobs/`` keywords ``progress``, ``cancel`` and ``log_fn`` (see
``docs/design/layers.md``): the worker passes a callback that forwards each
report to its ``progress`` signal, its ``CancelToken``, and a callback that
forwards each log line to its ``log`` signal. The caller says so; the worker
never guesses from the signature.

All signals are delivered in the GUI thread, in this order:
``progress*`` / ``log*`` (in the order fn sent them) then exactly one of
``result`` / ``error`` / ``cancelled``, then ``finished``, which is emitted
however ``fn`` ends (returns, raises, or is cancelled), so the UI can always
re-enable its buttons.

Every EngineWorker joins the one registry of running work (``running_work``)
when it starts and leaves it right after ``finished``; the registry keeps it
referenced meanwhile. A host's ``register_worker`` marks the work the user
started (``running_work.announce``): the window lists it and asks about it on
close.

``LatestCall`` runs calls where only the latest request counts (SAM2 answering clicks)
one at a time in EngineWorkers, delivering only the latest request's outcome.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

from PyQt5.QtCore import QObject, QThread, pyqtSignal

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.control import CancelToken

log = logging.getLogger(__name__)


class WorkRegistry(QObject):
    """The one registry of running work in this process (``running_work``).

    A worker (anything with ``cancel()``, ``is_running()`` and a ``finished`` signal) is in it
    from ``join`` until it leaves: an EngineWorker joins when it starts and leaves right after
    its ``finished``; other workers leave on their ``finished``. Being in it keeps the worker
    referenced, so neither the Python object nor its QThread is destroyed mid-run ("QThread:
    Destroyed while thread is still running" aborts the process). ``announce`` marks work the
    user started (a host's ``register_worker``): the window lists it and asks about it on close;
    the rest (image decoding) is only joined at shutdown. ``changed`` is emitted after each
    join, announce and leave."""

    changed = pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        self._announced: dict[Any, bool] = {}  # worker -> announced; insertion order kept

    def join(self, worker: Any) -> None:
        if worker not in self._announced:
            self._announced[worker] = False
            if not isinstance(worker, EngineWorker):  # an EngineWorker leaves by itself
                worker.finished.connect(lambda w=worker: self.leave(w))
            self.changed.emit()

    def announce(self, worker: Any) -> None:
        """Join (if not yet: it may be about to start) as work the user started."""
        self.join(worker)
        if not self._announced[worker]:
            self._announced[worker] = True
            self.changed.emit()

    def leave(self, worker: Any) -> None:
        if self._announced.pop(worker, None) is not None:
            self.changed.emit()

    def workers(self) -> list:
        """Every worker joined and not finished (running, or announced and about to start)."""
        return list(self._announced)

    def announced(self) -> list:
        """The work the user started, running or about to start."""
        return [w for w, shown in self._announced.items() if shown]

    def running(self, announced_only: bool = False) -> list:
        """Workers whose thread runs (``announced_only``: the work the user started)."""
        pool = self.announced() if announced_only else self.workers()
        return [w for w in pool if w.is_running()]


class _Runner(QThread):
    """The thread: calls fn and hands the outcome to its EngineWorker through queued signals."""

    reported = pyqtSignal(object)
    logged = pyqtSignal(str)
    done = pyqtSignal(str, object, str, str)  # outcome, value, message, details

    def __init__(self, call: Callable[[], Any], token: CancelToken) -> None:
        super().__init__()
        self._call = call
        self._token = token

    def run(self) -> None:
        outcome, value, message, details = "result", None, "", ""
        try:
            value = self._call()
            if self._token.cancelled:
                outcome = "cancelled"
        except BaseException as exc:  # noqa: BLE001 - every outcome must reach `finished`
            if self._token.cancelled:
                outcome = "cancelled"
            elif isinstance(exc, UserError):
                outcome, message = "error", str(exc)
            else:
                outcome = "error"
                message = f"{type(exc).__name__}: {exc}"
                details = traceback.format_exc()
        finally:
            self.done.emit(outcome, value, message, details)


class EngineWorker(QObject):
    """One background call. Create, connect signals, ``start()``; ``cancel()`` to ask it to stop.

    ``job=True``: fn takes ``progress=``, ``cancel=`` and ``log_fn=`` (a ``jobs/`` use case).

    Signals: ``progress(object)`` (whatever fn reports, usually an
    ``engine.control.Progress``), ``log(str)`` (each line fn gives its ``log_fn``),
    ``result(object)`` (fn's return value),
    ``error(str message, str details)`` (details empty for a ``UserError``,
    whose message is meant for the user as is; a traceback otherwise),
    ``cancelled()``, ``finished()``.
    """

    progress = pyqtSignal(object)
    log = pyqtSignal(str)
    result = pyqtSignal(object)
    error = pyqtSignal(str, str)
    cancelled = pyqtSignal()
    finished = pyqtSignal()

    def __init__(self, fn: Callable, *args, description: str = "", job: bool = False, **kwargs) -> None:
        super().__init__()
        self.fn = fn
        self.description = description or getattr(fn, "__name__", "task")
        self.token = CancelToken()
        if job:
            kwargs.update(progress=self._report, cancel=self.token, log_fn=self._log_line)
        self._args, self._kwargs = args, kwargs
        self._runner: _Runner | None = None
        self._running = False
        self._done = False

    # Called in the worker thread; the signal is queued to the GUI thread.
    def _report(self, report: Any) -> None:
        if self._runner is not None:
            self._runner.reported.emit(report)

    def _log_line(self, text: str) -> None:
        if self._runner is not None:
            self._runner.logged.emit(str(text))

    def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("an EngineWorker runs once; create a new one")
        self._runner = _Runner(lambda: self.fn(*self._args, **self._kwargs), self.token)
        self._runner.reported.connect(self.progress)
        self._runner.logged.connect(self.log)
        self._runner.done.connect(self._on_done)
        self._runner.finished.connect(self._on_thread_finished)
        self._running = True
        running_work.join(self)
        self._runner.start()

    def cancel(self) -> None:
        """Ask fn to stop (it checks the token at its next step); returns at once."""
        self.token.cancel()

    def is_running(self) -> bool:
        """True from ``start()`` until ``finished`` has been emitted."""
        return self._running

    def wait(self, timeout_ms: int | None = None) -> bool:
        """Block until the thread has ended (True) or the timeout passed (False).

        Signals still pending are delivered by the event loop afterwards.
        """
        if self._runner is None:
            return True
        return self._runner.wait() if timeout_ms is None else self._runner.wait(timeout_ms)

    def _on_done(self, outcome: str, value: Any, message: str, details: str) -> None:
        try:
            if outcome == "result":
                self.result.emit(value)
            elif outcome == "cancelled":
                self.cancelled.emit()
            else:
                if details:
                    log.error("%s failed: %s\n%s", self.description, message, details)
                self.error.emit(message, details)
        finally:
            self._done = True
            self._maybe_finish()

    def _on_thread_finished(self) -> None:
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        # `finished` waits for both the outcome and the thread's end, so a
        # slot on `finished` may drop the worker (and its QThread) safely.
        if not self._running or not self._done or self._runner.isRunning():
            return
        self._runner.wait()  # the thread is past run(); this only joins it
        self._running = False
        try:
            self.finished.emit()
        finally:  # after the slots, which may start the next worker before the window counts
            running_work.leave(self)


running_work = WorkRegistry()


def running_workers() -> list[EngineWorker]:
    """Workers started and not yet finished, in this process."""
    return [w for w in running_work.running() if isinstance(w, EngineWorker)]


class _Wish:
    """One request to a LatestCall (compared by identity: a newer one replaces it)."""

    def __init__(self, key: Any, fn: Callable, args: tuple, description: str) -> None:
        self.key, self.fn, self.args, self.description = key, fn, args, description


class LatestCall(QObject):
    """Calls off the GUI thread, one at a time, where only the latest request counts (images
    decoded while the user browses, SAM2 answering clicks): a request made while a call runs
    waits, replacing the one waiting before it; when the running call ends the waiting one
    starts. ``answered(key, value)`` or ``failed(key, message, details)`` is emitted for the
    latest request only (the outcome of a call the user has moved past is dropped), then
    ``idle()`` once nothing runs or waits. ``register`` gets every worker started (the host's
    ``register_worker``)."""

    answered = pyqtSignal(object, object)
    failed = pyqtSignal(object, str, str)
    idle = pyqtSignal()

    def __init__(self, parent: QObject | None = None, register: Callable[[EngineWorker], Any] | None = None,
                 description: str = "") -> None:
        super().__init__(parent)
        self._register = register
        self._description = description
        self._worker: EngineWorker | None = None
        self._wanted: _Wish | None = None  # the latest request not answered yet
        self._running: _Wish | None = None  # the request whose call runs

    @property
    def busy(self) -> bool:
        """A call is running or waiting. Asked of the worker itself: when this object's Qt side is
        deleted while its call runs (a closed panel's loader), ``finished`` no longer reaches it,
        and it must not say busy forever."""
        return (self._worker is not None and self._worker.is_running()) or self._wanted is not None

    @property
    def wanted(self) -> Any:
        """The key of the latest request not answered yet, or None."""
        return self._wanted.key if self._wanted is not None else None

    def request(self, key: Any, fn: Callable, *args, description: str = "") -> None:
        """Ask for ``fn(*args)``; ``key`` says which wish it was when the answer comes. A key equal
        to the running call's takes that call's answer instead of starting it again, so a key
        must name everything the answer depends on."""
        if self._running is not None and self._running.key == key:
            self._wanted = self._running
            return
        self._wanted = _Wish(key, fn, args, description)
        if self._worker is None:
            self._start()

    def forget(self) -> None:
        """Drop the request not answered yet (the running call ends, its outcome unseen)."""
        self._wanted = None

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the running call has ended (tests and shutdown)."""
        return True if self._worker is None else self._worker.wait(timeout_ms)

    def _start(self) -> None:
        wish = self._running = self._wanted
        worker = EngineWorker(wish.fn, *wish.args, description=wish.description or self._description)
        # Bound methods, not lambdas: Qt disconnects them if this object is deleted first.
        worker.result.connect(self._on_result)
        worker.error.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        if self._register is not None:
            self._register(worker)
        worker.start()

    def _on_result(self, value: Any) -> None:
        if self._wanted is self._running:
            self._wanted = None
            self.answered.emit(self._running.key, value)

    def _on_error(self, message: str, details: str) -> None:
        if self._wanted is self._running:
            self._wanted = None
            self.failed.emit(self._running.key, message, details)

    def _on_finished(self) -> None:
        self._worker = None
        if self._wanted is self._running:  # cancelled, e.g. by the host closing
            self._wanted = None
        self._running = None
        if self._wanted is not None:
            self._start()
        else:
            self.idle.emit()
