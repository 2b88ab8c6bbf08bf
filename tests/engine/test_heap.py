"""Freed memory goes back to the OS after each propagation batch."""

import sys

import pytest

from descriptron_sam2pal.engine import heap, memory_propagation as propagate_module
from descriptron_sam2pal.engine.memory_propagation import propagate
from tests.helpers.synthetic import make_specimen, make_template


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_runs_on_linux():
    assert heap.release_freed_memory() is True


def test_propagation_releases_memory_after_every_batch(present_model, monkeypatch):
    calls = []
    monkeypatch.setattr(propagate_module, "release_freed_memory", lambda: calls.append(1))
    targets = [make_specimen(20 + i, size=(80, 100))[0] for i in range(5)]
    results = propagate(present_model, [make_template("t", seed=0)], targets, batch_size=2)
    assert len(results) == 5 and all(r.ok for r in results)
    assert len(calls) == 3  # batches of 2, 2 and 1
