"""Self-training pseudo-labels: the masks the review score trusts, remade during training."""

from __future__ import annotations

import json

import numpy as np
import torch

from descriptron_sam2pal.engine.collection_score import MIN_MASKS
from descriptron_sam2pal.engine.control import CancelToken
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.palindrome import LossWeights, pseudo_label_loss
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.pseudo_labels import (
    MIN_CYCLE,
    choose,
    pack_labels,
    select_pseudo_labels,
    unpack_labels,
)
from descriptron_sam2pal.engine.review_score import FITS
from descriptron_sam2pal.engine.trainer import TrainConfig, train
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model
from tests.helpers.mini_models import set_object_score_bias
from tests.helpers.synthetic import make_specimen, make_template


def square(top: int, left: int, side: int = 20, size: int = 64) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[top:top + side, left:left + side] = True
    return m


def crowd_and_outlier(n: int):
    """``n`` masks of one structure close together, and one far off whose one-pass signals are
    the best of all (image index n)."""
    plain = {"stability": 0.5, "predicted_iou": 0.5, "palindrome": 0.9}
    items = [(i, plain, square(20 + i % 3, 20)) for i in range(n)]
    items.append((n, {"stability": 0.95, "predicted_iou": 0.95, "palindrome": 0.9}, square(0, 40)))
    return {"legs": items}


def test_the_collection_keeps_the_mask_unlike_the_others_out():
    labels = choose(crowd_and_outlier(MIN_MASKS), FITS["class_agnostic"], keep=3)
    chosen = sorted(labels)
    assert len(chosen) == 3 and MIN_MASKS not in chosen
    assert all(set(v) == {"legs"} for v in labels.values())
    # Masks are handed on unchanged.
    assert np.array_equal(labels[chosen[0]]["legs"], crowd_and_outlier(MIN_MASKS)["legs"][chosen[0]][2])


def test_without_a_collection_step_the_one_pass_score_decides():
    # The packaged model's fit has no collection step; a small run has too few masks for one.
    assert sorted(choose(crowd_and_outlier(MIN_MASKS), FITS["beetle_parts"], keep=1)) == [MIN_MASKS]
    assert sorted(choose(crowd_and_outlier(MIN_MASKS - 2), FITS["class_agnostic"], keep=1)) == [MIN_MASKS - 2]


def test_a_mask_whose_palindrome_does_not_close_is_never_a_pseudo_label():
    found = crowd_and_outlier(MIN_MASKS)
    found["legs"][MIN_MASKS][1]["palindrome"] = MIN_CYCLE - 0.01  # the best one-pass signals
    assert MIN_MASKS not in choose(found, FITS["beetle_parts"], keep=1)
    for i in range(MIN_MASKS):
        found["legs"][i] = (i, {**found["legs"][i][1], "palindrome": 0.0}, found["legs"][i][2])
    assert choose(found, FITS["beetle_parts"], keep=3) == {}  # none closes: nothing to learn from


def test_packed_labels_round_trip():
    labels = {
        3: {"head": square(5, 7, 9, 48), "legs": np.zeros((48, 48), bool)},
        0: {"head": np.ones((48, 48), bool)},
    }
    back = unpack_labels(pack_labels(labels), 48)
    assert back.keys() == labels.keys()
    for i in labels:
        assert back[i].keys() == labels[i].keys()
        for name in labels[i]:
            assert back[i][name].dtype == bool and np.array_equal(back[i][name], labels[i][name])
    assert pack_labels(None) is None and unpack_labels(None, 48) is None


def test_loss_counts_only_the_structures_that_have_a_pseudo_label():
    logits = torch.zeros(3, 1, 16, 16, requires_grad=True)
    valid = torch.ones(16, 16, dtype=torch.bool)
    assert pseudo_label_loss(logits, ["a", "b", "c"], {"z": np.ones((16, 16), bool)}, valid) is None
    loss = pseudo_label_loss(logits, ["a", "b", "c"], {"b": np.ones((16, 16), bool)}, valid)
    loss.backward()
    moved = logits.grad.flatten(1).abs().sum(1)
    assert moved[1] > 0 and moved[0] == 0 and moved[2] == 0


def _pool(seeds):
    return [prepare_image(make_specimen(s, (112, 128))[0], 128, source=f"u{s}.png") for s in seeds]


def _present_model():
    model = build_model(MINI_CONFIG, image_size=128, seed=0)
    set_object_score_bias(model, 3.0)
    return model


def test_select_keeps_a_share_of_the_images_per_structure_on_their_real_pixels():
    model = _present_model()
    template = make_template("t0", seed=0, size=(120, 128))
    pool = _pool(range(30, 40))
    training = [(m, m.training) for m in model.sam.modules()]
    encoder = FeatureEncoder(model)
    # A random model closes no palindrome: by default nothing is trusted.
    assert select_pseudo_labels(model, [template], pool, encoder, fraction=0.25) == {}
    labels = select_pseudo_labels(model, [template], pool, encoder, fraction=0.25, min_cycle=0.0)
    assert [(m, m.training) for m in model.sam.modules()] == training  # flags left as they were
    per_structure = {}
    for index, masks in labels.items():
        assert 0 <= index < len(pool)
        for name, mask in masks.items():
            per_structure[name] = per_structure.get(name, 0) + 1
            assert mask.shape == (128, 128) and mask.any()
            assert not (mask & ~pool[index].valid_mask()).any()  # never on the letterbox padding
    assert per_structure and set(per_structure) <= set(template.structures)
    assert all(1 <= n <= 3 for n in per_structure.values())  # ceil(0.25 * 10)


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_training_with_pseudo_labels_remakes_them_and_resumes_exactly(tmp_path):
    template = make_template("t0", seed=0, size=(120, 128))
    config = TrainConfig(
        steps=5,
        validate_every=0,
        seed=4,
        pseudo_every=2,
        pseudo_fraction=0.5,
        pseudo_min_cycle=0.0,
        loss=LossWeights(pseudo=1.0),
    )  # a random model's cycles do not close
    said = []
    train(
        _present_model(), [template], _pool(range(50, 58)), tmp_path / "straight", config, log_fn=said.append
    )
    made = [m for m in said if "pseudo-label" in m]
    assert [m.split(":")[0] for m in made] == ["step 0", "step 2", "step 4"]
    timed = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in timed if "pseudo_seconds" in e] == [1, 3, 5]  # the remake's cost is logged
    assert any(e["pseudo"] > 0 for e in timed)  # and the term's own value, apart from the palindrome's
    # The term changes what is learned.
    plain = TrainConfig(steps=5, validate_every=0, seed=4, loss=LossWeights(pseudo=0.0))
    train(_present_model(), [template], _pool(range(50, 58)), tmp_path / "plain", plain)
    assert _losses(tmp_path / "plain") != _losses(tmp_path / "straight")

    # Cancelled after step 3 (labels of step 2) and resumed: the same losses as without a stop.
    cancel = CancelToken()

    def stop(p):
        if p.stage == "train" and p.done == 3:
            cancel.cancel()

    part = train(_present_model(), [template], _pool(range(50, 58)), tmp_path / "split", config,
                 progress=stop, cancel=cancel)
    assert part.cancelled and part.steps_done == 3
    train(_present_model(), [template], _pool(range(50, 58)), tmp_path / "split", config, resume=True)
    assert _losses(tmp_path / "split") == _losses(tmp_path / "straight")


def test_a_cancel_stops_the_remake_between_batches():
    model = _present_model()
    cancel = CancelToken()
    cancel.cancel()
    assert select_pseudo_labels(model, [make_template("t0", seed=0, size=(120, 128))], _pool(range(30, 33)),
                                FeatureEncoder(model), fraction=0.5, cancel=cancel) is None


def test_on_by_default_and_off_with_weight_zero(tmp_path):
    assert TrainConfig().loss.pseudo > 0 and TrainConfig().pseudo_templates > 0
    # On by default; a random model closes no palindrome, so it is given nothing to learn from.
    said = []
    train(
        _present_model(),
        [make_template("t0", seed=0, size=(120, 128))],
        _pool(range(50, 53)),
        tmp_path / "on",
        TrainConfig(steps=1, validate_every=0),
        log_fn=said.append,
    )
    assert any("none new" in m and "palindromes alone" in m for m in said)
    said = []
    train(
        _present_model(),
        [make_template("t0", seed=0, size=(120, 128))],
        _pool(range(50, 53)),
        tmp_path / "off",
        TrainConfig(steps=2, validate_every=0, loss=LossWeights(pseudo=0.0)),
        log_fn=said.append,
    )
    assert not any("pseudo-label" in m for m in said)
    assert not any(
        "pseudo_seconds" in line for line in (tmp_path / "off" / "log.jsonl").read_text().splitlines()
    )


def test_round_trips_computed_only_where_the_choice_reaches_choose_what_computing_all_would(monkeypatch):
    from descriptron_sam2pal.engine import pseudo_labels
    from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, palindrome_confidence_on_grid
    from descriptron_sam2pal.engine.pseudo_labels import pool_templates, predict_masks
    from descriptron_sam2pal.engine.review_score import fit_for

    model = _present_model()
    template = make_template("t0", seed=0, size=(120, 128))
    pool = _pool(range(30, 42))
    encoder = FeatureEncoder(model)
    fit = FITS[fit_for(model.checkpoint_hash)]
    first = predict_masks(model, [template], pool, encoder)  # every round trip computed
    cycles = sorted(s["palindrome"] for items in first.values() for _, s, _ in items)
    half = len(cycles) // 2  # about half of the masks close, none near the line: the gate decides
    above = [c for c in cycles[half:] if c - cycles[half - 1] > 0.02]
    min_cycle = (cycles[half - 1] + above[0]) / 2
    extra = pool_templates(first, pool, fit, 2, min_cycle)
    again = predict_masks(model, [template] + extra, pool, encoder, confidence=False)
    memory = TemplateMemory(model, [template], encoder)
    for name, items in again.items():  # every round trip, back to the person's template
        for index, signals, mask in items:
            signals["palindrome"] = palindrome_confidence_on_grid(memory, encoder.encode([pool[index]])[0],
                                                                  {name: mask})[name]
    eager = pseudo_labels.choose(again, fit, 3, min_cycle)

    calls = []
    real = pseudo_labels.palindrome_confidence_on_grid

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(pseudo_labels, "palindrome_confidence_on_grid", counting)
    monkeypatch.setattr(pseudo_labels, "TRIES", 1000)  # no bound: the very choice computing all makes
    lazy = select_pseudo_labels(model, [template], pool, encoder, fraction=3 / len(pool), from_pool=2,
                                min_cycle=min_cycle)
    assert eager and lazy.keys() == eager.keys()
    for index in eager:
        assert lazy[index].keys() == eager[index].keys()
        for name in eager[index]:
            assert np.array_equal(lazy[index][name], eager[index][name])
    masks = sum(len(items) for items in first.values()) + sum(len(items) for items in again.values())
    assert len(calls) < masks  # not every mask's round trip was needed

    # With the default bound, at most TRIES x keep masks of a structure are tried per choice.
    calls.clear()
    monkeypatch.setattr(pseudo_labels, "TRIES", 2)
    select_pseudo_labels(model, [template], pool, encoder, fraction=3 / len(pool), from_pool=2,
                         min_cycle=min_cycle)
    structures = len(template.structures)
    assert len(calls) <= structures * 2 * (2 + 3)  # pool choice (keep 2) and the labels (keep 3)


def test_remakes_go_round_the_pool_in_windows_and_keep_the_labels_made_outside_them(tmp_path, monkeypatch):
    from descriptron_sam2pal.engine import trainer as trainer_module

    windows = []

    def spy(model, templates, images, encoder, fraction, *args):
        windows.append([im.source for im in images])
        first = templates[0].structures[0]
        return {i: {first: np.ones((128, 128), bool)} for i in range(len(images))}  # every image

    monkeypatch.setattr(trainer_module, "MAX_IMAGES", 2)
    monkeypatch.setattr(trainer_module, "select_pseudo_labels", spy)
    said = []
    pool = _pool(range(60, 65))
    train(_present_model(), [make_template("t0", seed=0, size=(120, 128))], pool, tmp_path / "run",
          TrainConfig(steps=3, validate_every=0, pseudo_every=1), log_fn=said.append)
    assert [len(w) for w in windows] == [2, 2, 2]
    assert len({name for w in windows for name in w}) == 5  # round the pool, not one subset again
    assert any("on 2 of 5" in m and "4 in all" in m for m in said)  # the first window's labels are kept


def test_remakes_and_validation_decode_one_image_at_a_time_on_the_cpu(monkeypatch):
    """On the CPU a batch of 16 images through memory attention held 1.9 GB more at 512 px and
    was slower; the remake and the held-out validation take propagation's batch size (1 there)
    and find the same masks as one batch of every image."""
    from descriptron_sam2pal.engine import checkpoint_choice, memory_propagation, pseudo_labels
    from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, predict_prepared
    from tests.helpers.recording import record_calls

    model = _present_model()
    template = make_template("t0", seed=0, size=(120, 128))
    pool = _pool(range(30, 36))
    encoder = FeatureEncoder(model)
    calls = record_calls(monkeypatch, memory_propagation, "predict_prepared")
    found = pseudo_labels.predict_masks(model, [template], pool, encoder, confidence=False)
    assert [len(args[1]) for args in calls] == [1] * len(pool)
    together = predict_prepared(TemplateMemory(model, [template], encoder), pool, encoder.encode(pool),
                                confidence=False)
    for name, items in found.items():
        for index, _, mask in items:
            alone = (together[index][name].logits > 0) & pool[index].valid_mask()
            assert np.count_nonzero(alone != mask) <= 2, (name, index)

    held = record_calls(monkeypatch, memory_propagation, "predict_prepared")
    checkpoint_choice.held_out_masks(model, [template], pool[:3], encoder)
    assert [len(args[1]) for args in held] == [1, 1, 1]
