"""The one 'latest request wins' image loader of the workspace and the Review panel."""

import threading

import numpy as np

from descriptron_sam2pal.gui.image_loader import LatestImageLoader
from descriptron_sam2pal.gui.workers import running_workers


class GatedLoad:
    """A load function that blocks until released, recording what it was asked to read."""

    def __init__(self):
        self.asked, self.gate = [], threading.Event()

    def __call__(self, path):
        self.asked.append(path)
        self.gate.wait(10)
        if path.endswith("bad.png"):
            raise OSError("cannot read")
        return np.full((2, 2, 3), len(self.asked), np.uint8)


def test_only_the_latest_request_is_answered_and_loads_do_not_pile_up(qtbot):
    load = GatedLoad()
    loader = LatestImageLoader(load=load)
    answers = []
    loader.loaded.connect(lambda key, pixels: answers.append((key, int(pixels[0, 0, 0]))))
    for name in ("a.png", "b.png", "c.png", "d.png"):
        loader.request(name, name)  # the user pages through quickly
    assert loader.busy and loader.wanted == "d.png"
    load.gate.set()
    qtbot.waitUntil(lambda: not loader.busy, timeout=10000)
    assert load.asked == ["a.png", "d.png"]  # the one running, then only the newest wish
    assert answers == [("d.png", 2)]


def test_a_failure_is_reported_for_its_request_and_a_deleted_loader_is_left_alone(qtbot):
    load = GatedLoad()
    loader = LatestImageLoader(load=load)
    failures = []
    loader.failed.connect(lambda key, message, details: failures.append((key, message)))
    loader.request("bad", "bad.png")
    load.gate.set()
    qtbot.waitUntil(lambda: not loader.busy, timeout=10000)
    assert failures and failures[0][0] == "bad" and "cannot read" in failures[0][1]

    slow = GatedLoad()
    gone = LatestImageLoader(load=slow)
    gone.request("x", "x.png")
    [worker] = running_workers()
    gone.deleteLater()
    qtbot.wait(50)  # deleted while its file is still being read
    slow.gate.set()
    assert worker.wait(10000)
    qtbot.wait(50)  # its answer arrives at no one, without an exception in the event loop
