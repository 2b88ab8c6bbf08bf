"""Writing results: COCO predictions (+ .rlejson for holes) and merging into a store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal.engine.evaluate import evaluate
from descriptron_sam2pal.engine.predictions import write_predictions
from descriptron_sam2pal.store.merge import merge_results
from descriptron_sam2pal.engine.memory_propagation import propagate
from descriptron_sam2pal.engine.results import StructureResult, TargetResult
from descriptron_sam2pal.imaging.masks import segmentation_to_mask
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.synthetic import make_specimen, make_template


def ring_and_dot(h=40, w=50):
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - 20, xx - 20)
    mask = (r <= 15) & (r >= 6)  # a ring: a hole of > 64 px
    mask[35:38, 44:48] = True  # and a second component
    return mask


def test_coco_file_keeps_every_component_holes_in_rlejson_and_scores(tmp_path):
    mask = ring_and_dot()
    results = [
        TargetResult("img/a", str(tmp_path / "a.png"), 40, 50, {
            "head": StructureResult("head", True, mask, 0.42, 0.9, 0.7),
            "eye": StructureResult("eye", False, None, None, 0.1, 0.3)}, orientation="rot90"),
        TargetResult(None, str(tmp_path / "broken.jpg"), 0, 0, error="cannot read"),
    ]
    written = write_predictions(results, tmp_path / "pred.json", categories={"eye": 5})
    assert [p.name for p in written] == ["pred.json", "pred.rlejson"]
    doc = json.loads((tmp_path / "pred.json").read_text())
    assert doc["images"] == [{"id": "img/a", "file_name": "a.png", "height": 40, "width": 50}]
    assert doc["categories"] == [{"id": 5, "name": "eye", "supercategory": ""},
                                 {"id": 6, "name": "head", "supercategory": ""}]
    [ann] = doc["annotations"]  # the absent eye is not an empty polygon
    assert (
        ann["category_id"],
        ann["score"],
        ann["object_score"],
        ann["predicted_iou"],
        ann["orientation"],
    ) == (6, 0.42, 0.9, 0.7, "rot90")
    assert len(ann["segmentation"]) == 2 and ann["area"] == int(mask.sum())
    assert ann["bbox"] == [5.0, 5.0, 43.0, 33.0]
    assert doc["info"]["errors"][0]["error"] == "cannot read"
    rle_doc = json.loads((tmp_path / "pred.rlejson").read_text())
    assert np.array_equal(segmentation_to_mask(rle_doc["annotations"][0]["segmentation"], 40, 50), mask)
    # The store reads it back exactly (its .rlejson preferred), so evaluation can use the file.
    store = AnnotationStore.open(tmp_path / "pred.json")
    assert np.array_equal(store.structure_masks("img/a")["head"], mask)


def test_builder_spools_outlines_and_streams_the_same_document(tmp_path):
    from descriptron_sam2pal.engine.predictions import PredictionsBuilder

    mask = ring_and_dot()
    builder = PredictionsBuilder()
    for i in range(3):
        builder.add(TargetResult(f"img/{i}", str(tmp_path / f"{i}.png"), 40, 50, {
            "head": StructureResult("head", True, mask, 0.5, 0.9, 0.7),
            "eye": StructureResult("eye", True, mask[::-1].copy(), 0.4, 0.8, 0.6)}))
    # Nothing outline-sized stays in memory: only one small record per image.
    assert builder.n_annotations == 6 and len(builder.images) == 3
    assert not any(isinstance(v, list) and len(v) > 3 for v in vars(builder).values())
    write_predictions(builder, tmp_path / "a.json")
    write_predictions(builder, tmp_path / "b.json")  # the spool can be streamed again
    doc, rle = builder.document()
    builder.close()
    assert json.loads((tmp_path / "a.json").read_text()) == doc
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    rle_doc = json.loads((tmp_path / "a.rlejson").read_text())
    assert [a["id"] for a in rle_doc["annotations"]] == [1, 2, 3, 4, 5, 6] and set(rle) == {1, 2, 3, 4, 5, 6}
    for a in rle_doc["annotations"]:
        assert a["segmentation"] == rle[a["id"]]


def test_a_full_disk_while_spooling_is_a_clear_error(tmp_path):
    from descriptron_sam2pal import UserError
    from descriptron_sam2pal.engine.predictions import PredictionsBuilder

    builder = PredictionsBuilder(spool_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the spool files have no names: nothing to leave behind

    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

    builder._plain = Full()
    result = TargetResult("a", str(tmp_path / "a.png"), 40, 50,
                          {"head": StructureResult("head", True, ring_and_dot(), 0.5, 0.9, 0.7)})
    with pytest.raises(UserError, match="No space left on device.*free disk space.*--resume"):
        builder.add(result)


def test_propagate_write_evaluate_and_merge_into_a_store(present_model, tmp_path):
    paths = []
    for i, size in enumerate([(80, 100), (100, 70)]):
        image, _ = make_specimen(20 + i, size=size)
        paths.append(tmp_path / f"spec_{i}.png")
        Image.fromarray(image).save(paths[-1])
    results = propagate(present_model, [make_template("t0", seed=0)], paths)
    write_predictions(results, tmp_path / "pred.json")
    rep = evaluate(tmp_path / "pred.json", {})  # readable as predictions
    assert rep.matched == [] and rep.unmatched_predictions == ["spec_0", "spec_1"]
    rep = evaluate(results, tmp_path / "pred.json")  # and as truth: identical masks, IoU 1
    assert rep.mean_iou == pytest.approx(1.0)

    store = AnnotationStore.create(tmp_path / "session.json", images=[paths[0]])
    summary = merge_results(store, results)
    store.save()
    assert summary.added == 6  # 3 structures x 2 images; the second image was added to the store
    reopened = AnnotationStore.open(tmp_path / "session.json")
    assert len(reopened.images) == 2
    rec = reopened.image_by_file(paths[1])
    masks = reopened.structure_masks(rec.id)
    assert np.array_equal(masks["head"], results[1].structures["head"].mask)
    attrs = [a.raw["attributes"] for a in reopened.annotations_for(rec.id)]
    assert all(a["source"] == "sam2pal" and 0 <= a["score"] <= 1 for a in attrs)
    # Merging again replaces instead of piling up; min_score filters.
    assert merge_results(reopened, results, min_score=2.0).added == 0
    again = merge_results(reopened, results)
    assert again.replaced == 6
    assert len(reopened.annotations_for(rec.id)) == 3


def test_merge_never_replaces_the_users_own_annotation(present_model, tmp_path):
    image, _ = make_specimen(30, size=(90, 110))
    path = tmp_path / "spec.png"
    Image.fromarray(image).save(path)
    results = propagate(present_model, [make_template("t0", seed=0)], [path])
    store = AnnotationStore.create(tmp_path / "session.json", images=[path])
    rec = store.images[0]
    mine = np.zeros((90, 110), bool)
    mine[10:40, 20:60] = True
    store.add_structure(rec.id, "head", mine, attributes={"notes": "drawn by hand"})
    summary = merge_results(store, results)
    present = [n for n, s in results[0].structures.items() if s.present]
    assert "head" in present
    assert summary.kept == [
        "spec.png: head: already outlined in the store (kept; choose Replace to overwrite)"
    ]
    assert summary.added == len(present) - 1
    assert np.array_equal(store.structure_masks(rec.id)["head"], mine)


def test_the_predictions_pair_is_one_unit(tmp_path):
    """Both files carry one token derived from their content; a .rlejson of another run beside
    the .json is noticed by the reader instead of being read as a different mask."""
    from descriptron_sam2pal.engine.results import StructureResult, TargetResult
    from descriptron_sam2pal.store.coco import PAIR_KEY

    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[12:28, 12:28] = False  # a hole: the .rlejson carries RLE for it

    def results(shift):
        m = np.roll(ring, shift, axis=1)
        return [
            TargetResult(
                1, str(tmp_path / "a.png"), 40, 40, {"head": StructureResult("head", True, m, 0.9, 0.9, 0.9)}
            )
        ]

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    first = write_predictions(results(0), tmp_path / "one.json")
    write_predictions(results(0), tmp_path / "again.json")
    tokens = [json.loads(p.read_text())[PAIR_KEY] for p in first]
    assert tokens[0] == tokens[1] == json.loads((tmp_path / "again.rlejson").read_text())[PAIR_KEY]
    assert first == [tmp_path / "one.json", tmp_path / "one.rlejson"]
    write_predictions(results(3), tmp_path / "two.json")
    (tmp_path / "two.rlejson").replace(tmp_path / "one.rlejson")  # a crash left another run's half
    store = AnnotationStore.open(tmp_path / "one.json")
    assert any("not a pair" in w or "does not belong" in w for w in store.warnings)
