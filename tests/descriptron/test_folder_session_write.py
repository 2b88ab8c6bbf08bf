"""A folder-session project: Descriptron's Load Folder + Load Annotations shows one file for every
photo. What we merge for photos that had no annotation file goes into the folder's newest session
file (a new version of it), so Descriptron's session shows it and its next save keeps it.
Descriptron's own functions do the session, the loading and the saves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from descriptron_sam2pal.store import AnnotationStore
from descriptron_sam2pal.store.merge import MergeSummary
from descriptron_sam2pal.store.provenance import is_prediction
from descriptron_sam2pal.store.stem import parse_final_name
from tests.descriptron.test_descriptron_roundtrip import box, by_label, photo
from tests.helpers.descriptron_harness import Descriptron

PREDICTION = {"source": "sam2pal", "score": 0.8}


def photos_in(path: Path) -> set[str]:
    return {i["file_name"] for i in json.loads(path.read_text())["images"]}


def test_predictions_for_unannotated_photos_join_the_session_file_and_survive_its_next_save(tmp_path):
    a, b, c, d = (photo(tmp_path / f"{n}.png") for n in "ABCD")
    monday = Descriptron(clock_start=1000)
    monday.start_folder([a, b, c, d])
    monday.visit(0)
    monday.add_mask("head", box(5, 20, 5, 20))
    monday.visit(1)
    monday.add_mask("head", box(30, 50, 30, 50))
    session = monday.save(at=1000)
    assert photos_in(session) == {"A.png", "B.png"}, "C and D were never visited"

    store = AnnotationStore.open(tmp_path)
    for p, where in ((a, box(40, 60, 60, 90)), (c, box(10, 30, 10, 40)), (d, box(50, 70, 70, 100))):
        store.add_structure(store.image_by_file(p), "eye", where, attributes=dict(PREDICTION))
    written = store.save()

    finals = sorted(tmp_path.glob("*_final_*.json"))
    assert [p.name for p in finals] == [session.name, written[0].name], (
        "one new session file, nothing per photo"
    )
    new = written[0]
    assert parse_final_name(new)[0] == parse_final_name(session)[0] and parse_final_name(new)[1] > 1000
    assert store.session_files == [new]
    summary = MergeSummary()
    summary.session_files = store.session_files
    assert f"folder session they are in {new.name}: after Load Folder, Load Annotations that file" in str(
        summary
    )
    assert photos_in(new) == {"A.png", "B.png", "C.png", "D.png"}

    # Tuesday: Load Folder, Load Annotations of the newest file; every photo shows our outlines
    tuesday = Descriptron(clock_start=int(parse_final_name(new)[1]) + 100)
    tuesday.start_folder([a, b, c, d], source=new)
    shown = {}
    for i in range(4):
        shown[i] = by_label(tuesday.visit(i))
    np.testing.assert_array_equal(shown[2]["eye"], box(10, 30, 10, 40))
    np.testing.assert_array_equal(shown[3]["eye"], box(50, 70, 70, 100))
    assert set(shown[0]) == {"head", "eye"} and set(shown[1]) == {"head"}
    # the person adds a head on C and saves the session
    tuesday.visit(2)
    tuesday.add_mask("head", box(2, 8, 2, 8))
    saved = tuesday.save()

    again = AnnotationStore.open(tmp_path)
    assert again.image_by_file(c).source == saved
    assert set(again.structure_masks(again.image_by_file(c))) == {"head"}, (
        "Descriptron 2.8.2's session save keeps on a photo it changed only what was drawn in the session "
        "(a loaded outline of its own is dropped the same way: docs/design/descriptron_findings.md)"
    )
    for p, where in ((a, box(40, 60, 60, 90)), (d, box(50, 70, 70, 100))):  # not changed: kept
        rec = again.image_by_file(p)
        assert rec.source == new
        eyes = [x for x in again.annotations_for(rec) if x.category == "eye"]
        assert len(eyes) == 1 and is_prediction(eyes[0])
        np.testing.assert_array_equal(eyes[0].mask(), where)
    assert set(again.structure_masks(again.image_by_file(a))) == {"head", "eye"}


def test_a_folder_without_a_session_file_still_gets_one_file_per_photo(tmp_path):
    a, b = (photo(tmp_path / f"{n}.png") for n in "AB")
    d = Descriptron(clock_start=1000)
    d.open_image(a)
    d.add_mask("head", box(5, 20, 5, 20))
    d.save(at=1000)
    store = AnnotationStore.open(tmp_path)
    store.add_structure(store.image_by_file(b), "eye", box(10, 30, 10, 40), attributes=dict(PREDICTION))
    (written, _) = store.save()
    assert parse_final_name(written)[0].endswith("B") and photos_in(written) == {"B.png"}
    assert store.session_files == []


def test_a_folder_session_edit_and_absent_mark_survive_the_next_write_to(
    tmp_path, present_checkpoint, capsys
):
    """The whole round: `propagate --write-to` into a folder-session project, a person's session in
    Descriptron loads our file, corrects one outline, marks a structure absent and saves; the next
    `--write-to` keeps what the person did and still writes one session file."""
    import time

    from PIL import Image

    from tests.descriptron.test_edits_win import COLORS, TEMPLATE_COLOURS
    from tests.helpers.cli_runs import propagate_argv, run_cli as run
    from tests.helpers.synthetic import make_specimen, save_colour_template

    specimens = tmp_path / "specimens"
    specimens.mkdir()
    for i in range(3):
        Image.fromarray(make_specimen(10 + i, size=(96, 120))[0]).save(specimens / f"s{i}.png")
    template, template_mask, _ = save_colour_template(tmp_path, TEMPLATE_COLOURS)
    photos = [specimens / f"s{i}.png" for i in range(3)]
    monday = Descriptron(clock_start=1000)
    monday.start_folder(photos)
    monday.visit(1)
    monday.add_mask("head", box(5, 30, 5, 40, 96, 120))
    monday.visit(2)
    monday.add_mask("head", box(50, 80, 60, 100, 96, 120))
    session = monday.save(at=1000)
    argv = propagate_argv(
        template,
        template_mask,
        COLORS,
        specimens,
        present_checkpoint,
        tmp_path / "pred.json",
        "--write-to",
        specimens,
    )
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    ours = AnnotationStore.open(specimens)
    new = ours.image_by_file(photos[0]).source
    assert parse_final_name(new)[0] == parse_final_name(session)[0] and new != session
    assert {ours.image_by_file(p).source for p in photos} == {new}
    assert f"in Descriptron's folder session they are in {new.name}" in out
    first = {a.category: a for a in ours.annotations_for(ours.image_by_file(photos[0])) if a.kind == "mask"}
    assert set(first) == {"head", "eye", "scape"}

    tuesday = Descriptron(clock_start=int(time.time()) + 100)
    tuesday.start_folder(photos, source=new)
    loaded = tuesday.visit(0)
    for i, (label, mask, data) in enumerate(loaded):
        if label == "head":
            corrected = mask.copy()
            rows = np.flatnonzero(corrected.any(axis=1))
            corrected[rows[0] : rows[0] + max(2, len(rows) // 3)] = False
            data["segmentation"] = corrected.astype(np.uint8)
        tuesday.ns["current_mask_index"] = i
        tuesday.ns["save_mask_and_contour_via2"]()
    tuesday.set_status("scape", "absent")
    saved = tuesday.save()
    for png in specimens.glob("*_mask.png"):
        png.unlink()

    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "s0.png: head: changed by a person in Descriptron since it was predicted (theirs now, kept)" in out
    assert "s0.png: eye: changed" not in out, "re-applied untouched from the .json: still ours"
    assert 'scape: marked "absent" since it was predicted; the unreviewed prediction was removed' in out
    after = AnnotationStore.open(specimens)
    s0 = after.image_by_file(photos[0])
    final = {a.category: a for a in after.annotations_for(s0) if a.kind == "mask"}
    assert set(final) == {"head", "eye"} and s0.structure_status == {"scape": "absent"}
    kept = final["head"].mask()  # as Descriptron saved the correction (its polygons move a few pixels)
    assert (kept & corrected).sum() / (kept | corrected).sum() > 0.98
    person = [a for a in after.annotations_for(after.image_by_file(photos[1])) if a.category == "head"]
    assert len(person) == 1 and not is_prediction(person[0])
    assert parse_final_name(s0.source)[0] == parse_final_name(saved)[0] and s0.source != saved
    assert {after.image_by_file(p).source for p in photos} == {s0.source}, "still one session file"
