"""A Segment run ends by redoing its review scores with the collection: the predictions file, the
store's ``score`` attributes and the kept results carry the same new numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal.engine.collection_score import MIN_MASKS
from descriptron_sam2pal.engine.memory_propagation import iter_propagate
from descriptron_sam2pal.jobs.models import ModelRequest, load_model
from descriptron_sam2pal.jobs.propagation import PropagateRequest, propagate_run
from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.synthetic import make_specimen

COLORS = {"head": (200, 0, 0), "eye": (0, 200, 0), "scape": (0, 0, 200)}


def test_scores_redone_at_the_end_reach_the_predictions_the_store_and_the_results(
    tmp_path, present_checkpoint
):
    image, masks = make_specimen(0, size=(96, 120))
    Image.fromarray(image).save(tmp_path / "t.png")
    colour = np.zeros(image.shape, np.uint8)
    for n, m in masks.items():
        colour[m] = COLORS[n]
    Image.fromarray(colour).save(tmp_path / "t_mask.png")
    folder = tmp_path / "specimens"
    folder.mkdir()
    targets = []
    for i in range(MIN_MASKS + 2):
        Image.fromarray(make_specimen(10 + i, size=(96, 120))[0]).save(folder / f"s{i:02d}.png")
        targets.append(folder / f"s{i:02d}.png")
    AnnotationStore.create(folder).save()
    spec = spec_from_color_png(tmp_path / "t.png", tmp_path / "t_mask.png", COLORS)
    model = ModelRequest(choice=str(present_checkpoint), device="cpu", image_size=128)
    said = []
    outcome = propagate_run(
        PropagateRequest(model, [spec], targets, out=tmp_path / "pred.json", write_to=folder),
        keep_results=True,
        log_fn=said.append,
    )
    assert any("unlike the other specimens' outlines of their structure now come first" in s for s in said)

    # The one-pass scores, target by target, as the run streamed them.
    loaded = load_model(model)
    one_pass = list(iter_propagate(loaded, load_templates([spec], loaded.image_size), targets))
    kept = {
        (Path(r.path).name, n): s.score for r in outcome.results for n, s in r.structures.items() if s.present
    }
    before = {(Path(r.path).name, n): s.score for r in one_pass for n, s in r.structures.items() if s.present}
    assert kept.keys() == before.keys() and len(kept) >= MIN_MASKS
    assert (
        sum(abs(kept[k] - before[k]) > 1e-6 for k in kept) > len(kept) // 2
    )  # redone, not left as they were

    doc = json.loads((tmp_path / "pred.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    in_file = {(files[a["image_id"]], names[a["category_id"]]): a["score"] for a in doc["annotations"]}
    rle = json.loads((tmp_path / "pred.rlejson").read_text())
    assert {a["id"]: a["score"] for a in rle["annotations"]} == {
        a["id"]: a["score"] for a in doc["annotations"]
    }
    assert in_file == pytest.approx(kept)

    store = AnnotationStore.open(folder)
    in_store = {}
    for record in store.images:
        for a in store.annotations_for(record.id):
            assert a.raw["attributes"]["source"] == "sam2pal"
            in_store[(record.file_name, a.category)] = a.raw["attributes"]["score"]
    assert in_store == pytest.approx(kept)
