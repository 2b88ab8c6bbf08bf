"""A mask from another tool keeps every pixel: an RLE (`iscrowd: 1`, pycocotools' compressed form or
COCO's uncompressed one) with holes stays RLE when we save the file again after merging
predictions into it, never hole-filled polygons. Compressed RLE, which Descriptron 2.8.2 cannot
load, becomes the uncompressed RLE of the same pixels; everything else of an annotation we did
not create is written back as it was. Checked with pycocotools' own decoder, Descriptron's own
loader, our reader, and the real CLI (`propagate --write-to`, mini model)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from descriptron_sam2pal.imaging.masks import mask_to_rle
from descriptron_sam2pal.store import AnnotationStore

from tests.helpers.cli_runs import propagate_argv, run_cli as run
from tests.helpers.descriptron_harness import Descriptron
from tests.helpers.synthetic import make_specimen, save_colour_template

H, W = 96, 120
COLORS = "head=200,0,0;eye=0,200,0"


def ring_with_holes() -> np.ndarray:
    """A crowd region with a large hole (300 px) and a small one (9 px): neither may be filled."""
    m = np.zeros((H, W), bool)
    m[10:60, 10:70] = True
    m[20:40, 20:35] = False
    m[50:53, 60:63] = False
    return m


def frame() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[62:92, 75:115] = True
    m[70:84, 85:105] = False  # a 280 px hole
    return m


def other_tool_file(folder: Path) -> tuple[Path, dict, dict]:
    """A COCO file as another tool writes it, beside its photo s0.png: a compressed RLE straight
    from pycocotools' encoder, an uncompressed RLE (COCO's crowd form), a polygon; unknown fields.
    Returns (path, the document, {annotation id: its mask as pycocotools decodes it})."""
    Image.fromarray(make_specimen(10, size=(H, W))[0]).save(folder / "s0.png")
    compressed = coco_mask.encode(np.asfortranarray(ring_with_holes().astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode("ascii")
    uncompressed = mask_to_rle(frame())
    doc = {
        "info": {"description": "exported by another tool", "version": "3.1"},
        "licenses": [{"id": 1, "name": "CC BY 4.0"}],
        "images": [{"id": 7, "file_name": "s0.png", "height": H, "width": W, "license": 1}],
        "annotations": [
            {
                "id": 101,
                "image_id": 7,
                "category_id": 1,
                "segmentation": compressed,
                "iscrowd": 1,
                "area": int(ring_with_holes().sum()),
                "bbox": [10.0, 10.0, 60.0, 50.0],
                "score": 0.87,
                "tool": {"brush": "lasso"},
            },
            {
                "id": 102,
                "image_id": 7,
                "category_id": 2,
                "segmentation": uncompressed,
                "iscrowd": 1,
                "area": int(frame().sum()),
                "bbox": [75.0, 62.0, 40.0, 30.0],
            },
            {
                "id": 103,
                "image_id": 7,
                "category_id": 3,
                "iscrowd": 0,
                "area": 150.0,
                "segmentation": [[2.0, 2.0, 16.0, 2.0, 16.0, 12.0, 2.0, 12.0]],
                "bbox": [2.0, 2.0, 14.0, 10.0],
            },
        ],
        "categories": [
            {"id": 1, "name": "setae", "supercategory": ""},
            {"id": 2, "name": "frame", "supercategory": ""},
            {"id": 3, "name": "label", "supercategory": ""},
        ],
    }
    path = folder / "other_tool.json"
    path.write_text(json.dumps(doc))
    truth = decoded_by_pycocotools(path)
    assert np.array_equal(truth[101], ring_with_holes()) and np.array_equal(truth[102], frame())
    return path, copy.deepcopy(doc), truth


def decoded_by_pycocotools(path: Path) -> dict:
    coco = COCO(str(path))
    return {a["id"]: coco.annToMask(a).astype(bool) for a in coco.dataset["annotations"]}


def assert_kept(path: Path, source: dict, truth: dict) -> None:
    """Both files: the masks of the other tool pixel for pixel (holes too), RLE kept as RLE and
    never compressed, every other field of those annotations and the file's own keys as they were."""
    for file in (path, path.with_suffix(".rlejson")):
        saved = json.loads(file.read_text())
        assert saved["info"] == source["info"] and saved["licenses"] == source["licenses"]
        by_id = {a["id"]: a for a in saved["annotations"]}
        for ann in source["annotations"]:
            got = by_id[ann["id"]]
            assert {k: v for k, v in got.items() if k != "segmentation"} == {
                k: v for k, v in ann.items() if k != "segmentation"
            }
        assert by_id[102] == source["annotations"][1]  # uncompressed RLE: field for field
        assert by_id[103] == source["annotations"][2]  # the polygon: untouched
        seg = by_id[101]["segmentation"]  # compressed: RLE still, uncompressed now
        assert isinstance(seg, dict) and isinstance(seg["counts"], list) and seg["size"] == [H, W]
        segs = [a.get("segmentation") for a in saved["annotations"]]
        assert not any(isinstance(s, dict) and isinstance(s["counts"], str) for s in segs)
        decoded = decoded_by_pycocotools(file)
        for ann_id, mask in truth.items():
            np.testing.assert_array_equal(decoded[ann_id], mask)


def assert_descriptron_loads_the_same_pixels(path: Path, photo: Path, truth: dict) -> None:
    for file in (path, path.with_suffix(".rlejson")):
        d = Descriptron()
        d.open_image(photo)
        loaded = {label: mask for label, mask, _ in d.load(file)}
        np.testing.assert_array_equal(loaded["setae"], truth[101])  # both holes there
        np.testing.assert_array_equal(loaded["frame"], truth[102])


def test_an_rle_of_another_tool_keeps_its_holes_when_we_add_an_outline_and_save(tmp_path):
    path, source, truth = other_tool_file(tmp_path)
    store = AnnotationStore.open(path)
    prediction = np.zeros((H, W), bool)
    prediction[65:90, 5:40] = True
    store.add_structure(7, "head", prediction, attributes={"source": "sam2pal"})
    store.save()
    assert_kept(path, source, truth)
    assert_descriptron_loads_the_same_pixels(path, tmp_path / "s0.png", truth)
    again = AnnotationStore.open(path)
    masks = again.structure_masks(7)
    np.testing.assert_array_equal(masks["setae"], truth[101])
    np.testing.assert_array_equal(masks["frame"], truth[102])
    np.testing.assert_array_equal(masks["head"], prediction)
    # Saved once more (nothing of theirs changed): the same bytes in their annotations.
    again.add_structure(7, "eye", np.roll(prediction, 30, axis=1))
    before = {a["id"]: a for a in json.loads(path.read_text())["annotations"] if a["id"] in (101, 102, 103)}
    again.save()
    after = {a["id"]: a for a in json.loads(path.read_text())["annotations"] if a["id"] in (101, 102, 103)}
    assert after == before


@pytest.mark.parametrize("parts", [1, 2])
def test_a_list_of_rles_becomes_one_uncompressed_rle_of_the_same_pixels(tmp_path, parts):
    """Descriptron's loader cannot read a list of RLEs (compressed or not); its union can."""
    path, source, truth = other_tool_file(tmp_path)
    doc = json.loads(path.read_text())
    ring = ring_with_holes()
    pieces = [ring] if parts == 1 else [ring & (np.arange(W) < 40), ring & (np.arange(W) >= 40)]
    rles = []
    for half in pieces:
        rle = coco_mask.encode(np.asfortranarray(half.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        rles.append(rle)
    doc["annotations"][0]["segmentation"] = rles
    path.write_text(json.dumps(doc))
    store = AnnotationStore.open(path)
    store.set_structure_status(7, "eye", "absent")
    store.save()
    seg = json.loads(path.read_text())["annotations"][0]["segmentation"]
    assert isinstance(seg, dict) and isinstance(seg["counts"], list)
    assert_descriptron_loads_the_same_pixels(path, tmp_path / "s0.png", truth)


def test_propagate_write_to_a_coco_file_of_another_tool_keeps_its_rle_masks(
    tmp_path, present_checkpoint, capsys
):
    specimens = tmp_path / "specimens"
    specimens.mkdir()
    path, source, truth = other_tool_file(specimens)
    template, template_mask, _ = save_colour_template(
        tmp_path, {"head": (200, 0, 0), "eye": (0, 200, 0)}, (H, W)
    )
    argv = propagate_argv(
        template, template_mask, COLORS, specimens, present_checkpoint, tmp_path / "pred.json",
        "--no-confidence", "--write-to", path,
    )  # fmt: skip
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    saved = json.loads(path.read_text())
    assert {a["id"] for a in saved["annotations"]} > {101, 102, 103}  # our predictions went in
    assert_kept(path, source, truth)
    assert_descriptron_loads_the_same_pixels(path, specimens / "s0.png", truth)
