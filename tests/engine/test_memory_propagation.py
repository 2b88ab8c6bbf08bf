"""Propagation: one encoder pass per target, no dependence on batch/order, masks on each
target's own grid, palindrome confidence with memory reset, absent structures, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from descriptron_sam2pal.engine.control import CancelToken
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.memory_propagation import (
    TemplateMemory,
    group_structures,
    palindrome_confidence,
    propagate,
)
from descriptron_sam2pal.engine.results import Target
from descriptron_sam2pal.imaging.io import load_image
from tests.helpers.mini_models import set_object_score_bias
from tests.helpers.recording import record_calls
from tests.helpers.synthetic import make_specimen, make_template

SIZES = [(96, 128), (128, 80), (150, 150), (70, 160), (128, 128), (110, 90)]


def write_targets(tmp_path, n=None):
    paths = []
    for i in range(len(SIZES) if n is None else n):
        image, _ = make_specimen(10 + i, size=SIZES[i % len(SIZES)])
        path = tmp_path / f"target_{i}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def count_encoder_images(model):
    """Wrap the SAM2 image encoder: counts images that go through it."""
    seen = {"images": 0}
    encoder = model.sam.image_encoder
    original = encoder.forward

    def forward(x):
        seen["images"] += x.shape[0]
        return original(x)

    encoder.forward = forward
    return seen


def assert_same(a, b, mask_px=2):
    """Two results of one target agree: scores to 1e-5, masks up to ``mask_px`` pixels
    (batch shape changes float summation order; logits at exactly 0 may flip)."""
    assert (a.height, a.width, a.orientation, a.error) == (b.height, b.width, b.orientation, b.error)
    assert list(a.structures) == list(b.structures)
    for name, sa in a.structures.items():
        sb = b.structures[name]
        assert sa.present == sb.present, name
        assert sa.object_score == pytest.approx(sb.object_score, abs=1e-5)
        assert sa.predicted_iou == pytest.approx(sb.predicted_iou, abs=1e-5)
        if sa.present:
            assert sa.score == pytest.approx(sb.score, abs=1e-5)
            assert np.count_nonzero(sa.mask != sb.mask) <= mask_px, name
        else:
            assert sa.mask is None and sb.mask is None


def test_one_encoder_pass_per_target_and_template_memory_built_once(present_model, tmp_path):
    paths = write_targets(tmp_path, 5)
    template = make_template("t0", seed=0, structures=("head", "eye", "scape"))
    seen = count_encoder_images(present_model)
    encoder = FeatureEncoder(present_model)
    memory = TemplateMemory(present_model, [template], encoder)
    assert (seen["images"], encoder.encoder_passes) == (1, 1)

    results = propagate(present_model, memory, paths, batch_size=2)
    assert len(results) == 5 and all(r.ok for r in results)
    # K=3 structures, N=5 targets, confidence on: exactly one pass per target, none for the template.
    assert seen["images"] == 1 + 5
    assert encoder.encoder_passes == 1 + 5
    for r in results:
        assert set(r.structures) == {"head", "eye", "scape"}
        for s in r.structures.values():
            assert s.present and s.mask is not None and 0.0 <= s.score <= 1.0
            assert 0.0 <= s.object_score <= 1.0


def test_result_of_a_target_does_not_depend_on_batch_or_order(present_model, tmp_path):
    paths = write_targets(tmp_path, 5)
    memory = TemplateMemory(present_model, [make_template("t0", seed=0)])
    batched = propagate(present_model, memory, paths, batch_size=4)
    single_reversed = propagate(present_model, memory, paths[::-1], batch_size=1)[::-1]
    mixed = propagate(present_model, memory, [paths[3], paths[0], paths[4], paths[2], paths[1]], batch_size=3)
    mixed = [mixed[1], mixed[4], mixed[3], mixed[0], mixed[2]]
    for a, b, c in zip(batched, single_reversed, mixed):
        assert a.path == b.path == c.path
        assert_same(a, b)
        assert_same(a, c)
    # Different targets do get different answers (the comparison above is not vacuous).
    assert not np.array_equal(
        batched[0].structures["head"].mask.shape, batched[1].structures["head"].mask.shape
    )


def test_masks_come_back_on_each_targets_own_grid_including_exif_rotation(present_model, tmp_path):
    paths = write_targets(tmp_path, 4)
    # A JPEG stored 60x100 whose EXIF says "rotate 90 CW": Descriptron ignores the tag and
    # works in the stored 60x100 frame, and so do we (masks must line up in its store).
    stored, _ = make_specimen(3, size=(60, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(jpeg, exif=exif.tobytes(), quality=95)
    shown = load_image(jpeg)
    assert shown.shape[:2] == (60, 100)

    memory = TemplateMemory(present_model, [make_template("t0", seed=0)])
    results = propagate(present_model, memory, paths + [jpeg], batch_size=3)
    for path, r in zip(paths + [jpeg], results):
        h, w = load_image(path).shape[:2]
        assert (r.height, r.width) == (h, w)
        for s in r.structures.values():
            assert s.mask.shape == (h, w) and s.mask.dtype == bool
            assert s.polygons() and all(len(p) >= 6 for p in s.polygons())
    # The file and its decoded pixels give the same masks: one pixel grid everywhere.
    [from_pixels] = propagate(present_model, memory, [shown], batch_size=1)
    assert_same(results[-1], from_pixels, mask_px=0)

    # Mapping back is the exact inverse of the letterbox: the model-grid mask of a target
    # that needs no resizing (128 x 64 -> pad only) is the result, cropped.
    image, _ = make_specimen(4, size=(128, 64))
    prepared = prepare_image(image, 128)
    [r] = propagate(present_model, memory, [prepared])
    lb = prepared.letterbox
    assert lb.is_identity_resize and r.structures["head"].mask.shape == (128, 64)


def test_absent_structures_are_reported_absent_and_status_is_respected(mini_model, tmp_path):
    paths = write_targets(tmp_path, 2)
    template = make_template("t0", seed=0)
    set_object_score_bias(mini_model, -6.0)
    [r, _] = propagate(mini_model, [template], paths)
    for s in r.structures.values():
        assert not s.present and s.mask is None and s.score is None and s.object_score < 0.5

    set_object_score_bias(mini_model, 12.0)
    targets = [
        Target(path=str(paths[0]), image_id="a", structure_status={"eye": "absent", "scape": "unknown"}),
        Target(path=str(paths[1]), image_id="b", structure_status={"eye": "present"}),
    ]
    ra, rb = propagate(mini_model, [template], targets)
    assert (ra.image_id, rb.image_id) == ("a", "b")
    assert list(ra.structures) == ["head"] and ra.skipped == {"eye": "absent", "scape": "unknown"}
    assert ra.structures["head"].present
    assert set(rb.structures) == {"head", "eye", "scape"} and rb.skipped == {}


def test_confidence_uses_a_memory_reset_and_scores_the_prediction(present_model, tmp_path, monkeypatch):
    import descriptron_sam2pal.engine.memory_propagation as prop

    [path] = write_targets(tmp_path, 1)
    memory = TemplateMemory(present_model, [make_template("t0", seed=0)])
    template_memory = memory.memory(0, ["head", "eye", "scape"])
    recorded = record_calls(monkeypatch, prop, "predict_from_memory")  # (sam, frame, memories)
    [r] = propagate(present_model, memory, [path])
    monkeypatch.undo()
    calls = [memories for _, _, memories in recorded]
    # Forward: the target attends to the template memory. Backward: to one new memory only,
    # built from the target and its prediction; nothing of the template memory is in it.
    assert len(calls) == 2 and len(calls[0]) == 1 and len(calls[1]) == 1
    forward, backward = calls[0][0], calls[1][0]
    assert torch.equal(forward["maskmem_features"], template_memory["maskmem_features"])
    assert backward["maskmem_features"].shape == template_memory["maskmem_features"].shape
    assert not torch.allclose(backward["maskmem_features"], template_memory["maskmem_features"])
    assert not torch.allclose(backward["obj_ptr"], template_memory["obj_ptr"])

    scores = {n: s.palindrome_confidence for n, s in r.structures.items()}
    assert not all(v > 0.9 for v in scores.values())  # not the reference's ~0.996 everywhere
    prepared = prepare_image(path, 128)
    predicted = {n: s.mask for n, s in r.structures.items()}
    again = palindrome_confidence(memory, prepared, predicted)
    for n in scores:  # the reported score is the cycle score of the reported mask
        assert again[n] == pytest.approx(scores[n], abs=0.02)
    # Another mask for the target, another score (small effects: the model is random).
    h, w = r.height, r.width
    full = palindrome_confidence(memory, prepared, {n: np.ones((h, w), bool) for n in scores})
    empty = palindrome_confidence(memory, prepared, {n: np.zeros((h, w), bool) for n in scores})
    assert any(abs(full[n] - again[n]) > 1e-3 for n in scores)
    assert any(abs(empty[n] - again[n]) > 1e-3 for n in scores)


def test_several_templates_structures_attend_to_the_templates_that_have_them(present_model, tmp_path):
    paths = write_targets(tmp_path, 2)
    t0 = make_template("t0", seed=0, structures=("head", "eye"))
    t1 = make_template("t1", seed=1, structures=("head", "eye", "scape"))
    t2 = make_template("t2", seed=2, structures=("mandible",))
    groups = group_structures([t0, t1, t2])
    assert [(g.names, g.templates) for g in groups] == [(["head", "eye"], [0, 1]), (["scape"], [1]),
                                                         (["mandible"], [2])]
    encoder = FeatureEncoder(present_model)
    memory = TemplateMemory(present_model, [t0, t1, t2], encoder)
    results = propagate(present_model, memory, paths, batch_size=2)
    assert encoder.encoder_passes == 3 + 2
    for r in results:
        assert set(r.structures) == {"head", "eye", "scape", "mandible"}
    # Attending to two templates is not the same as attending to one.
    [one] = propagate(present_model, [t1], paths[:1])
    def signature(s):  # predicted_iou alone may round to the same bf16 value
        return (s.predicted_iou, s.object_score, s.score, int(s.mask.sum()) if s.mask is not None else 0)

    assert signature(one.structures["head"]) != signature(results[0].structures["head"])


def test_cancel_then_resume_from_the_journal_redoes_nothing(present_model, tmp_path):
    paths = write_targets(tmp_path, 6)
    template = make_template("t0", seed=0)
    journal = tmp_path / "out.journal.jsonl"
    full = propagate(present_model, [template], paths, batch_size=2)

    cancel = CancelToken()

    def stop_after_four(p):
        if p.done >= 4:
            cancel.cancel()

    first = propagate(present_model, [template], paths, batch_size=2, journal=journal, cancel=cancel,
                      progress=stop_after_four)
    assert len(first) == 4
    lines = journal.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["v"] == 1
    # A crash mid-write leaves half a line; it is skipped and never glues onto the next one.
    with open(journal, "a") as f:
        f.write('{"v": 1, "run": "trunc')

    encoder = FeatureEncoder(present_model)
    second = propagate(present_model, [template], paths, batch_size=2, journal=journal, encoder=encoder)
    assert encoder.encoder_passes == 1 + 2  # the template, then only targets 5 and 6
    assert [r.from_journal for r in second] == [True] * 4 + [False] * 2
    for a, b in zip(full, second):
        assert a.path == b.path
        assert_same(a, b, mask_px=0)

    # Everything journaled now: a third run encodes only the template.
    encoder = FeatureEncoder(present_model)
    third = propagate(present_model, [template], paths, batch_size=2, journal=journal, encoder=encoder)
    assert encoder.encoder_passes == 1 and all(r.from_journal for r in third)
    # Another model (e.g. a fine-tuned adapter) does not reuse those results.
    set_object_score_bias(present_model, 0.5)
    encoder = FeatureEncoder(present_model)
    propagate(present_model, [template], paths[:2], journal=journal, encoder=encoder)
    assert encoder.encoder_passes == 1 + 2


def test_an_unreadable_target_is_reported_and_the_batch_goes_on(present_model, tmp_path):
    paths = write_targets(tmp_path, 2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "missing.png"
    no_file = Target(path=None, image_id="gone")  # a store record whose image file is missing
    for journal in (None, tmp_path / "j.jsonl"):
        results = propagate(present_model, [make_template("t0", seed=0)],
                            [paths[0], broken, missing, no_file, paths[1]], batch_size=4, journal=journal)
        assert [r.ok for r in results] == [True, False, False, False, True]
        assert "broken.jpg" in results[1].error and results[1].structures == {}
        assert "'gone'" in results[3].error
        assert results[4].structures["head"].present


def test_default_batch_is_one_target_on_the_cpu_and_four_on_a_gpu(present_model, monkeypatch):
    from descriptron_sam2pal.engine import memory_propagation as propagate_module
    from descriptron_sam2pal.engine.memory_propagation import default_batch_size

    assert default_batch_size(torch.device("cpu")) == 1
    assert default_batch_size(torch.device("cuda")) == 4
    batches = []
    monkeypatch.setattr(propagate_module, "release_freed_memory", lambda: batches.append(1))
    targets = [make_specimen(30 + i, size=(70, 90))[0] for i in range(3)]
    results = propagate(present_model, [make_template("t", seed=0)], targets)
    assert len(results) == 3 and len(batches) == 3  # one batch per target on the CPU
