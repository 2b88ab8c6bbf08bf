"""A write never hides anything, and specimen identity is Descriptron's: `--write-to` that would
start a photo's annotations from nothing, bring back an older file, or write outside the store
is refused before any work; photos Descriptron takes for one specimen are refused naming both;
a category id an annotation uses is never given to a new category. Real CLI, Descriptron's own
save for the user's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal.store import AnnotationStore

from tests.helpers.descriptron_harness import Descriptron
from tests.helpers.synthetic import make_specimen
from tests.helpers.cli_runs import run_cli as run
from tests.helpers.cli_runs import propagate_argv

COLORS = "head=200,0,0;eye=0,200,0"


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path):
    """Three photos, each saved once in Descriptron with an outline, a line and a status."""
    specimens = tmp_path / "specimens"
    specimens.mkdir()
    d = Descriptron()
    for i in range(3):
        image, _ = make_specimen(10 + i, size=(96, 120))
        Image.fromarray(image).save(specimens / f"s{i}.png")
        d = Descriptron()
        d.open_image(specimens / f"s{i}.png")
        outline = np.zeros((96, 120), bool)
        outline[10:40, 20 + 10 * i : 70] = True
        d.add_mask("pronotum", outline)
        d.add_line("length", [(5, 80), (100, 80)])
        d.set_status("eye", "absent")
        d.save(at=1_700_000_000 + i)
    for png in specimens.glob("*_mask.png"):
        png.unlink()
    image, masks = make_specimen(0, size=(96, 120), structures=("head", "eye"))
    (tmp_path / "template").mkdir()
    Image.fromarray(image).save(tmp_path / "template" / "t.png")
    colour = np.zeros(image.shape, np.uint8)
    colour[masks["head"]] = (200, 0, 0)
    colour[masks["eye"]] = (0, 200, 0)
    Image.fromarray(colour).save(tmp_path / "template" / "t_mask.png")
    return tmp_path


def argv(root, checkpoint, *extra, images=None):
    return propagate_argv(root / "template" / "t.png", root / "template" / "t_mask.png", COLORS,
                          images or root / "specimens", checkpoint, root / "pred.json", *extra)


def test_write_to_one_photos_file_while_segmenting_others_is_refused(project, mini_checkpoint, capsys):
    root = project
    one = root / "specimens" / "s1_final_1700000001.json"
    before = snapshot(root)
    code, stdout, err = run(capsys, *argv(root, mini_checkpoint, "--write-to", one))
    assert code == 2 and "Traceback" not in err
    assert "is one Descriptron save; it does not hold 2 of the photos (s0.png, s2.png)" in err
    assert f"--write-to {one.parent}" in err and "would hide those" in err
    assert "image encoder passes" not in stdout and snapshot(root) == before


def test_write_to_one_file_holding_every_photo_writes_those_photos_only(project, present_checkpoint, capsys):
    root = project
    only = root / "only"
    only.mkdir()
    (root / "specimens" / "s1.png").rename(only / "s1.png")
    for p in (root / "specimens").glob("s1_final_*"):
        p.rename(only / p.name)
    one = only / "s1_final_1700000001.json"
    code, _, err = run(
        capsys, *argv(root, present_checkpoint, "--write-to", one, "--no-confidence", images=only)
    )
    assert code == 0, err
    finals = sorted(p.name for p in only.glob("*_final_*.json"))
    assert len(finals) == 2 and finals[0] == one.name  # one new, newer file; the old one kept
    new = AnnotationStore.open(only / finals[1])
    record = new.images[0]
    kinds = sorted(a.kind for a in new.annotations_for(record.id))
    assert "line" in kinds and record.structure_status == {"eye": "absent"}  # nothing of the photo hidden
    assert any(a.category == "pronotum" for a in new.annotations_for(record.id))


def test_write_to_an_older_file_of_a_photo_is_refused(project, mini_checkpoint, capsys):
    root = project
    only = root / "only"
    only.mkdir()
    (root / "specimens" / "s1.png").rename(only / "s1.png")
    old = only / "s1_final_1700000001.json"
    for p in (root / "specimens").glob("s1_final_*"):
        p.rename(only / p.name)
    d = Descriptron(clock_start=1_700_000_500)
    d.open_image(only / "s1.png")
    d.load(old)
    d.add_mask("elytra", np.pad(np.ones((20, 20), bool), ((50, 26), (50, 50))))
    newer = d.save(at=1_700_000_500)
    for png in only.glob("*_mask.png"):
        png.unlink()
    before = snapshot(root)
    code, stdout, err = run(capsys, *argv(root, mini_checkpoint, "--write-to", old, images=only))
    assert code == 2 and f"is not the newest annotation file of s1.png: {newer} is newer" in err
    assert snapshot(root) == before


def test_write_to_a_store_holding_none_of_the_photos_is_refused_naming_both_folders(
    project, mini_checkpoint, capsys
):
    root = project
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    for i in range(2):
        Image.fromarray(make_specimen(30 + i, size=(64, 64))[0]).save(elsewhere / f"e{i}.png")
    session = elsewhere / "session.json"
    AnnotationStore.create(session).save()
    before = snapshot(root)
    for store in (session, elsewhere):
        code, stdout, err = run(capsys, *argv(root, mini_checkpoint, "--write-to", store))
        assert code == 2, err
        assert "holds none of the 3 photo(s) being segmented" in err
        assert f"its photos are in {elsewhere}" in err and f"these are in {root / 'specimens'}" in err
        assert snapshot(root) == before


@pytest.mark.parametrize("names", [("a.png", "a.jpg"), ("Bee 1.png", "bee_1.png"), ("X.TIF", "x.png")])
def test_photos_that_are_one_specimen_for_descriptron_are_refused_naming_both(
    tmp_path, mini_checkpoint, capsys, names
):
    root = tmp_path
    (root / "specimens").mkdir()
    for name in names:
        image = Image.fromarray(make_specimen(40, size=(96, 120))[0])
        image.save(root / "specimens" / name, format="PNG" if name.lower().endswith(".png") else None)
    image, masks = make_specimen(0, size=(96, 120), structures=("head", "eye"))
    (root / "template").mkdir()
    Image.fromarray(image).save(root / "template" / "t.png")
    colour = np.zeros(image.shape, np.uint8)
    colour[masks["head"]] = (200, 0, 0)
    Image.fromarray(colour).save(root / "template" / "t_mask.png")
    before = snapshot(root)
    for command in ("propagate", "train"):
        args = argv(root, mini_checkpoint, "--write-to", root / "specimens")
        if command == "train":
            args = ["train", *args[1 : args.index("--out")], "--out", root / "run", "--steps", 1]
        code, stdout, err = run(capsys, *args)
        assert code == 2, err
        first, second = sorted(names)
        assert "are one specimen for Descriptron" in err and first in err and second in err
        assert "Rename one of them" in err and "Traceback" not in err
        assert snapshot(root) == before


def test_a_category_id_used_by_an_annotation_is_never_given_to_a_new_category(tmp_path):
    Image.fromarray(make_specimen(1, size=(64, 64))[0]).save(tmp_path / "a.png")
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 4,
                "iscrowd": 0,
                "area": 100,
                "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]],
                "bbox": [5, 5, 10, 10],
            }
        ],
        "categories": [{"id": 1, "name": "head", "supercategory": "none"}],
    }  # entry of id 4 missing
    path = tmp_path / "session.json"
    path.write_text(json.dumps(doc))
    store = AnnotationStore.open(path)
    mask = np.zeros((64, 64), bool)
    mask[30:50, 30:50] = True
    for k, name in enumerate(["scape", "eye", "antenna"]):  # ids 2, 3 and then not 4
        store.add_structure(1, name, np.roll(mask, 3 * k, axis=1))
    store.save()
    saved = json.loads(path.read_text())
    new_ids = {c["name"]: c["id"] for c in saved["categories"]}
    assert 4 not in new_ids.values() and len(set(new_ids.values())) == 4
    assert [a["category_id"] for a in saved["annotations"] if a["id"] == 1] == [4]  # still unlabelled
