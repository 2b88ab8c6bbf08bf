"""ResultJournal.index/read: what a long resumed run keeps in memory instead of every result."""

from __future__ import annotations

import numpy as np

from descriptron_sam2pal.engine.results import ResultJournal, StructureResult, TargetResult


def result(i: int) -> TargetResult:
    mask = np.zeros((6, 5), bool)
    mask[1:1 + i % 4, 2] = True
    return TargetResult(
        i, f"/photos/{i}.png", 6, 5, {"head": StructureResult("head", True, mask, 0.5, 0.9, 0.8)}
    )


def test_index_finds_what_load_finds_past_damaged_lines_and_other_runs(tmp_path):
    journal = ResultJournal(tmp_path / "j.jsonl")
    journal.append("run", [("a", result(1)), ("b", result(2))])
    with open(journal.path, "ab") as f:
        f.write(b'{"v": 1, "run": "run", "key": "c", "res')  # a crash mid-write
    journal.append("other", [("a", result(3))])
    journal.append("run", [("c", result(3)), ("a", result(0))])  # a key written again: the latest wins
    loaded, index = journal.load("run"), journal.index("run")
    assert sorted(index) == sorted(loaded) == ["a", "b", "c"]
    for key, offset in index.items():
        assert journal.read(offset) == loaded[key]
    assert TargetResult.from_json(journal.read(index["a"])).image_id == 0
