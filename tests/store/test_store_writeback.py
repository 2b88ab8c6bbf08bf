"""Write-back is lossless: the file after a change equals the original plus exactly that change."""

import copy
import json
import time

import numpy as np
import pytest

from descriptron_sam2pal.imaging.masks import mask_area, mask_bbox, mask_to_polygons, mask_to_rle
from descriptron_sam2pal.store import AnnotationStore, StoreError
from descriptron_sam2pal.store.store import PER_IMAGE, SESSION

from descriptron_sam2pal.store.lock import LOCK_NAME
from tests.helpers.store_files import (
    read_saved,
    H,
    W,
    box_mask,
    read_json,
    ring_mask,
    write_image,
    write_json,
)


PROVENANCE = {"sam2pal": {"model": "abc123", "score": 0.93}}


def test_descriptron_file_is_read_as_descriptron_means_it(session_folder):
    folder, json_path, data, _ = session_folder
    store = AnnotationStore.open(folder)
    assert store.mode == PER_IMAGE and store.warnings == []
    [img] = store.images
    assert img.id == data["images"][0]["id"] and isinstance(img.id, str)
    assert img.path == folder / "Ant 01.jpg" and img.source == json_path
    assert img.structure_status == {"eye": "absent", "mandible": "unknown"}
    assert store.image_by_file("ANT 01.jpeg") is img and store.image_by_file("ant_01") is img
    assert store.categories == {"head": 1, "scape": 2, "pin": 3, "line_keypoints": 4, "Trash": 5}
    assert store.structure_names() == ["head", "scape", "pin"]
    assert store.category_entry("pin")["occluder"] is True
    kinds = {r.id: r.kind for r in store.annotations_for(img.id)}
    assert kinds == {1714000000001: "mask", 1714000000002: "mask", 1714000000003: "keypoints",
                     1714000000004: "line", 1714000000005: "mask", 1714000000006: "trait",
                     1714000000007: "mask"}
    masks = store.structure_masks(img.id)
    assert set(masks) == {"head", "scape", "pin"}                 # no Trash, keypoints, lines, traits
    assert np.array_equal(masks["scape"], ring_mask())              # the .rlejson keeps the hole
    assert np.array_equal(masks["head"], box_mask(2, 20, 2, 25))


def test_per_image_write_back_changes_only_the_replaced_structure(session_folder):
    folder, json_path, data, rle = session_folder
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != LOCK_NAME}
    store = AnnotationStore.open(folder)
    img = store.images[0]
    new_scape = ring_mask()
    new_scape[30:36, 5:12] = True                                   # grown, still with a hole
    new_id = store.add_structure(img.id, "scape", new_scape, attributes=PROVENANCE, replace=True)
    assert new_id == 1714000000008                                  # max existing + 1
    assert store.is_dirty
    planned = store.files
    written = store.save()
    assert written == planned and not store.is_dirty

    # the user's files are untouched; a new, newer _final_ pair holds the change
    for name, content in before.items():
        assert (folder / name).read_bytes() == content
    new_json, new_rle = written
    assert new_json.parent == folder and new_json.name.startswith("Ant 01_final_")
    assert int(new_json.stem.rsplit("_", 1)[1]) > 1714000000
    assert new_rle == new_json.with_suffix(".rlejson")

    expected_ann = {
        "id": new_id, "image_id": img.id, "category_id": 2,
        "segmentation": mask_to_polygons(new_scape), "area": mask_area(new_scape),
        "bbox": mask_bbox(new_scape), "iscrowd": 0, "instance_id": 1,
        "attributes": {"length_class": "long", **PROVENANCE},     # the user's attributes carried over
    }
    expected = copy.deepcopy(data)
    expected["annotations"][1] = expected_ann
    assert read_saved(new_json) == expected
    expected_rle = copy.deepcopy(rle)
    expected_rle["annotations"][1] = {**expected_ann, "segmentation": mask_to_rle(new_scape)}
    assert read_saved(new_rle) == expected_rle
    # key order of untouched entries is preserved too
    assert list(read_json(new_json)["annotations"][0]) == list(data["annotations"][0])
    assert list(read_saved(new_json)) == list(data)

    again = AnnotationStore.open(folder)                            # newest wins
    assert again.source_files == [new_json]
    assert np.array_equal(again.structure_masks(img.id)["scape"], new_scape)


def test_new_structure_gets_a_new_category_and_nothing_else_changes(session_folder):
    folder, json_path, data, rle = session_folder
    store = AnnotationStore.open(folder)
    img = store.images[0]
    eye = box_mask(10, 14, 30, 36)
    ann_id = store.add_structure(img, "eye", eye)
    store.set_structure_status(img, "eye", None)                    # it is there after all
    new_json, _ = store.save()
    expected = copy.deepcopy(data)
    expected["categories"].append({"id": 6, "name": "eye", "supercategory": ""})
    expected["annotations"].append({
        "id": ann_id, "image_id": img.id, "category_id": 6, "segmentation": mask_to_polygons(eye),
        "area": 24, "bbox": [30.0, 10.0, 6.0, 4.0], "iscrowd": 0, "instance_id": 1})
    del expected["images"][0]["structure_status"]["eye"]
    assert read_saved(new_json) == expected


def test_replace_removes_only_that_structures_masks_on_that_image(session_folder):
    folder, _, data, _ = session_folder
    store = AnnotationStore.open(folder)
    img = store.images[0]
    store.add_structure(img, "head", box_mask(0, 10, 0, 10), replace=True)
    ids = [r.id for r in store.annotations_for(img)]
    # the head mask (…001) is gone; the head trait-only annotation (…006), keypoints, line,
    # other structures and Trash are kept
    assert 1714000000001 not in ids
    assert {1714000000002, 1714000000003, 1714000000004, 1714000000005, 1714000000006,
            1714000000007} <= set(ids)
    new = [r for r in store.annotations_for(img) if r.id == 1714000000008][0]
    assert new.raw["notes"] == "left side ☺"
    assert new.raw["attributes"] == {"colour": "brown", "sculpture": "rugose"}


def test_without_replace_nothing_is_removed(session_folder):
    folder, _, data, _ = session_folder
    store = AnnotationStore.open(folder)
    img = store.images[0]
    store.add_structure(img, "scape", box_mask(30, 35, 30, 35))
    new_json, _ = store.save()
    anns = read_json(new_json)["annotations"]
    assert anns[:-1] == data["annotations"] and anns[-1]["instance_id"] == 2


def test_session_file_saved_in_place_with_backups(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    store = AnnotationStore.create(tmp_path / "session.json")
    assert store.mode == SESSION and [i.file_name for i in store.images] == ["a.png", "b.png"]
    store.add_structure(store.images[0], "scape", box_mask(5, 10, 5, 10))
    store.save()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK_NAME) == [
        "a.png", "b.png", "session.json", "session.rlejson"]
    first_json = (tmp_path / "session.json").read_bytes()
    first_rle = (tmp_path / "session.rlejson").read_bytes()

    store = AnnotationStore.open(tmp_path)                           # the folder's only COCO file
    assert store.mode == SESSION and store.path == tmp_path / "session.json"
    store.add_structure(store.image_by_file("b.png"), "scape", box_mask(1, 4, 1, 4))
    assert store.files == [tmp_path / "session.json", tmp_path / "session.rlejson"]
    store.save()
    store.set_structure_status(store.images[0], "eye", "absent")
    store.save()                                                     # same second: distinct backups
    backups = sorted(p for p in tmp_path.iterdir() if ".bak-" in p.name)
    assert len(backups) == 4
    assert [p.name.split(".bak-")[0] for p in backups].count("session.json") == 2
    json_backups = sorted(
        (p for p in backups if p.name.startswith("session.json")), key=lambda p: len(p.name)
    )
    assert json_backups[0].read_bytes() == first_json
    assert any(p.read_bytes() == first_rle for p in backups)
    final = read_json(tmp_path / "session.json")
    assert len(final["annotations"]) == 2 and final["images"][0]["structure_status"] == {"eye": "absent"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME]


def test_per_image_saves_are_strictly_newer(session_folder):
    folder, json_path, _, _ = session_folder
    future = int(time.time()) + 1000
    later = json_path.with_name(f"Ant 01_final_{future}.json")
    later.write_bytes(json_path.read_bytes())
    store = AnnotationStore.open(folder)
    assert store.source_files == [later]
    store.set_structure_status(store.images[0], "mandible", "absent")
    first, _ = store.save()
    assert first.name == f"Ant 01_final_{future + 1}.json"
    store.set_structure_status(store.images[0], "mandible", "unknown")
    second, _ = store.save()
    assert second.name == f"Ant 01_final_{future + 2}.json"


def test_unannotated_images_in_a_per_image_folder(session_folder):
    folder, _, data, _ = session_folder
    write_image(folder / "Ant 02.JPG")
    write_image(folder / "Ant 01_scape_1_mask.png")                 # Descriptron mask PNG: not an image
    store = AnnotationStore.open(folder)
    assert [i.file_name for i in store.images] == ["Ant 01.jpg", "Ant 02.JPG"]
    new = store.image_by_file("ant 02.jpg")
    assert new.id == str(folder / "Ant 02") and new.source is None
    assert store.structure_masks(new) == {}
    ann_id = store.add_structure(new, "scape", box_mask(3, 9, 3, 9))
    assert ann_id == 1714000000008
    assert store.add_structure(new, "antenna", box_mask(20, 25, 3, 9)) == 1714000000009
    [new_json, new_rle] = store.save()                               # only the changed image
    assert new_json.name.startswith("Ant 02_final_")
    doc = read_json(new_json)
    assert doc["images"] == [
        {"id": str(folder / "Ant 02"), "file_name": "Ant 02.JPG", "height": H, "width": W}
    ]
    # category ids stay stable across files; Trash is not copied into new files
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [
        (1, "head"), (2, "scape"), (3, "pin"), (4, "line_keypoints"), (6, "antenna")]
    assert doc["categories"][2]["occluder"] is True
    assert [a["category_id"] for a in doc["annotations"]] == [2, 6]
    again = AnnotationStore.open(folder)
    assert set(again.structure_masks(again.image_by_file("Ant 02.JPG"))) == {"scape", "antenna"}


def test_categories_are_matched_by_name_and_new_ids_never_clash(tmp_path):
    write_image(tmp_path / "a.png")
    write_json(tmp_path / "s.json", {
        "images": [{"id": 3, "file_name": "a.png", "height": H, "width": W}],
        "annotations": [{"id": 40, "image_id": 3, "category_id": 7,
                         "segmentation": mask_to_polygons(box_mask(1, 5, 1, 5)), "area": 16,
                         "bbox": [1, 1, 4, 4], "iscrowd": 0}],
        "categories": [{"id": 7, "name": "scape", "supercategory": "ant"},
                       {"id": 9, "name": "Trash", "supercategory": ""}]})
    store = AnnotationStore.open(tmp_path / "s.json")
    assert store.add_structure(3, "scape", box_mask(10, 15, 10, 15)) == 41
    assert store.add_structure(3, "eye", box_mask(20, 25, 10, 15)) == 42
    store.save()
    out = read_json(tmp_path / "s.json")
    assert [(a["id"], a["category_id"]) for a in out["annotations"]] == [(40, 7), (41, 7), (42, 10)]
    assert out["categories"][-1] == {"id": 10, "name": "eye", "supercategory": ""}
    assert {"id": 9, "name": "Trash", "supercategory": ""} in out["categories"]   # kept, not ours to drop
    with pytest.raises(StoreError, match="Trash"):
        store.add_structure(3, "Trash", box_mask(1, 2, 1, 2))


def test_keypoint_category_is_not_a_structure_name(session_folder):
    folder, *_ = session_folder
    store = AnnotationStore.open(folder)
    with pytest.raises(StoreError, match="keypoint"):
        store.add_structure(store.images[0], "line_keypoints", box_mask(1, 5, 1, 5))


def test_bad_masks_are_refused_before_anything_changes(session_folder):
    folder, *_ = session_folder
    store = AnnotationStore.open(folder)
    img = store.images[0]
    with pytest.raises(ValueError, match="shape"):
        store.add_structure(img, "eye", np.ones((H + 1, W), bool))
    with pytest.raises(ValueError, match="empty"):
        store.add_structure(img, "eye", np.zeros((H, W), bool))
    assert not store.is_dirty and "eye" not in store.categories


def test_create_refuses_to_hide_existing_annotations(session_folder, tmp_path):
    folder, json_path, *_ = session_folder
    with pytest.raises(StoreError, match="already has Descriptron annotation files"):
        AnnotationStore.create(folder)
    with pytest.raises(StoreError, match="already exists"):
        AnnotationStore.create(json_path)


def test_integer_and_string_ids_in_one_store(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    write_json(tmp_path / "s.json", {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W},
                   {"id": "1", "file_name": "b.png", "height": H, "width": W}],
        "annotations": [], "categories": []})
    store = AnnotationStore.open(tmp_path / "s.json")
    assert store.image(1).file_name == "a.png" and store.image("1").file_name == "b.png"
    store.add_structure("1", "scape", box_mask(1, 5, 1, 5))
    store.save()
    out = read_json(tmp_path / "s.json")
    assert out["annotations"][0]["image_id"] == "1"
    assert json.dumps(out["images"]) == json.dumps(
        [{"id": 1, "file_name": "a.png", "height": H, "width": W},
         {"id": "1", "file_name": "b.png", "height": H, "width": W}])


def test_add_image_to_a_session_file(tmp_path):
    write_image(tmp_path / "a.png")
    write_json(tmp_path / "s.json", {
        "images": [{"id": 5, "file_name": "a.png", "height": H, "width": W}],
        "annotations": [], "categories": []})
    store = AnnotationStore.open(tmp_path / "s.json")
    rec = store.add_image(write_image(tmp_path / "c d.png", 20, 30))
    assert rec.id == 6 and (rec.height, rec.width) == (20, 30)       # integer ids continue
    assert store.add_image(tmp_path / "c d.png") is rec
    store.save()
    assert read_json(tmp_path / "s.json")["images"][-1] == {"id": 6, "file_name": "c d.png",
                                                            "height": 20, "width": 30}


def test_remove_annotation_takes_out_only_that_one(tmp_path):
    from descriptron_sam2pal.store import AnnotationStore, StoreError

    from tests.helpers.store_files import box_mask, write_image

    write_image(tmp_path / "a.png")
    store = AnnotationStore.create(tmp_path / "s.json")
    img = store.images[0]
    keep = store.add_structure(img.id, "head", box_mask(2, 10, 2, 10))
    gone = store.add_structure(img.id, "eye", box_mask(20, 30, 20, 30))
    store.remove_annotation(img.id, gone)
    assert [a.id for a in store.annotations_for(img.id)] == [keep]
    with pytest.raises(StoreError, match="nothing was removed"):
        store.remove_annotation(img.id, gone)
