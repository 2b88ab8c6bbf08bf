"""The output rule (jobs.outputs): a path we write is new, ours (recognised by content), or
allowed by --overwrite; everything else is refused before any work, naming the file.
Real CLI, real files; refusals come before the model is built."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal import UserError
from descriptron_sam2pal.jobs.outputs import (
    check_output_file,
    check_predictions_out,
    check_run_folder,
    mark_run_folder,
    remove_leftover_temps,
)
from descriptron_sam2pal.store import AnnotationStore
from descriptron_sam2pal.store.ours import RUN_MANIFEST, is_our_predictions, is_our_run_folder

from tests.helpers.synthetic import make_specimen
from tests.helpers.cli_runs import run_cli as run
from tests.helpers.cli_runs import propagate_argv

COLORS = "head=200,0,0;eye=0,200,0"


@pytest.fixture
def project(tmp_path):
    """Two specimen photos with a user's annotation file beside them, and a template (image +
    colour mask PNG) in its own folder."""
    specimens = tmp_path / "specimens"
    specimens.mkdir()
    for i in range(2):
        image, _ = make_specimen(10 + i, size=(96, 120))
        Image.fromarray(image).save(specimens / f"s{i}.png")
    image, masks = make_specimen(0, size=(96, 120), structures=("head", "eye"))
    (tmp_path / "template").mkdir()
    Image.fromarray(image).save(tmp_path / "template" / "t.png")
    colour = np.zeros(image.shape, np.uint8)
    colour[masks["head"]] = (200, 0, 0)
    colour[masks["eye"]] = (0, 200, 0)
    Image.fromarray(colour).save(tmp_path / "template" / "t_mask.png")
    user = {
        "images": [{"id": 1, "file_name": "s0.png", "height": 96, "width": 120}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[10, 10, 60, 10, 60, 50, 10, 50]],
                "area": 2000,
                "bbox": [10, 10, 50, 40],
            }
        ],
        "categories": [{"id": 1, "name": "head", "supercategory": "none"}],
    }
    (specimens / "s0_final_1700000000.json").write_text(json.dumps(user))
    (specimens / "s0_final_1700000000.rlejson").write_text(json.dumps(user))
    return tmp_path


def argv_to(root, checkpoint, out, *extra):
    template = root / "template"
    images = root / "specimens"
    return propagate_argv(template / "t.png", template / "t_mask.png", COLORS, images, checkpoint, out,
                          *extra)


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "case",
    [
        "final-json",
        "final-rlejson",
        "annotations-beside-photos",
        "user-json",
        "photo-of-another-project",
        "a-folder",
        "foreign-journal",
        "foreign-companion",
    ],
)
def test_propagate_out_that_is_not_ours_is_refused_before_any_work(project, mini_checkpoint, capsys, case):
    root = project
    other = root / "other_project"
    other.mkdir()
    Image.fromarray(make_specimen(3, size=(64, 64))[0]).save(other / "photo.jpg")
    (root / "specimens" / "annotations.json").write_text(
        '{"images": [], "annotations": [], "categories": []}'
    )
    (root / "mine.json").write_text('{"my": "notes"}')
    out, expect = {
        "final-json": (root / "specimens" / "s0_final_1700000000.json", "was not written by sam2pal"),
        "final-rlejson": (root / "specimens" / "s0_final_1700000000.rlejson", "was not written by sam2pal"),
        "annotations-beside-photos": (root / "specimens" / "annotations.json", "was not written by sam2pal"),
        "user-json": (root / "mine.json", "was not written by sam2pal"),
        "photo-of-another-project": (other / "photo.jpg", "give a name ending in .json"),
        "a-folder": (other, "is a folder; give a file name instead"),
        "foreign-journal": (root / "pred.json", "journal"),
        "foreign-companion": (
            root / "pred.json",
            "pred.rlejson (the .json/.rlejson pair of --out pred.json)",
        ),
    }[case]
    if case == "foreign-journal":
        (root / "pred.json.journal.jsonl").write_text("my lab notebook\n")
    if case == "foreign-companion":
        (root / "pred.rlejson").write_text('{"images": []}')
    before = snapshot(root)
    code, stdout, err = run(capsys, *argv_to(root, mini_checkpoint, out))
    assert code == 2, err
    assert expect in err and str(Path(out).name) in err and "Traceback" not in err
    assert "nothing was done" in err.lower() or case in ("photo-of-another-project", "a-folder")
    assert "image encoder passes" not in stdout  # refused before any work
    assert snapshot(root) == before  # nothing written, nothing moved aside
    assert not [p for p in root.rglob("*") if ".bak" in p.name]


def test_overwrite_never_allows_an_input(project, mini_checkpoint, capsys):
    root = project
    store = root / "specimens" / "s0_final_1700000000.json"
    before = snapshot(root)
    code, stdout, err = run(
        capsys, *argv_to(root, mini_checkpoint, store, "--templates", store, "--overwrite")
    )
    assert code == 2 and "would overwrite --templates" in err and "image encoder passes" not in stdout
    assert snapshot(root) == before


def test_the_same_out_twice_replaces_our_file_without_a_backup(project, present_checkpoint, capsys):
    root = project
    out = root / "runs" / "pred.json"
    code, _, err = run(capsys, *argv_to(root, present_checkpoint, out, "--no-confidence"))
    assert code == 0, err
    assert is_our_predictions(out) and is_our_predictions(out.with_suffix(".rlejson"))
    first = out.read_bytes()
    code, _, err = run(capsys, *argv_to(root, present_checkpoint, out, "--no-confidence"))
    assert code == 0, err
    assert out.read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.json", "pred.rlejson"]  # no .bak, no .tmp
    # --overwrite: the user's own file is replaced because they said so, still without a backup
    theirs = root / "theirs.json"
    theirs.write_text('{"images": []}')
    code, _, err = run(
        capsys, *argv_to(root, present_checkpoint, theirs, "--no-confidence", "--overwrite")
    )
    assert code == 0, err
    assert is_our_predictions(theirs)
    assert not [p for p in root.rglob("*") if ".bak" in p.name]


def test_our_predictions_are_never_read_as_the_users_store_or_templates(project, present_checkpoint, capsys):
    root = project
    out = root / "specimens" / "pred.json"  # predictions lying in the photo folder
    code, _, err = run(capsys, *argv_to(root, present_checkpoint, out, "--no-confidence"))
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["annotations"], "the biased model predicts something"
    # the folder's store is the user's _final_ file; the predictions next to it are not read
    store = AnnotationStore.open(root / "specimens")
    assert all(a.raw.get("score") is None for r in store.images for a in store.annotations_for(r.id))
    assert str(out) not in {str(p) for p in store.source_files}
    # given as templates or as the store to merge into: refused, naming the file
    code, _, err = run(
        capsys,
        "propagate",
        "--templates",
        out,
        "--images",
        root / "specimens",
        "--checkpoint",
        present_checkpoint,
        "--image-size",
        128,
        "--out",
        root / "p2.json",
    )
    assert code == 2 and "is a predictions file written by sam2pal" in err and "never templates" in err
    code, _, err = run(capsys, *argv_to(root, present_checkpoint, root / "p3.json", "--write-to", out))
    assert code == 2 and "--write-to" in err and "is a predictions file written by sam2pal" in err
    assert not (root / "p2.json").exists() and not (root / "p3.json").exists()


# ------------------------------------------------------------------ the rule itself, file by file


def test_check_output_file_allows_new_ours_or_overwrite_only(tmp_path):
    new = tmp_path / "new.json"
    check_output_file(new, "--out")  # nothing there
    foreign = tmp_path / "f.json"
    foreign.write_text('{"info": {"description": "my predictions"}, "images": []}')
    with pytest.raises(UserError, match=r"--out .*f\.json already exists and was not written by sam2pal"):
        check_output_file(foreign, "--out")
    check_output_file(foreign, "--out", overwrite=True)  # the user said so
    legacy = tmp_path / "old.json"  # an earlier version's predictions
    legacy.write_text('{"info": {"description": "SAM2-PAL predictions", "errors": []}, "images": []}')
    check_output_file(legacy, "--out")
    # a name alone does not make a file ours
    named = tmp_path / "predictions.json"
    named.write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(UserError, match="was not written by sam2pal"):
        check_output_file(named, "--out")
    # the mark must open the file: a user's file that merely mentions it is not ours
    mention = tmp_path / "m.json"
    mention.write_text('{"images": [], "note": "sam2pal_output: predictions"}')
    with pytest.raises(UserError):
        check_output_file(mention, "--out")
    with pytest.raises(UserError, match="ending in .json"):
        check_predictions_out(tmp_path / "x.png", tmp_path / "x.png.journal.jsonl")


def test_train_out_holding_a_users_files_is_refused_and_ours_is_reused(project, mini_checkpoint, capsys):
    root = project
    run_dir = root / "results"
    run_dir.mkdir()
    (run_dir / "settings.json").write_text('{"microscope": "Leica"}')
    (run_dir / "result.json").write_text('{"p": 0.01}')
    before = snapshot(run_dir)
    code, _, err = run(
        capsys,
        "train",
        "--template-image",
        root / "template" / "t.png",
        "--template-mask",
        root / "template" / "t_mask.png",
        "--colors",
        COLORS,
        "--images",
        root / "specimens",
        "--checkpoint",
        mini_checkpoint,
        "--image-size",
        128,
        "--out",
        run_dir,
        "--steps",
        1,
    )
    assert code == 2
    assert "settings.json, result.json, which sam2pal did not write" in err and str(run_dir) in err
    assert "--overwrite" in err and "Traceback" not in err
    assert snapshot(run_dir) == before
    check_run_folder(run_dir, overwrite=True)  # allowed when the user says so
    # a folder holding other files only, an empty one, and one of ours are fine
    other = root / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    check_run_folder(other)
    check_run_folder(root / "new")
    mark_run_folder(other)
    assert is_our_run_folder(other) and (other / RUN_MANIFEST).is_file()
    (other / "settings.json").write_text("{}")  # ours: a later run may replace it
    check_run_folder(other)
    with pytest.raises(UserError, match="is a file"):
        check_run_folder(root / "specimens" / "s0.png")


def test_an_earlier_versions_run_folder_is_recognised_by_its_settings(tmp_path):
    settings = {
        "package_version": "0.1",
        "versions": {},
        "config": {"steps": 3},
        "model": {},
        "structures": ["head"],
        "templates": [],
    }
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    assert is_our_run_folder(tmp_path)
    check_run_folder(tmp_path)


def test_leftover_temporary_files_of_ours_are_removed_and_nothing_else(tmp_path):
    names = ["pred.json", "pred.rlejson"]
    old = [
        tmp_path / ".pred.json.ab12cd34.tmp",
        tmp_path / ".pred.rlejson.zz_9yy8x.tmp",
        tmp_path / ".s0_final_1700000001.json.q1w2e3r4.tmp",
    ]
    fresh = tmp_path / ".pred.json.fresh123.tmp"  # a write in progress
    foreign = [tmp_path / ".other.json.ab12cd34.tmp", tmp_path / "pred.json.tmp", tmp_path / ".pred.json.tmp"]
    for p in old + [fresh] + foreign:
        p.write_text("x")
    past = time.time() - 3600
    for p in old + foreign:
        os.utime(p, (past, past))
    removed = remove_leftover_temps(tmp_path, names)
    assert sorted(removed) == sorted(old[:2])
    assert sorted(remove_leftover_temps(tmp_path)) == [old[2]]  # Descriptron _final_ pairs of a store
    assert fresh.exists() and all(p.exists() for p in foreign)


def test_a_killed_runs_temporary_files_are_removed_by_the_next_run(project, present_checkpoint, capsys):
    root = project
    out = root / "pred.json"
    left = [root / ".pred.json.k1ll3d00.tmp", root / ".pred.rlejson.k1ll3d01.tmp"]
    for p in left:
        p.write_text('{"sam2pal_output": "predictions", "images": [')
        os.utime(p, (time.time() - 3600,) * 2)
    code, _, err = run(capsys, *argv_to(root, present_checkpoint, out, "--no-confidence"))
    assert code == 0, err
    assert "removed 2 temporary file(s) left by an interrupted run" in err
    assert not any(p.exists() for p in left)


def test_an_output_folder_on_a_full_disk_is_refused_before_the_work(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from descriptron_sam2pal.jobs import outputs

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(UserError, match=r"only 4 KiB free on its disk; free some space"):
        outputs.check_writable_folder(tmp_path / "new", "the predictions")
    assert not (tmp_path / "new").exists()
