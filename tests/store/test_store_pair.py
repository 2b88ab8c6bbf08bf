"""The .json/.rlejson pair is one unit; files keep their permissions; Descriptron-safe segmentations."""

import os
import stat

import numpy as np
import pytest

from descriptron_sam2pal.imaging.masks import mask_to_polygons
from descriptron_sam2pal.store import AnnotationStore
from descriptron_sam2pal.store.coco import PAIR_KEY
from tests.helpers.store_files import (
    H,
    W,
    box_mask,
    read_json,
    ring_mask,
    saved_session,
    write_image,
    write_json,
)


class Crash(BaseException):
    """A kill: not an OSError, so nothing is tidied up or restored."""


def masks(path):
    store = AnnotationStore.open(path)
    return store, store.structure_masks(store.images[0])


def crash_on_replace(monkeypatch, n):
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == n:
            raise Crash()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_save_cut_between_the_two_renames_reads_as_the_new_version(tmp_path, monkeypatch):
    path = saved_session(tmp_path)
    store = AnnotationStore.open(path)
    store.add_structure(store.images[0], "eye", ring_mask(), replace=True)   # a hole: RLE only in .rlejson
    crash_on_replace(monkeypatch, 2)                 # .rlejson renamed, then killed before the .json
    with pytest.raises(Crash):
        store.save()
    monkeypatch.undo()
    assert read_json(path)[PAIR_KEY] != read_json(path.with_suffix(".rlejson"))[PAIR_KEY]
    reread, got = masks(path)
    assert set(got) == {"scape", "eye"}
    np.testing.assert_array_equal(got["eye"], ring_mask())           # the hole is not filled
    assert any("interrupted" in w and "s.rlejson" in w for w in reread.warnings)
    reread.save()                                                     # repaired: a pair again
    assert read_json(path)[PAIR_KEY] == read_json(path.with_suffix(".rlejson"))[PAIR_KEY]
    np.testing.assert_array_equal(masks(path)[1]["eye"], ring_mask())
    assert all(isinstance(a["segmentation"], list) for a in read_json(path)["annotations"])


def test_a_save_cut_before_the_first_rename_reads_as_the_old_version(tmp_path, monkeypatch):
    path = saved_session(tmp_path)
    store = AnnotationStore.open(path)
    store.add_structure(store.images[0], "eye", ring_mask())
    crash_on_replace(monkeypatch, 1)
    with pytest.raises(Crash):
        store.save()
    monkeypatch.undo()
    reread, got = masks(path)
    assert set(got) == {"scape"} and reread.warnings == []
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_foreign_rlejson_is_not_read_as_ours(tmp_path):
    path = saved_session(tmp_path)
    rle = read_json(path.with_suffix(".rlejson"))
    del rle[PAIR_KEY]                                # e.g. copied back from elsewhere
    rle["annotations"][0]["segmentation"] = [[0, 0, 5, 0, 5, 5]]
    write_json(path.with_suffix(".rlejson"), rle)
    store, got = masks(path)
    np.testing.assert_array_equal(got["scape"], box_mask(5, 10, 5, 10))
    assert any("does not belong to s.json" in w and "*.bak-*" in w for w in store.warnings)


def test_a_missing_rlejson_of_ours_is_reported(tmp_path):
    path = saved_session(tmp_path)
    path.with_suffix(".rlejson").unlink()
    store, _ = masks(path)
    assert any("s.rlejson is missing" in w and "holes filled" in w for w in store.warnings)


def test_new_files_follow_the_umask_and_rewrites_keep_mode_and_group(tmp_path):
    old = os.umask(0o027)
    try:
        path = saved_session(tmp_path)
        rle = path.with_suffix(".rlejson")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 == stat.S_IMODE(rle.stat().st_mode)
        os.chmod(path, 0o664)
        os.chmod(rle, 0o604)
        group = path.stat().st_gid
        if os.geteuid() == 0:                         # root may give the file any group
            group += 4321
            os.chown(path, -1, group)
        store = AnnotationStore.open(path)
        store.add_structure(store.images[0], "eye", box_mask(20, 25, 20, 25))
        store.save()
        assert stat.S_IMODE(path.stat().st_mode) == 0o664 and path.stat().st_gid == group
        assert stat.S_IMODE(rle.stat().st_mode) == 0o604
    finally:
        os.umask(old)


def test_compressed_rle_in_the_json_becomes_uncompressed_rle_of_the_same_pixels(tmp_path):
    """Descriptron 2.8.2 crashes on compressed RLE; its Load Annotations reads uncompressed RLE
    exactly, while polygons would fill the ring's hole: an RLE stays RLE, never compressed."""
    from pycocotools import mask as mask_utils

    write_image(tmp_path / "a.png")
    ring, box = ring_mask(), box_mask(30, 38, 40, 58)
    compressed = mask_utils.encode(np.asfortranarray(ring.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()
    box_rle = mask_utils.encode(np.asfortranarray(box.astype(np.uint8)))
    box_rle["counts"] = box_rle["counts"].decode()
    data = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": compressed, "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 2, "segmentation": box_rle, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "scape"}, {"id": 2, "name": "head"}]}
    path = write_json(tmp_path / "other_tool.json", data)
    store = AnnotationStore.open(path)
    store.set_structure_status(store.images[0], "eye", "absent")
    store.save()
    saved, saved_rle = read_json(path), read_json(path.with_suffix(".rlejson"))
    assert saved_rle["annotations"] == saved["annotations"]
    for ann, mask in zip(saved["annotations"], (ring, box)):
        seg = ann["segmentation"]
        assert isinstance(seg["counts"], list) and seg["size"] == [H, W]      # uncompressed RLE
        np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects(seg, H, W)).astype(bool), mask)
    _, got = masks(path)
    np.testing.assert_array_equal(got["scape"], ring)
    np.testing.assert_array_equal(got["head"], box)


def test_a_document_read_from_its_rlejson_gets_polygons_in_the_json_again(tmp_path):
    """Only the .rlejson of a Descriptron save is there: its RLE are the companion's, so the .json
    written from it has polygons (as Descriptron's own save) and the .rlejson the exact ring."""
    write_image(tmp_path / "a.png")
    path = tmp_path / "session.json"
    store = AnnotationStore.create(path, [tmp_path / "a.png"])
    store.add_structure(store.images[0], "scape", ring_mask())
    store.save()
    path.unlink()
    store = AnnotationStore.open(path.with_suffix(".rlejson"))
    store.set_structure_status(store.images[0], "eye", "absent")
    store.save()
    seg = read_json(path)["annotations"][0]["segmentation"]
    assert seg == [[float(v) for v in p] for p in mask_to_polygons(ring_mask())]
    exact = read_json(path.with_suffix(".rlejson"))["annotations"][0]["segmentation"]
    assert isinstance(exact["counts"], list)
    np.testing.assert_array_equal(masks(path)[1]["scape"], ring_mask())
