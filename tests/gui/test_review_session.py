"""ReviewSession: states, counts, undo, filter, worst-first order, write-back, session files."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from descriptron_sam2pal.jobs.review import ACCEPTED, REJECTED, UNREVIEWED, ReviewError, ReviewSession
from descriptron_sam2pal.jobs.review_files import review_path_for
from descriptron_sam2pal.imaging.masks import mask_to_polygons, mask_to_rle
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.masks import box
from tests.helpers.review_results import WORST_FIRST, make_results, write_project


@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path / "specimens")


@pytest.fixture
def session(project):
    return ReviewSession.from_results(make_results(project.parent))


def find(session, file_name, structure):
    return next(i for i in session.items if i.target.file_name == file_name and i.structure == structure)


def labels(items):
    return [(i.target.file_name, i.structure) for i in items]


def test_worst_first_absent_flagged_then_score_then_object_score(session):
    assert labels(session.visible()) == WORST_FIRST
    first = session.visible()[0]
    assert not first.present and first.absent and first.mask is None


def test_states_counts_and_filters(session):
    assert session.counts_text() == "0 of 9 reviewed: 0 accepted, 0 rejected"
    eye, head = find(session, "ant_01.png", "eye"), find(session, "ant_02.png", "head")
    assert session.accept(eye) and session.reject(head)
    assert not session.accept(eye)  # no change, no undo entry
    c = session.counts()
    assert (c[ACCEPTED], c[REJECTED], c[UNREVIEWED], c["reviewed"], c["total"]) == (1, 1, 7, 2, 9)
    assert session.counts_text() == "2 of 9 reviewed: 1 accepted, 1 rejected"
    assert session.visible(ACCEPTED) == [eye]
    assert session.visible(REJECTED) == [head]
    assert labels(session.visible(UNREVIEWED)) == [
        x for x in WORST_FIRST if x not in (("ant_01.png", "eye"), ("ant_02.png", "head"))
    ]
    with pytest.raises(ValueError):
        session.visible("maybe")


def test_specimen_accept_leaves_explicit_decisions_alone(session):
    t = find(session, "ant_02.png", "scape").target
    session.reject(find(session, "ant_02.png", "head"))
    assert session.set_target_state(t, ACCEPTED) == 2
    assert {i.structure: i.state for i in session.items_of(t)} == \
        {"scape": ACCEPTED, "eye": ACCEPTED, "head": REJECTED}
    assert session.set_target_state(t, REJECTED, only_unreviewed=False) == 2
    assert all(i.state == REJECTED for i in session.items_of(t))


def test_every_action_undoes_including_corrections(session):
    eye = find(session, "ant_01.png", "eye")
    t = find(session, "ant_02.png", "eye").target
    seen = []
    session.listeners.append(lambda: seen.append(1))
    session.accept(eye)
    session.set_target_state(t, REJECTED)
    fixed = box(60, 80, 41, 49, 52, 66)
    session.correct(eye, fixed, [(55.0, 45.0, 1)])
    session.correct(eye, fixed & ~box(60, 80, 41, 44, 52, 66), [(55.0, 45.0, 1), (53.0, 42.0, 0)])
    assert eye.corrected and eye.points[-1] == (53.0, 42.0, 0)
    assert np.array_equal(eye.current_mask, fixed & ~box(60, 80, 41, 44, 52, 66))
    assert session.undo_text().startswith("fix ")
    assert session.undo() == [eye]
    assert eye.points == [(55.0, 45.0, 1)] and np.array_equal(eye.current_mask, fixed)
    session.undo()
    assert not eye.corrected and eye.current_mask is eye.mask
    assert len(session.undo()) == 3  # the whole specimen at once
    assert all(i.state == UNREVIEWED for i in session.items_of(t))
    session.undo()
    assert eye.state == UNREVIEWED and not session.can_undo and session.undo() == []
    assert len(seen) == 8


def test_correction_must_fit_the_specimen(session):
    eye = find(session, "ant_01.png", "eye")
    with pytest.raises(ReviewError, match="80 x 60"):
        session.correct(eye, np.ones((10, 10), bool), [(1, 1, 1)])
    assert not session.can_undo


def _anns(path):
    return json.loads(path.read_text())


def test_write_back_changes_the_store_exactly_as_reviewed(project, session):
    before = _anns(project)
    store = AnnotationStore.open(project)
    ant01_eye, ant01_head = find(session, "ant_01.png", "eye"), find(session, "ant_01.png", "head")
    ant02_scape, ant02_head = find(session, "ant_02.png", "scape"), find(session, "ant_02.png", "head")
    beetle_eye, beetle_scape = find(session, "beetle_03.png", "eye"), find(session, "beetle_03.png", "scape")
    ant01_scape = find(session, "ant_01.png", "scape")  # the store has a scape there already
    for item in (ant01_eye, ant01_head, ant02_scape, beetle_eye, ant01_scape):
        session.accept(item)
    session.reject(ant02_head)
    session.reject(beetle_scape)
    fixed = box(60, 80, 38, 56, 42, 76)
    session.correct(ant01_head, fixed, [(60.0, 45.0, 1)])

    summary = session.write_back(store)
    assert [(s, a is not None) for _, s, a in summary.written] == [
        ("eye", True),
        ("head", True),
        ("scape", True),
    ]
    assert summary.marked_absent == [(beetle_eye.target.image_id, "eye")]
    assert summary.skipped == [
        ("ant_01.png / scape", "already outlined in the store (kept; choose Replace to overwrite)")
    ]
    assert summary.not_accepted == 4
    assert not session.can_undo  # writing back cannot be undone here
    store.save()

    after = _anns(project)
    # Everything that was in the file is still there, unchanged.
    old_ids = {a["id"] for a in before["annotations"]}
    assert [a for a in after["annotations"] if a["id"] in old_ids] == before["annotations"]
    assert after["categories"][:5] == before["categories"] and len(after["categories"]) == 6  # + head
    assert after["info"] == before["info"]
    new = [a for a in after["annotations"] if a["id"] not in old_ids]
    cats = {c["id"]: c["name"] for c in after["categories"]}
    by_image = {i["id"]: i["file_name"] for i in after["images"]}
    assert sorted((by_image[a["image_id"]], cats[a["category_id"]]) for a in new) == \
        [("ant_01.png", "eye"), ("ant_01.png", "head"), ("ant_02.png", "scape")]
    for a in new:
        attrs = a["attributes"]
        assert attrs["source"] == "sam2pal" and attrs["reviewed"] == "accepted"
        item = {"eye": ant01_eye, "head": ant01_head, "scape": ant02_scape}[cats[a["category_id"]]]
        assert attrs["score"] == round(item.score, 4) and attrs["object_score"] == round(item.object_score, 4)
        assert attrs["predicted_iou"] == round(item.predicted_iou, 4)
        assert attrs["corrected"] is (item is ant01_head)
    # The masks in the file are the reviewed ones (the correction, not the prediction).
    reopened = AnnotationStore.open(project)
    ant01 = reopened.image_by_file("ant_01.png")
    masks = reopened.structure_masks(ant01.id)
    assert np.array_equal(masks["head"], fixed) and np.array_equal(masks["eye"], ant01_eye.mask)
    assert np.array_equal(masks["scape"], box(60, 80, 10, 30, 10, 40))  # the user's, not the prediction
    beetle = next(i for i in after["images"] if i["file_name"] == "beetle_03.png")
    assert beetle["structure_status"] == {"eye": "absent"}
    assert not any(i.get("structure_status") for i in after["images"] if i["file_name"] != "beetle_03.png")

    # A second write-back writes nothing again; written items are locked.
    again = session.write_back(reopened)
    assert not again.changed and again.already_written == 4 and not reopened.is_dirty
    with pytest.raises(ReviewError, match="already in the Descriptron store"):
        session.reject(ant01_eye)


def test_write_back_replace_keeps_the_users_notes_and_attributes(project, session):
    store = AnnotationStore.open(project)
    scape = find(session, "ant_01.png", "scape")
    session.accept(scape)
    summary = session.write_back(store, replace_existing=True)
    assert len(summary.written) == 1 and not summary.skipped
    store.save()
    anns = [a for a in _anns(project)["annotations"] if a.get("category_id") == 1]
    assert len(anns) == 1
    assert anns[0]["notes"] == "drawn by hand"
    assert anns[0]["attributes"]["colour"] == "brown" and anns[0]["attributes"]["source"] == "sam2pal"


def test_write_back_checks_everything_before_changing_the_store(project, tmp_path):
    results = make_results(project.parent)
    results[0].height = 99
    results[0].structures["eye"].mask = np.ones((99, 80), bool)
    results[1].path = str(tmp_path / "elsewhere.png")
    session = ReviewSession.from_results(results)
    store = AnnotationStore.open(project)
    stranger = find(session, "elsewhere.png", "eye")
    bad_size = find(session, "ant_01.png", "eye")
    session.accept(stranger)
    session.accept(bad_size)
    summary = session.write_back(store)
    assert not summary.changed and not store.is_dirty
    reasons = dict(summary.skipped)
    assert reasons["elsewhere.png / eye"] == "this specimen is not in the open Descriptron project"
    assert "80 x 99 px" in reasons["ant_01.png / eye"]
    assert stranger.state == ACCEPTED and not stranger.written  # can be retried


def test_write_back_into_a_store_of_other_photos_is_refused_by_the_use_case(session, project, tmp_path):
    """The checks belong to the use case, not only to the panel: ``write_back`` itself refuses."""
    from descriptron_sam2pal import UserError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.png").write_bytes((project.parent / "ant_01.png").read_bytes())
    store = AnnotationStore.open(elsewhere)
    head = find(session, "ant_02.png", "head")
    session.accept(head)
    with pytest.raises(UserError) as refused:
        session.write_back(store)
    text = str(refused.value)
    assert f"holds none of the 1 photo(s) with accepted outlines: its photos are in {elsewhere}" in text
    assert not store.is_dirty and not head.written and session.can_undo  # nothing happened


def test_session_save_and_restore(project, session, tmp_path):
    eye = find(session, "ant_01.png", "eye")
    session.accept(eye)
    session.reject(find(session, "ant_02.png", "head"))
    fixed = box(60, 80, 41, 49, 52, 66)
    session.correct(eye, fixed, [(55.5, 45.0, 1), (52.0, 41.0, 0)])
    store = AnnotationStore.open(project)
    session.write_back(store)
    path = session.save(tmp_path / "run.review.json")
    data = json.loads(path.read_text())
    assert data["format"] == "sam2pal-review" and data["version"] == 1
    restored = ReviewSession.load(path)
    assert labels(restored.visible()) == WORST_FIRST
    for a, b in zip(session.items, restored.items):
        assert (
            a.structure,
            a.state,
            a.present,
            a.score,
            a.object_score,
            a.predicted_iou,
            a.points,
            a.written,
        ) == (b.structure, b.state, b.present, b.score, b.object_score, b.predicted_iou, b.points, b.written)
        assert (a.target.image_id, a.target.path, a.target.height, a.target.width) == \
            (b.target.image_id, b.target.path, b.target.height, b.target.width)
        assert (a.mask is None and b.mask is None) or np.array_equal(a.mask, b.mask)
        assert (a.current_mask is None and b.current_mask is None) or np.array_equal(
            a.current_mask, b.current_mask
        )
    assert restored.counts() == session.counts()
    assert len({id(i.target) for i in restored.items}) == 3  # targets shared, not copied per item
    with pytest.raises(ReviewError, match="already in the Descriptron store"):
        restored.reject(restored.items[1])  # ant_01 eye was written


def test_damaged_or_foreign_session_files_say_so(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text(json.dumps({"images": []}))
    (tmp_path / "c.json").write_text(json.dumps({"format": "sam2pal-review", "version": 1, "targets": [],
                                                 "items": [{"target": 3}]}))
    for name, match in (
        ("a.json", "cannot read"),
        ("b.json", "not a SAM2-PAL review"),
        ("c.json", "damaged"),
    ):
        with pytest.raises(ReviewError, match=match):
            ReviewSession.load(tmp_path / name)


def test_from_predictions_coco_file_polygons_rle_and_absent(project, tmp_path):
    folder = project.parent
    ring = box(60, 80, 5, 40, 5, 40) & ~box(60, 80, 15, 30, 15, 30)  # a hole: RLE in the .rlejson
    images = [{"id": 7, "file_name": "ant_01.png", "height": 60, "width": 80,
               "predicted_absent": {"eye": {"object_score": 0.1, "predicted_iou": 0.3}}},
              {"id": 8, "file_name": "ant_02.png", "height": 50, "width": 70}]
    anns = [
        {
            "id": 1,
            "image_id": 7,
            "category_id": 1,
            "segmentation": mask_to_polygons(ring),
            "area": int(ring.sum()),
            "bbox": [5, 5, 35, 35],
            "iscrowd": 0,
            "score": 0.61,
            "object_score": 0.97,
            "predicted_iou": 0.9,
        },
        {
            "id": 2,
            "image_id": 8,
            "category_id": 2,
            "segmentation": mask_to_polygons(box(50, 70, 1, 9, 1, 9)),
            "area": 64,
            "bbox": [1, 1, 8, 8],
            "iscrowd": 0,
            "attributes": {"source": "sam2pal", "score": 0.2, "object_score": 0.8, "predicted_iou": 0.7},
        },
    ]
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "scape", "supercategory": ""},
                           {"id": 2, "name": "eye", "supercategory": ""}]}
    (folder / "predictions.json").write_text(json.dumps(coco))
    rle = copy.deepcopy(coco)
    rle["annotations"][0]["segmentation"] = mask_to_rle(ring)
    (folder / "predictions.rlejson").write_text(json.dumps(rle))

    s = ReviewSession.from_predictions_file(folder / "predictions.json")
    # ant_02 has no scape annotation: predicted absent there.
    assert labels(s.visible()) == [("ant_02.png", "scape"), ("ant_01.png", "eye"), ("ant_02.png", "eye"),
                                   ("ant_01.png", "scape")]
    scape = find(s, "ant_01.png", "scape")
    assert np.array_equal(scape.mask, ring) and (scape.score, scape.object_score) == (0.61, 0.97)
    assert find(s, "ant_02.png", "eye").score == 0.2
    absent = find(s, "ant_01.png", "eye")
    assert absent.absent and absent.object_score == 0.1
    assert scape.target.path == str(folder / "ant_01.png")

    # open_predictions continues a saved review.
    s.accept(scape)
    s.save(review_path_for(folder / "predictions.json"))
    assert review_path_for(folder / "predictions.json") == folder / "review.json"  # one name everywhere
    cont = ReviewSession.open_predictions(folder / "predictions.json")
    assert find(cont, "ant_01.png", "scape").state == ACCEPTED
    # The review file itself opens too (it is no COCO file).
    assert (
        find(ReviewSession.open_predictions(folder / "review.json"), "ant_01.png", "scape").state == ACCEPTED
    )

    # Written back by file name, though the predictions' integer ids are not the store's.
    store = AnnotationStore.open(project)
    summary = cont.write_back(store, replace_existing=True)
    assert [s_ for _, s_, _ in summary.written] == ["scape"]
    assert np.array_equal(store.structure_masks(store.image_by_file("ant_01.png").id)["scape"], ring)


def test_from_propagation_journal(project, tmp_path):
    results = make_results(project.parent)
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps({"v": 1, "run": "x", "key": str(i), "result": r.to_json()}) + "\n"
                            for i, r in enumerate(results)))
    s = ReviewSession.from_predictions_file(path)
    assert labels(s.visible()) == WORST_FIRST
    assert np.array_equal(find(s, "ant_02.png", "head").mask, results[1].structures["head"].mask)
    with pytest.raises(ReviewError, match="not found"):
        ReviewSession.from_predictions_file(tmp_path / "missing.json")


def test_masks_are_kept_compact_and_decoded_on_demand(project, tmp_path):
    from descriptron_sam2pal.jobs import review as review_model

    results = make_results(project.parent)
    s = ReviewSession.from_results(results, compact=True)
    head = find(s, "ant_02.png", "head")
    assert head._mask is None and head._rle is not None
    assert np.array_equal(head.mask, results[1].structures["head"].mask)
    assert labels(s.visible()) == WORST_FIRST and find(s, "beetle_03.png", "eye").absent
    path = s.save(tmp_path / "x.review.json")
    restored = ReviewSession.load(path)
    assert all(i._decoded is None for i in restored.items)  # nothing decoded by loading
    assert find(restored, "beetle_03.png", "eye").absent and not find(restored, "ant_01.png", "eye").absent
    old = review_model.DECODED_CACHE_SIZE
    review_model.DECODED_CACHE_SIZE = 2
    try:
        for item in restored.items:
            _ = item.mask
        assert sum(i._decoded is not None for i in restored.items) == 2  # bounded
        assert np.array_equal(find(restored, "ant_01.png", "scape").mask, results[0].structures["scape"].mask)
    finally:
        review_model.DECODED_CACHE_SIZE = old


def test_from_the_predictions_file_sam2pal_propagate_writes(project, tmp_path):
    from descriptron_sam2pal.engine.predictions import write_predictions
    from descriptron_sam2pal.engine.results import TargetResult

    results = make_results(project.parent)
    results.append(TargetResult(None, str(project.parent / "broken.png"), 0, 0, error="cannot read"))
    out = tmp_path / "out" / "pred.json"
    write_predictions(results, out)
    s = ReviewSession.from_predictions_file(out)
    assert labels(s.visible()) == WORST_FIRST  # beetle_03's eye: absent, no annotation in the file
    assert s.counts()["failed"] == 1 and s.counts()["specimens"] == 4
    head = find(s, "ant_02.png", "head")
    assert (head.score, head.object_score, head.predicted_iou) == (0.31, 0.7, 0.88)
    assert np.array_equal(head.mask, results[1].structures["head"].mask)
    assert head.target.path == str(
        project.parent / "ant_02.png"
    )  # found from the id (path without extension)
    store = AnnotationStore.open(project)
    s.accept(head)
    s.accept(find(s, "beetle_03.png", "eye"))
    summary = s.write_back(store)
    assert [n for _, n, _ in summary.written] == ["head"] and len(summary.marked_absent) == 1


def test_write_back_replaces_unreviewed_sam2pal_predictions_but_not_the_users(project):
    from descriptron_sam2pal.store.merge import merge_results

    results = make_results(project.parent)
    store = AnnotationStore.open(project)
    merge_results(store, results)  # sam2pal propagate --write-to: unreviewed predictions in the store
    s = ReviewSession.from_results(results)
    eye, scape = find(s, "ant_01.png", "eye"), find(s, "ant_01.png", "scape")
    s.accept(eye)
    s.accept(scape)
    fixed = box(60, 80, 42, 48, 52, 68)
    s.correct(eye, fixed, [(60, 45, 1)])
    summary = s.write_back(store)
    assert [n for _, n, _ in summary.written] == ["eye"]
    assert summary.skipped == [
        ("ant_01.png / scape", "already outlined in the store (kept; choose Replace to overwrite)")
    ]
    image = store.image_by_file("ant_01.png")
    eyes = [a for a in store.annotations_for(image.id) if a.category == "eye"]
    assert len(eyes) == 1 and eyes[0].raw["attributes"]["reviewed"] == "accepted"
    assert np.array_equal(eyes[0].mask(), fixed)


def test_resume_finds_the_run_review_by_any_of_its_files(project, tmp_path):
    """Training writes <run>/review.json; opening the run's journal or its review file, or the
    project, finds that review with every decision; an older <stem>.review.json still opens."""
    from descriptron_sam2pal.jobs.review_files import (find_review_for, is_review_file, latest_review,
                                                      legacy_review_path_for, review_summary)

    folder = project.parent  # the fixture's project is the annotation file
    run = folder / "sam2pal_runs" / "run-1"
    run.mkdir(parents=True)
    journal = run / "propagation.jsonl"
    with open(journal, "w") as f:
        for r in make_results(folder):
            f.write(json.dumps(r.to_json()) + "\n")
    s = ReviewSession.open_predictions(journal)
    assert all(i.state == UNREVIEWED for i in s.items)
    s.accept(s.order[0])
    s.reject(s.order[1])
    s.save(review_path_for(journal))
    assert is_review_file(run / "review.json") and not is_review_file(journal)
    assert find_review_for(journal) == run / "review.json"
    again = ReviewSession.open_predictions(journal)
    assert [i.state for i in again.order[:2]] == [ACCEPTED, REJECTED]
    assert latest_review(folder) == run / "review.json"
    assert latest_review(project) == run / "review.json"
    summary = review_summary(run / "review.json")
    assert (summary["total"], summary["reviewed"], summary["accepted"]) == (len(s.items), 2, 1)
    # A review of another run's predictions in the same folder is not taken for this one.
    assert find_review_for(tmp_path / "elsewhere" / "predictions.json") is None
    old = tmp_path / "old"
    old.mkdir()
    s.save(legacy_review_path_for(old / "predictions.json"))
    assert find_review_for(old / "predictions.json") == old / "predictions.review.json"
