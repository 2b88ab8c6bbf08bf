"""Every bad input gets a clear error or warning naming the file and the entry; nothing is dropped."""

import logging

import numpy as np
import pytest

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.masks import mask_to_polygons, mask_to_rle
from descriptron_sam2pal.store import AnnotationStore, StoreError
from tests.helpers.store_files import H, W, box_mask, read_json, write_image, write_json


def coco(annotations=(), categories=None, images=None):
    return {
        "images": images
        if images is not None
        else [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "annotations": list(annotations),
        "categories": categories
        if categories is not None
        else [{"id": 1, "name": "scape", "supercategory": ""}],
    }


def ann(id, seg, image_id=1, category_id=1):
    return {"id": id, "image_id": image_id, "category_id": category_id, "segmentation": seg,
            "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0}


GOOD = mask_to_polygons(box_mask(5, 10, 5, 10))


def only_warning(store, *needles):
    hits = [w for w in store.warnings if all(n in w for n in needles)]
    assert len(hits) == 1, store.warnings
    return hits[0]


def test_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,,}\n]}', encoding="utf-8")
    with pytest.raises(StoreError) as e:
        AnnotationStore.open(path)
    assert str(path) in str(e.value) and "not valid JSON" in str(e.value) and "line 2" in str(e.value)
    assert isinstance(e.value, UserError)


def test_invalid_rlejson_companion_names_the_rlejson(tmp_path):
    write_json(tmp_path / "s.json", coco())
    (tmp_path / "s.rlejson").write_text("{", encoding="utf-8")
    with pytest.raises(StoreError, match=r"s\.rlejson: not valid JSON"):
        AnnotationStore.open(tmp_path / "s.json")


def test_not_a_coco_file(tmp_path):
    write_json(tmp_path / "list.json", [1, 2])
    with pytest.raises(StoreError, match=r"list\.json: expected a COCO object"):
        AnnotationStore.open(tmp_path / "list.json")
    write_json(tmp_path / "settings.json", {"lr": 1e-4})
    with pytest.raises(StoreError, match=r"settings\.json: no \"images\" list"):
        AnnotationStore.open(tmp_path / "settings.json")
    write_json(tmp_path / "bad.json", {"images": {}, "annotations": []})
    with pytest.raises(StoreError, match=r"bad\.json: \"images\" must be a list"):
        AnnotationStore.open(tmp_path / "bad.json")


def test_empty_images_with_annotations_is_an_error(tmp_path):
    path = write_json(tmp_path / "s.json", coco([ann(1, GOOD)], images=[]))
    with pytest.raises(StoreError) as e:
        AnnotationStore.open(path)
    assert (
        str(path) in str(e.value) and '"images" is empty' in str(e.value) and "1 annotation" in str(e.value)
    )


def test_empty_images_without_annotations_is_a_warning(tmp_path):
    path = write_json(tmp_path / "s.json", coco([], images=[]))
    store = AnnotationStore.open(path)
    only_warning(store, str(path), '"images" is empty')
    assert store.images == []


def test_annotation_pointing_at_missing_image(tmp_path, caplog):
    write_image(tmp_path / "a.png")
    path = write_json(tmp_path / "s.json", coco([ann(11, GOOD), ann(12, GOOD, image_id=99)]))
    with caplog.at_level(logging.WARNING):
        store = AnnotationStore.open(path)
    msg = only_warning(store, str(path), "annotation id 12", "image id 99")
    assert msg in caplog.text                                         # also through logging
    assert [r.id for r in store.annotations_for(1)] == [11]
    # kept on write-back
    store.add_structure(1, "eye", box_mask(1, 3, 1, 3))
    store.save()
    assert [a["id"] for a in read_json(path)["annotations"]] == [11, 12, 13]


def test_duplicate_category_ids_with_different_names_is_an_error(tmp_path):
    path = write_json(tmp_path / "s.json", coco(categories=[
        {"id": 1, "name": "scape", "supercategory": ""}, {"id": 1, "name": "eye", "supercategory": ""}]))
    with pytest.raises(StoreError) as e:
        AnnotationStore.open(path)
    msg = str(e.value)
    assert str(path) in msg and "category id 1" in msg and '"scape"' in msg and '"eye"' in msg


def test_duplicate_category_entries_and_names_are_warnings(tmp_path):
    write_image(tmp_path / "a.png")
    path = write_json(tmp_path / "s.json", coco(
        [ann(1, GOOD, category_id=1), ann(2, mask_to_polygons(box_mask(20, 25, 20, 25)), category_id=5)],
        categories=[{"id": 1, "name": "scape", "supercategory": ""},
                    {"id": 1, "name": "scape", "supercategory": ""},
                    {"id": 5, "name": "scape", "supercategory": ""}]))
    store = AnnotationStore.open(path)
    only_warning(store, str(path), '"scape" (id 1) is listed twice')
    only_warning(store, str(path), '"scape" has two ids (1 and 5)')
    # both ids are the same structure: nothing mislabelled, nothing lost
    assert np.array_equal(
        store.structure_masks(1)["scape"], box_mask(5, 10, 5, 10) | box_mask(20, 25, 20, 25)
    )
    assert store.categories["scape"] == 1


def test_rle_size_not_matching_the_image(tmp_path):
    write_image(tmp_path / "a.png")
    wrong = mask_to_rle(np.ones((W, H), bool))
    path = write_json(tmp_path / "s.json", coco([ann(21, wrong), ann(22, GOOD)]))
    store = AnnotationStore.open(path)
    msg = only_warning(store, str(path), "annotation id 21", f"RLE size [{W}, {H}]", f"[{H}, {W}]")
    assert "not used" in msg
    assert np.array_equal(store.structure_masks(1)["scape"], box_mask(5, 10, 5, 10))
    with pytest.raises(StoreError, match="annotation id 21"):
        [r for r in store.annotations_for(1) if r.id == 21][0].mask()
    store.set_structure_status(1, "eye", "absent")
    store.save()
    assert read_json(path)["annotations"][0]["segmentation"] == wrong     # kept untouched


def test_rle_counts_not_adding_up(tmp_path):
    write_image(tmp_path / "a.png")
    path = write_json(tmp_path / "s.json", coco([ann(31, {"size": [H, W], "counts": [5, 10]})]))
    store = AnnotationStore.open(path)
    only_warning(store, str(path), "annotation id 31", "sum to 15")


def test_corrupt_compressed_rle_is_reported_when_decoded(tmp_path):
    write_image(tmp_path / "a.png")
    path = write_json(tmp_path / "s.json", coco([ann(32, {"size": [H, W], "counts": "\x01\x02"}),
                                                 ann(33, GOOD)]))
    store = AnnotationStore.open(path)
    masks = store.structure_masks(1)
    assert np.array_equal(masks["scape"], box_mask(5, 10, 5, 10))
    only_warning(store, str(path), "annotation id 32", "cannot be decoded")


def test_polygons_out_of_bounds(tmp_path):
    write_image(tmp_path / "a.png")
    path = write_json(
        tmp_path / "s.json", coco([ann(41, [[50.0, 30.0, 80.0, 30.0, 80.0, 45.0, 50.0, 45.0]])])
    )
    store = AnnotationStore.open(path)
    only_warning(store, str(path), "annotation id 41", "outside the image", "clipped")
    m = store.structure_masks(1)["scape"]
    assert m.shape == (H, W) and m[30:, 50:].all() and m.sum() == (H - 30) * (W - 50)


def test_malformed_polygon(tmp_path):
    write_image(tmp_path / "a.png")
    path = write_json(tmp_path / "s.json", coco([ann(42, [[1.0, 2.0, 3.0]]), ann(43, "oops")]))
    store = AnnotationStore.open(path)
    only_warning(store, str(path), "annotation id 42", "odd number of coordinates")
    only_warning(store, str(path), "annotation id 43", "neither polygons nor RLE")
    assert store.structure_masks(1) == {}


def test_missing_image_file(tmp_path):
    path = write_json(tmp_path / "s.json", coco([ann(1, GOOD)]))
    store = AnnotationStore.open(path)
    msg = only_warning(store, str(path), "image id 1", "a.png", "image file not found")
    assert "put the image next to the annotation file" in msg
    assert store.images[0].path is None
    assert np.array_equal(store.structure_masks(1)["scape"], box_mask(5, 10, 5, 10))   # still readable


def test_missing_height_width_read_from_the_image(tmp_path):
    write_image(tmp_path / "a.png")
    path = write_json(tmp_path / "s.json", coco([ann(1, GOOD)], images=[{"id": 1, "file_name": "a.png"}]))
    store = AnnotationStore.open(path)
    only_warning(store, str(path), "image id 1", "no valid height/width", f"{H} x {W}")
    assert store.structure_masks(1)["scape"].shape == (H, W)


def test_unknown_category_and_missing_ids(tmp_path):
    write_image(tmp_path / "a.png")
    no_id = ann(0, GOOD)
    del no_id["id"]
    path = write_json(tmp_path / "s.json", coco([ann(51, GOOD, category_id=8), no_id, ann(51, GOOD)]))
    store = AnnotationStore.open(path)
    only_warning(store, str(path), "annotation id 51", "category_id 8")
    only_warning(store, str(path), "annotation #1 (no id)")
    only_warning(store, str(path), "annotation id 51 is used more than once")
    assert store.add_structure(1, "eye", box_mask(1, 3, 1, 3)) == 52


def test_rlejson_only_annotation_is_kept(tmp_path, session_folder):
    folder, json_path, data, rle = session_folder
    extra = ann(
        1714000000099, mask_to_rle(box_mask(1, 4, 1, 4)), image_id=data["images"][0]["id"], category_id=2
    )
    rle["annotations"].append(extra)
    write_json(json_path.with_suffix(".rlejson"), rle)
    store = AnnotationStore.open(folder)
    only_warning(store, "annotation id 1714000000099", "not in", json_path.name)
    assert store.is_dirty
    new_json, _ = store.save()
    assert read_json(new_json)["annotations"][-1]["id"] == 1714000000099


def test_folder_problems(tmp_path, session_folder):
    folder, json_path, *_ = session_folder
    write_json(folder / "other_session.json", coco())
    store = AnnotationStore.open(folder)
    only_warning(store, "other_session.json", "not read")

    two = tmp_path / "two"
    two.mkdir()
    write_json(two / "x.json", coco())
    write_json(two / "y.json", coco())
    with pytest.raises(StoreError, match="several COCO annotation files"):
        AnnotationStore.open(two)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "session.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(StoreError, match=r"session\.json: not valid JSON"):
        AnnotationStore.open(broken)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoreError, match="no images and no Descriptron annotation files"):
        AnnotationStore.open(empty)

    with pytest.raises(StoreError, match="file not found"):
        AnnotationStore.open(tmp_path / "nope.json")


def test_unknown_image_id_is_a_clear_error(session_folder):
    folder, *_ = session_folder
    store = AnnotationStore.open(folder)
    with pytest.raises(StoreError, match="no image with id 'nope'"):
        store.structure_masks("nope")


def test_exif_rotated_image_is_read_in_the_raw_frame(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (W, H))                         # stored W x H, EXIF says rotate 90
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "a.jpg", exif=exif)
    path = write_json(tmp_path / "s.json", coco([ann(1, GOOD)], images=[
        {"id": 1, "file_name": "a.jpg", "height": H, "width": W}]))
    store = AnnotationStore.open(path)
    assert store.structure_masks(1)["scape"].shape == (H, W)
    assert store.warnings == [] and store.check_image_sizes() == []


def test_swapped_height_width_is_reported_and_not_used(tmp_path):
    from PIL import Image

    Image.new("RGB", (W, H)).save(tmp_path / "a.jpg")      # W wide, H high
    path = write_json(tmp_path / "s.json", coco([ann(1, GOOD)], images=[
        {"id": 1, "file_name": "a.jpg", "height": W, "width": H}]))
    store = AnnotationStore.open(path)
    assert store.structure_masks(1) == {}
    only_warning(store, str(path), "image id 1", "swapped", f'"height": {H}, "width": {W}')
    assert store.check_image_sizes() == []                 # reported once


def test_same_integer_id_in_several_per_image_files(tmp_path):
    for name in ("a", "b"):
        write_image(tmp_path / f"{name}.png")
        write_json(tmp_path / f"{name}_final_100.json", coco(
            [ann(1, GOOD)], images=[{"id": 1, "file_name": f"{name}.png", "height": H, "width": W}]))
    store = AnnotationStore.open(tmp_path)
    only_warning(
        store, "image id 1 occurs in several annotation files", "a_final_100.json", "b_final_100.json"
    )
    with pytest.raises(StoreError, match="image id 1 is used by several annotation files"):
        store.structure_masks(1)
    b = store.image_by_file("b.png")
    assert store.add_structure(b, "scape", box_mask(20, 25, 20, 25)) == 2      # > every id in the store
    [new_json, _] = store.save()
    assert new_json.name == f"b_final_{new_json.stem.rsplit('_', 1)[1]}.json"
    assert [a["id"] for a in read_json(new_json)["annotations"]] == [1, 2]


def test_malformed_ids_do_not_crash(tmp_path):
    write_image(tmp_path / "a.png")
    path = write_json(tmp_path / "s.json", coco(
        [ann([1], GOOD), ann(2, GOOD, image_id=[1]), ann(3, GOOD, category_id={"x": 1})],
        categories=[{"id": 1, "name": "scape", "supercategory": ""}, {"id": [2], "name": "eye"}]))
    store = AnnotationStore.open(path)
    only_warning(store, str(path), "annotation id 2", "image id [1]")
    only_warning(store, str(path), "annotation id 3", "category_id {'x': 1}")
    only_warning(store, str(path), 'category "eye" has id [2], not an integer')
    assert np.array_equal(store.structure_masks(1)["scape"], box_mask(5, 10, 5, 10))
    assert store.add_structure(1, "eye", box_mask(1, 3, 1, 3)) == 4
    store.save()
    out = read_json(path)
    assert [a["id"] for a in out["annotations"]] == [[1], 2, 3, 4]
    assert out["annotations"][-1]["category_id"] == 2 and out["categories"][-1]["id"] == 2
