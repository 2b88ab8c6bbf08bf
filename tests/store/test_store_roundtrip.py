"""mask -> store -> mask is exact, for every segmentation form and both id types."""

import json

import numpy as np
import pytest
from pycocotools import mask as cocomask

from descriptron_sam2pal.imaging.masks import mask_to_polygons, mask_to_rle
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.store_files import H, W, box_mask, read_json, ring_mask, write_image, write_json


def _masks():
    hole_and_parts = ring_mask()
    small_hole = box_mask(5, 20, 5, 20)
    small_hole[10:13, 10:13] = False              # 9 px hole: below Descriptron's 64 px
    thin = np.zeros((H, W), bool)
    thin[3, 3] = True                             # a single pixel
    thin[10:12, 40] = True                        # a two-pixel line
    thin[20:35, 20:50] = True
    border = box_mask(0, H, 0, 10)                # touches the border
    nested = box_mask(2, 38, 2, 38)
    nested[6:34, 6:34] = False
    nested[12:28, 12:28] = True                   # island inside the hole
    return {"hole_and_parts": hole_and_parts, "small_hole": small_hole, "thin": thin,
            "border": border, "nested": nested}


@pytest.mark.parametrize("name", list(_masks()))
@pytest.mark.parametrize("use_int_ids", [False, True])
def test_mask_store_mask_is_exact(tmp_path, name, use_int_ids):
    mask = _masks()[name]
    write_image(tmp_path / "a.png")
    if use_int_ids:
        write_json(tmp_path / "session.json", {
            "images": [{"id": 7, "file_name": "a.png", "height": H, "width": W}],
            "annotations": [], "categories": []})
        store = AnnotationStore.open(tmp_path / "session.json")
        image_id = 7
    else:
        store = AnnotationStore.create(tmp_path / "session.json")
        image_id = store.images[0].id
        assert image_id == str(tmp_path / "a")
    store.add_structure(image_id, "scape", mask)
    store.save()

    again = AnnotationStore.open(tmp_path / "session.json")
    got = again.structure_masks(image_id)["scape"]
    assert got.dtype == bool and np.array_equal(got, mask)
    # the .json holds one polygon per component; the .rlejson has RLE only where needed
    ann = read_json(tmp_path / "session.json")["annotations"][0]
    assert isinstance(ann["segmentation"], list)
    assert len(ann["segmentation"]) == len(mask_to_polygons(mask))
    rle_ann = read_json(tmp_path / "session.rlejson")["annotations"][0]
    if name in ("border", "thin"):      # polygons hold these exactly
        assert rle_ann == ann
    else:
        assert rle_ann["segmentation"] == mask_to_rle(mask)
        assert {k: v for k, v in rle_ann.items() if k != "segmentation"} == \
            {k: v for k, v in ann.items() if k != "segmentation"}


def test_json_alone_unions_the_rings_rlejson_keeps_the_hole(tmp_path):
    mask = ring_mask()
    store = AnnotationStore.create(tmp_path / "s.json", [write_image(tmp_path / "a.png")])
    store.add_structure(store.images[0], "scape", mask)
    store.save()
    (tmp_path / "s.rlejson").unlink()
    filled = AnnotationStore.open(tmp_path / "s.json").structure_masks(store.images[0].id)["scape"]
    assert filled.sum() == mask.sum() + 100          # polygons cannot hold the hole


def test_all_segmentation_forms_decode_to_the_same_mask(tmp_path):
    mask = box_mask(5, 25, 10, 40) | box_mask(30, 38, 2, 8)   # two parts, no hole
    write_image(tmp_path / "a.png")
    compressed = cocomask.encode(np.asfortranarray(mask.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode("ascii")
    forms = {"polygons": mask_to_polygons(mask), "rle": mask_to_rle(mask), "compressed": compressed}
    write_json(tmp_path / "s.json", {
        "images": [{"id": "a", "file_name": "a.png", "height": H, "width": W}],
        "annotations": [{"id": i + 1, "image_id": "a", "category_id": i + 1, "segmentation": seg,
                         "area": int(mask.sum()), "bbox": [0, 0, 1, 1], "iscrowd": 0}
                        for i, seg in enumerate(forms.values())],
        "categories": [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(forms)]})
    store = AnnotationStore.open(tmp_path / "s.json")
    assert store.warnings == []
    masks = store.structure_masks("a")
    assert set(masks) == set(forms)
    for got in masks.values():
        assert np.array_equal(got, mask)


def test_structure_mask_is_union_of_instances(tmp_path):
    write_image(tmp_path / "a.png")
    store = AnnotationStore.create(tmp_path / "s.json")
    img = store.images[0]
    left, right = box_mask(5, 15, 5, 15), box_mask(20, 30, 30, 50)
    a = store.add_structure(img.id, "leg", left)
    b = store.add_structure(img.id, "leg", right)
    assert b > a
    assert [r.raw["instance_id"] for r in store.annotations_for(img.id)] == [1, 2]
    store.save()
    got = AnnotationStore.open(tmp_path / "s.json").structure_masks(img.id)
    assert np.array_equal(got["leg"], left | right)


def test_rlejson_opened_directly_prefers_itself_for_masks(tmp_path, session_folder):
    folder, json_path, data, rle = session_folder
    image_id = data["images"][0]["id"]
    for path in (json_path, json_path.with_suffix(".rlejson")):
        store = AnnotationStore.open(path)
        assert np.array_equal(store.structure_masks(image_id)["scape"], ring_mask())
        assert store.path == json_path


def test_only_rlejson_present(tmp_path, session_folder):
    folder, json_path, data, rle = session_folder
    json_path.unlink()
    store = AnnotationStore.open(json_path.with_suffix(".rlejson"))
    assert any("companion" in w and json_path.name in w for w in store.warnings)
    assert np.array_equal(store.structure_masks(data["images"][0]["id"])["scape"], ring_mask())


def test_json_output_is_utf8_not_escaped(tmp_path, session_folder):
    folder, json_path, data, rle = session_folder
    store = AnnotationStore.open(folder)
    store.set_structure_status(store.images[0], "eye", "present")
    (new_json, _) = store.save()
    text = new_json.read_text(encoding="utf-8")
    assert "left side ☺" in text
    assert json.loads(text)["images"][0]["structure_status"]["eye"] == "present"
    assert text.splitlines()[1].startswith("    \"")       # the file's indent (4) is kept


def test_random_masks_round_trip_exactly(tmp_path):
    """Any mask (holes, islands, single pixels, borders) survives store -> files -> store."""
    rng = np.random.default_rng(1)
    write_image(tmp_path / "a.png", 16, 20)
    for trial in range(25):
        path = tmp_path / f"s{trial}.json"
        store = AnnotationStore.create(path, [tmp_path / "a.png"])
        masks = {}
        for k in range(3):
            m = rng.random((16, 20)) < rng.uniform(0.2, 0.8)
            if not m.any():
                m[0, 0] = True
            masks[f"s{k}"] = m
            store.add_structure(store.images[0], f"s{k}", m)
        store.save()
        got = AnnotationStore.open(path).structure_masks(store.images[0].id)
        for k, m in masks.items():
            assert np.array_equal(got[k], m), (trial, k)


def test_session_file_with_several_images_keeps_every_images_annotations(tmp_path):
    """Regression: indexing used to drop the annotations of all but the last image."""
    names = ["a.png", "b.png", "c.png"]
    for n in names:
        write_image(tmp_path / n)
    masks = {n: box_mask(2 + i, 12 + i, 3 * i, 20 + 3 * i) for i, n in enumerate(names)}
    data = {
        "images": [{"id": i + 1, "file_name": n, "height": H, "width": W} for i, n in enumerate(names)],
        "annotations": [{"id": 10 + i, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "segmentation": mask_to_polygons(masks[n]), "bbox": [0, 0, 1, 1], "area": 1}
                        for i, n in enumerate(names)],
        "categories": [{"id": 1, "name": "head", "supercategory": ""}],
    }
    write_json(tmp_path / "session.json", data)
    store = AnnotationStore.open(tmp_path / "session.json")
    assert not [w for w in store.warnings if "not in" in w]
    for i, n in enumerate(names):
        assert np.array_equal(store.structure_masks(i + 1)["head"], masks[n])
