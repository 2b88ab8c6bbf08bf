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
