"""The training run folder's files (engine.run_folder): the log a resume keeps, and the rules for
starting or resuming in a folder."""

import json

import pytest

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.run_folder import LOG_FILE, SETTINGS_FILE, STATE_FILE, RunFolder


def test_a_resume_keeps_the_log_up_to_its_state_and_stops_at_a_cut_line(tmp_path):
    folder = RunFolder(tmp_path)
    for step in (1, 2, 3):
        folder.append_log({"step": step, "loss": 1.0 / step})
    with open(tmp_path / LOG_FILE, "a") as f:
        f.write('{"step": 4, "lo')  # cut by a crash
    assert [e["step"] for e in folder.read_log()] == [1, 2, 3]
    assert [e["step"] for e in folder.log_until(2)] == [1, 2]
    assert [e["step"] for e in folder.read_log()] == [1, 2]  # the file too: steps 3 and 4 are redone


def test_start_and_resume_rules(tmp_path):
    folder = RunFolder(tmp_path)
    folder.check_start(resume=False)  # an empty folder
    with pytest.raises(UserError, match="nothing to resume"):
        folder.check_start(resume=True)
    folder.append_log({"step": 1})
    with pytest.raises(UserError, match="already holds a training run"):
        folder.check_start(resume=False)
    (tmp_path / STATE_FILE).write_bytes(b"state")
    folder.check_start(resume=True)


def test_resuming_needs_the_same_inputs_except_steps_and_new_defaults(tmp_path):
    saved = {"config": {"steps": 10, "lr": 1e-3}, "model": {"config_name": "t", "device": "cpu"},
             "templates": [{"id": 1}], "unlabeled": [{"key": "a"}], "validation": {"metric": None}}
    RunFolder(tmp_path).write_json(SETTINGS_FILE, saved)
    same = json.loads(json.dumps(saved))
    same["config"].update(steps=20, seed=0)  # more steps; a setting added since, at its default
    same["model"]["device"] = "cuda"
    RunFolder(tmp_path).check_resumable(same, defaults={"seed": 0})
    other = json.loads(json.dumps(same))
    other["config"]["lr"] = 5e-4
    other["unlabeled"] = [{"key": "b"}]
    with pytest.raises(UserError, match=r"settings \(lr\), unlabeled images differ"):
        RunFolder(tmp_path).check_resumable(other, defaults={"seed": 0})
