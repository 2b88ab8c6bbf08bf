import threading

import pytest

from descriptron_sam2pal import UserError
from descriptron_sam2pal.gui.workers import EngineWorker, running_work, running_workers


def test_result_then_finished_in_order(qtbot):
    seen = []

    def double(x, progress, cancel, log_fn):
        progress("half")
        log_fn("halfway there")
        progress("all")
        return 2 * x

    worker = EngineWorker(double, 21, job=True)
    worker.progress.connect(lambda p: seen.append(("progress", p)))
    worker.log.connect(lambda line: seen.append(("log", line)))
    worker.result.connect(lambda r: seen.append(("result", r)))
    worker.finished.connect(lambda: seen.append(("finished", worker in running_work.workers())))
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
        assert worker in running_workers()
    # One log channel beside the progress one, in the order fn sent them; the worker is still
    # registered while `finished` is delivered and leaves the registry right after.
    assert seen == [("progress", "half"), ("log", "halfway there"), ("progress", "all"), ("result", 42),
                    ("finished", True)]
    assert not worker.is_running()
    assert worker not in running_workers() and worker not in running_work.workers()


def test_raising_worker_still_emits_finished_and_ui_reenables(qtbot):
    """Regression guard (cf. DeepLabCut): an exception must not leave the UI busy forever."""
    from PyQt5.QtWidgets import QPushButton

    button = QPushButton("Run")
    qtbot.addWidget(button)
    errors = []

    def boom():
        raise RuntimeError("disk on fire")

    worker = EngineWorker(boom)
    button.setEnabled(False)
    worker.error.connect(lambda msg, details: errors.append((msg, details)))
    worker.finished.connect(lambda: button.setEnabled(True))
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert button.isEnabled()
    (msg, details), = errors
    assert msg == "RuntimeError: disk on fire"
    assert "Traceback" in details and "boom" in details


def test_user_error_message_is_plain(qtbot):
    def refuse():
        raise UserError("Choose a checkpoint first (Settings > Model).")

    worker = EngineWorker(refuse)
    with qtbot.waitSignal(worker.error, timeout=5000) as blocker:
        worker.start()
    assert blocker.args == ["Choose a checkpoint first (Settings > Model).", ""]
    qtbot.waitUntil(lambda: not worker.is_running(), timeout=5000)


def test_cancel_reaches_fn_and_reports_cancelled(qtbot):
    started = threading.Event()

    def loop(progress, cancel, log_fn):
        started.set()
        while not cancel.cancelled:
            cancel._event.wait(0.01)
        return "partial"

    worker = EngineWorker(loop, job=True)
    results = []
    worker.result.connect(results.append)
    with qtbot.waitSignals([worker.cancelled, worker.finished], timeout=5000, order="strict"):
        worker.start()
        assert started.wait(5)
        assert worker.is_running()
        worker.cancel()
    assert results == []


def test_fn_without_progress_or_cancel_gets_neither(qtbot):
    worker = EngineWorker(lambda a, b=0: a + b, 1, b=2)
    with qtbot.waitSignal(worker.result, timeout=5000) as blocker:
        worker.start()
    assert blocker.args == [3]
    qtbot.waitUntil(lambda: not worker.is_running(), timeout=5000)


def test_the_caller_says_what_fn_takes_the_signature_is_not_read(qtbot):
    """Without job=True a fn that could take progress/cancel gets neither (no guessing); with it,
    a fn that lacks the jobs/ keywords fails loudly instead of running without a cancel."""
    got = []
    worker = EngineWorker(lambda progress=None, cancel=None, **rest: got.append((progress, cancel, rest)))
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert got == [(None, None, {})]

    strict = EngineWorker(lambda request: request, "r", job=True)
    with qtbot.waitSignal(strict.error, timeout=5000) as blocker:
        strict.start()
    assert blocker.args[0].startswith("TypeError:") and "progress" in blocker.args[0]
    qtbot.waitUntil(lambda: not strict.is_running(), timeout=5000)


def test_one_registry_lists_announced_work_until_finished(qtbot):
    """Every started worker is in the registry; the host's register_worker marks it as the user's
    (announced, also before it starts); a worker that is not an EngineWorker leaves on finished."""
    from PyQt5.QtCore import QObject, pyqtSignal

    gate = threading.Event()
    quiet = EngineWorker(gate.wait, 10)
    shown = EngineWorker(gate.wait, 10, description="Train")
    changes = []

    def changed():
        changes.append(True)

    running_work.changed.connect(changed)
    running_work.announce(shown)
    assert running_work.announced() == [shown] and running_work.running(announced_only=True) == []
    quiet.start()
    shown.start()
    assert {quiet, shown} <= set(running_work.running())
    assert running_work.running(announced_only=True) == [shown]

    class Foreign(QObject):
        finished = pyqtSignal()

        def is_running(self):
            return True

        def cancel(self):
            pass

    foreign = Foreign()
    running_work.announce(foreign)
    assert running_work.announced() == [shown, foreign]
    foreign.finished.emit()
    with qtbot.waitSignals([quiet.finished, shown.finished], timeout=5000):
        gate.set()
    assert not {quiet, shown, foreign} & set(running_work.workers())
    running_work.changed.disconnect(changed)
    assert len(changes) == 8  # join and leave of each, announce of two


def test_a_worker_runs_once(qtbot):
    worker = EngineWorker(lambda: None)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    with pytest.raises(RuntimeError):
        worker.start()


def test_latest_call_runs_one_at_a_time_and_answers_only_the_latest_request(qtbot):
    """LatestCall (SAM2 clicks, image loads): a newer request replaces the waiting one, the running
    call's answer is dropped when moved past, a request equal to the running one takes its answer,
    and forget() drops everything not answered."""
    import threading

    from descriptron_sam2pal.gui.workers import LatestCall

    gate, ran = threading.Event(), []

    def work(value):
        ran.append(value)
        gate.wait(10)
        if value == "bad":
            raise ValueError("no good")
        return value * 2

    calls = LatestCall()
    answers, failures, idles = [], [], []
    calls.answered.connect(lambda key, value: answers.append((key, value)))
    calls.failed.connect(lambda key, message, _details: failures.append((key, message)))
    calls.idle.connect(lambda: idles.append(True))

    for key in ("a", "b", "c"):
        calls.request(key, work, key)
    assert calls.busy and calls.wanted == "c"
    gate.set()
    qtbot.waitUntil(lambda: not calls.busy and bool(idles), timeout=10000)
    assert ran == ["a", "c"] and answers == [("c", "cc")]  # "a" ran but was moved past; "b" never ran

    gate.clear()
    for seen in (ran, answers, idles):
        seen.clear()
    calls.request("x", work, "x")
    calls.request("y", work, "y")
    calls.request("x", work, "x")  # back to the one running: no second run
    gate.set()
    qtbot.waitUntil(lambda: bool(idles), timeout=10000)
    assert ran == ["x"] and answers == [("x", "xx")]

    gate.clear()
    for seen in (ran, answers, idles):
        seen.clear()
    calls.request("bad", work, "bad")
    calls.request("z", work, "z")
    calls.forget()  # e.g. the image changed: nothing of these is wanted
    gate.set()
    qtbot.waitUntil(lambda: bool(idles), timeout=10000)
    assert ran == ["bad"] and answers == [] and failures == []
    calls.request("bad", work, "bad")
    qtbot.waitUntil(lambda: bool(failures), timeout=10000)
    assert failures == [("bad", "ValueError: no good")]


def test_latest_call_is_not_busy_forever_when_its_owner_is_deleted_mid_call(qtbot):
    """A panel closed (its Qt side deleted) while its photo loads: the call ends, and the loader
    no longer says busy, though ``finished`` cannot reach the deleted object any more."""
    import sip
    from PyQt5.QtWidgets import QWidget

    from descriptron_sam2pal.gui.workers import LatestCall

    gate = threading.Event()
    owner = QWidget()
    calls = LatestCall(owner)
    calls.request("photo", lambda: gate.wait(10))
    assert calls.busy
    calls.forget()  # the panel lets go of its request, as set_session(None) does
    sip.delete(owner)  # closing the panel deletes the loader's Qt side with it
    assert sip.isdeleted(calls)
    gate.set()
    qtbot.waitUntil(lambda: not calls.busy, timeout=10000)
