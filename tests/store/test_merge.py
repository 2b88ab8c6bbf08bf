"""How predictions meet the store (store/merge.py): one rule for --write-to and Write back.
A person's outline, reviewed or drawn, is never replaced; structure_status is obeyed."""

from __future__ import annotations

import numpy as np
from PIL import Image

from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.store import AnnotationStore
from descriptron_sam2pal.store.merge import merge_results, why_not_writable
from descriptron_sam2pal.store.provenance import fingerprint


def box(y0, y1, x0, x1, shape=(40, 50)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def result(path, **masks):
    return TargetResult(None, str(path), 40, 50, {n: StructureResult(n, True, m, 0.8, 0.9, 0.7)
                                                  for n, m in masks.items()})


def make_store(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(path)
    store = AnnotationStore.create(tmp_path / "session.json", images=[path])
    return store, store.images[0], path


def masks_of(store, record, name):
    return [a for a in store.annotations_for(record.id) if a.category == name]


def test_a_reviewed_prediction_is_never_replaced_by_a_later_run(tmp_path):
    store, rec, path = make_store(tmp_path)
    reviewed = box(5, 20, 5, 20)
    store.add_structure(rec.id, "eye", reviewed, attributes={"source": "sam2pal", "reviewed": "accepted"})
    summary = merge_results(store, [result(path, eye=box(10, 30, 10, 40))])
    assert summary.added == 0 and "already reviewed" in summary.kept[0]
    [eye] = masks_of(store, rec, "eye")
    assert np.array_equal(eye.mask(), reviewed) and eye.raw["attributes"]["reviewed"] == "accepted"


def test_an_unreviewed_prediction_is_replaced_and_passes_on_nothing(tmp_path):
    store, rec, path = make_store(tmp_path)
    ann = store.add_structure(
        rec.id, "eye", box(5, 20, 5, 20), attributes={"source": "sam2pal", "score": 0.1}
    )
    [old] = masks_of(store, rec, "eye")
    old.raw["notes"] = "looked odd"  # a note on an unreviewed prediction
    old.raw["attributes"]["corrected"] = True
    summary = merge_results(store, [result(path, eye=box(10, 30, 10, 40))])
    assert summary.added == 1 and summary.replaced == 1
    [new] = masks_of(store, rec, "eye")
    assert new.id != ann and "notes" not in new.raw
    assert new.raw["attributes"] == {
        "source": "sam2pal",
        "score": 0.8,
        "object_score": 0.9,
        "predicted_iou": 0.7,
        "palindrome_confidence": None,
        "orientation": "rot0",
        "sam2pal_fingerprint": fingerprint(box(10, 30, 10, 40), "eye"),
    }


def test_structure_status_absent_or_unknown_is_obeyed(tmp_path):
    store, rec, path = make_store(tmp_path)
    store.set_structure_status(rec.id, "eye", "absent")
    store.set_structure_status(rec.id, "leg", "unknown")
    summary = merge_results(store, [result(path, eye=box(5, 20, 5, 20), leg=box(1, 9, 1, 9),
                                           head=box(20, 39, 0, 49))])
    assert summary.added == 1 and [a.category for a in store.annotations_for(rec.id)] == ["head"]
    assert sorted(k.split(": ")[1] for k in summary.kept) == ["eye", "leg"]
    assert 'marks it "absent"' in why_not_writable(store, rec, "eye", (40, 50))


def test_the_users_outline_is_kept_unless_replacing_is_asked_for(tmp_path):
    store, rec, path = make_store(tmp_path)
    mine = box(0, 10, 0, 10)
    store.add_structure(rec.id, "head", mine)
    assert "already outlined" in why_not_writable(store, rec, "head", (40, 50))
    assert why_not_writable(store, rec, "head", (40, 50), replace_user=True) == ""
    assert "40 x 30 px" in why_not_writable(store, rec, "head", (30, 40))
    merge_results(store, [result(path, head=box(10, 30, 10, 40))])
    [head] = masks_of(store, rec, "head")
    assert np.array_equal(head.mask(), mine)


def test_the_fingerprint_tells_a_polygon_round_trip_from_a_person_s_edit():
    from descriptron_sam2pal.imaging.masks import mask_to_polygons, polygons_to_mask
    from descriptron_sam2pal.store.provenance import matches

    mask = box(10, 60, 10, 70, shape=(80, 90))
    mask[30:40, 30:40] = False  # a hole: the .json cannot hold it
    recorded = fingerprint(mask, "eye")
    assert recorded.startswith("v2:") and matches(recorded, mask, "eye")
    as_json = polygons_to_mask(mask_to_polygons(mask), *mask.shape)
    assert not np.array_equal(as_json, mask) and matches(recorded, as_json, "eye")
    nudged = as_json.copy()
    nudged[60, 10:13] = True  # a few pixels moved along the outline
    assert matches(recorded, nudged, "eye")
    assert not matches(recorded, mask, "head"), "another category"
    cut = mask.copy()
    cut[10:25] = False  # the person erased the top
    assert not matches(recorded, cut, "eye")
    moved = np.roll(mask, 5, axis=1)
    assert not matches(recorded, moved, "eye")
    old = "v1:" + recorded.split(":")[1]  # earlier versions: bit for bit only
    assert matches(old, mask, "eye") and not matches(old, as_json, "eye")
