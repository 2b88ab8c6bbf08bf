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


def test_journal_resume_reuses_this_runs_lines_named_as_the_targets_are_now(tmp_path):
    """The one resume rule of the local loop and the Ray driver (engine.memory_propagation.JournalResume)."""
    from descriptron_sam2pal.engine.memory_propagation import JournalResume, target_key
    from descriptron_sam2pal.engine.results import Target

    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(bytes([i]) * 10)  # the key hashes the bytes; nothing decodes them
    targets = [Target(path=str(p), image_id=f"now{i}") for i, p in enumerate(files)]
    targets.append(Target(path=str(tmp_path / "gone.png")))  # unreadable: no key, its turn reports it
    path = tmp_path / "j.jsonl"

    fresh = JournalResume(path, "run", targets)  # nothing journaled: no key is computed up front
    assert fresh.keys == [None] * 4 and fresh.n_done == 0
    assert JournalResume(path, "run", targets, all_keys=True).keys[:3] == [target_key(t) for t in targets[:3]]
    fresh.record([(fresh.key(1), result(1))])
    ResultJournal(path).append("another run", [(target_key(targets[0]), result(0))])

    again = JournalResume(path, "run", targets)
    assert again.n_done == 1 and [again.done(i) for i in range(4)] == [False, True, False, False]
    assert again.keys[3] is None
    back = again.result(1)
    assert (back.image_id, back.path, back.from_journal) == ("now1", str(files[1]), True)
    assert back.structures["head"].mask.tolist() == result(1).structures["head"].mask.tolist()
    files[1].write_bytes(b"another photo")  # the same path with other pixels is not done
    assert JournalResume(path, "run", targets).n_done == 0
    assert JournalResume(None, "", targets).key(0) is None  # without a journal nothing is keyed
