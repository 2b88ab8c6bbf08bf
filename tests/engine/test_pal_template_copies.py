"""Palindrome training options against template memorisation (issue 6): the backward half
reconstructs augmented copies of the template (``TrainConfig.template_versions``), and a
supervised term in the same step (``LossWeights.supervised``).

Real SAM2 code, the mini model at 128 px, synthetic specimens, CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from descriptron_sam2pal.engine import trainer
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.frames import encode_memory, make_frame
from descriptron_sam2pal.engine.palindrome import (LossWeights, augment_letterboxed, palindrome_step,
                                                   supervised_loss)
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.engine.trainer import TrainConfig, train
from tests.helpers.recording import record_calls
from tests.helpers.synthetic import SPECIMEN_STRUCTURES, make_specimen, make_template


def _copy(template, seed=0):
    names = template.structures
    return augment_letterboxed(template.image.pixels, template.model_masks(names), template.valid(),
                               np.random.RandomState(seed))


def test_augmented_copy_moves_image_and_masks_together():
    template = make_template("t0", seed=0, size=(120, 128))
    pixels, masks, valid = _copy(template)
    assert pixels.shape == template.image.pixels.shape and pixels.dtype == np.uint8
    assert masks.shape == (3, 128, 128) and valid.shape == (128, 128) and valid.dtype == torch.bool
    assert not np.array_equal(pixels, template.image.pixels)  # a different image to reconstruct
    assert (pixels[~valid.numpy()] == 0).all()  # padding stays padding
    assert not (masks.bool() & ~valid).any()  # no structure outside the real pixels
    # Each structure's mask still covers that structure's colour (the eye is near black, the
    # scape yellow): the image and the masks got the same transform.
    for i, name in enumerate(template.structures):
        colour = np.asarray(SPECIMEN_STRUCTURES[name][1], np.float32)
        inside = masks[i].numpy() > 0.5
        assert inside.sum() > 0.5 * template.model_masks([name]).sum()
        dist_in = np.abs(pixels[inside].astype(np.float32) - colour).mean()
        dist_out = np.abs(pixels[valid.numpy() & ~inside].astype(np.float32) - colour).mean()
        assert dist_in < 0.5 * dist_out, name
    # Seeded: the same seed gives the same copy, another seed another one.
    again, _, _ = _copy(template)
    other, _, _ = _copy(template, seed=1)
    assert np.array_equal(again, pixels) and not np.array_equal(other, pixels)


@pytest.fixture
def setup(present_model):
    mini_model = present_model  # the object-score head says "present": masks, not -1024 gates
    sam = mini_model.sam
    sam.train()
    sam.image_encoder.eval()
    template = make_template("t0", seed=0, size=(120, 128))
    pixels, masks, valid = _copy(template)
    target = prepare_image(make_specimen(1, size=(128, 112))[0], 128)
    f0, f_copy, f1 = FeatureEncoder(mini_model).encode([template.image, prepare_image(pixels, 128), target])
    names = template.structures
    return (
        sam,
        template,
        (sam, f0, template.model_masks(names), template.valid(), f1),
        (f_copy, masks, valid),
        f0,
    )


def test_backward_half_reconstructs_the_copy(setup, monkeypatch):
    sam, template, args, recon, f0 = setup
    torch.manual_seed(0)
    plain = palindrome_step(*args, LossWeights())
    torch.manual_seed(0)
    # The template itself given as the reconstruction target is the default palindrome exactly.
    same = palindrome_step(*args, LossWeights(), recon=(f0, args[2], args[3]))
    assert same.loss.item() == pytest.approx(plain.loss.item(), rel=1e-5)
    torch.manual_seed(0)
    out = palindrome_step(*args, LossWeights(), recon=recon)
    assert out.loss.item() != pytest.approx(plain.loss.item(), rel=1e-3)
    # x1 is still predicted from the real template: the forward half is unchanged.
    assert torch.allclose(out.target_logits, plain.target_logits, atol=1e-5)
    assert not torch.allclose(out.cycle_logits, plain.cycle_logits, atol=1e-3)
    with pytest.raises(ValueError, match="same objects"):
        palindrome_step(*args, LossWeights(), recon=(recon[0], recon[1][:2], recon[2]))


def test_structure_pushed_off_the_copy_is_scored_absent(setup):
    sam, template, args, (f_copy, masks, valid), f0 = setup
    masks = masks.clone()
    masks[1] = 0  # the eye left the canvas
    torch.manual_seed(0)
    out = palindrome_step(*args, LossWeights(bce=0, dice=0, iou=0), recon=(f_copy, masks, valid))
    # presence per object: BCE towards present for 0 and 2, absent for 1 (so it flips with the sign).
    torch.manual_seed(0)
    both = palindrome_step(
        *args, LossWeights(bce=0, dice=0, iou=0), recon=(f_copy, _copy(template)[1], valid)
    )
    assert out.presence[0].item() == pytest.approx(both.presence[0].item(), rel=1e-5)
    assert out.presence[1].item() != pytest.approx(both.presence[1].item(), rel=1e-3)


def test_supervised_term_adds_template_supervision_with_gradient(setup):
    sam, template, args, recon, f0 = setup
    torch.manual_seed(0)
    without = palindrome_step(*args, LossWeights(), recon=recon).loss
    torch.manual_seed(0)
    with_sup = palindrome_step(*args, LossWeights(supervised=1.0), recon=recon).loss
    torch.manual_seed(0)
    k = args[2].shape[0]
    m0 = encode_memory(sam, make_frame(sam, [f0], k), args[2][:, None])
    term = supervised_loss(sam, m0, make_frame(sam, [recon[0]], k), recon[1], recon[2])
    assert term.item() > 0
    assert with_sup.item() == pytest.approx(without.item() + term.item(), rel=1e-4)
    sam.zero_grad(set_to_none=True)
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sam.sam_mask_decoder.parameters())


def _pool(seeds=(10, 11, 12)):
    return [prepare_image(make_specimen(s, (128, 104))[0], 128, source=f"unlabeled-{s}.png") for s in seeds]


def test_trainer_reconstructs_training_copies_and_validation_reads_no_copy(mini_model, tmp_path, monkeypatch):
    """Training palindromes reconstruct the copies; the one-template validation (the held-out
    review score since issue 25, engine.checkpoint_choice) runs no palindrome, so no copy is held
    out for it."""
    seen = []
    real = trainer.palindrome_step

    def spy(*args, recon=None, **kwargs):
        seen.append((torch.is_grad_enabled(), None if recon is None else recon[1]))
        return real(*args, recon=recon, **kwargs)

    monkeypatch.setattr(trainer, "palindrome_step", spy)
    template = make_template("t0", seed=0, size=(120, 128))
    result = train(mini_model, [template], _pool(), tmp_path / "run",
                   TrainConfig(steps=6, validate_every=3, val_images=1, template_versions=2, seed=1,
                               objects_per_pass=99))
    assert result.steps_done == 6 and result.val_metric == "pool_score"
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    copies = [p["copy"] for e in lines for p in e["pairs"]]
    assert set(copies) <= {0, 1} and len(set(copies)) == 2  # both training copies are used
    train_masks = [m for grad, m in seen if grad]
    assert len(train_masks) == 6 and len(seen) == 6  # validation ran no palindrome
    assert all(m is not None for m in train_masks)  # never the template itself
    # 1 template + 2 copies + 3 unlabeled images, each through the encoder once.
    assert result.encoder_passes == 6
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["config"]["template_versions"] == 2


def test_template_copies_are_seeded_and_change_training(tmp_path):
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    template = make_template("t0", seed=0, size=(120, 128))

    def losses(name, **kw):
        train(build_model(MINI_CONFIG, image_size=128, seed=0), [template], _pool(), tmp_path / name,
              TrainConfig(steps=3, validate_every=0, seed=2, **kw))
        return [json.loads(x)["loss"] for x in (tmp_path / name / "log.jsonl").read_text().splitlines()]

    a, b, plain = losses("a", template_versions=3), losses("b", template_versions=3), losses("plain")
    assert a == b
    assert a != plain
    with pytest.raises(Exception, match="template_versions"):
        TrainConfig(template_versions=-1).check()


def test_overlap_loss_counts_only_pairs_disjoint_on_the_template():
    from descriptron_sam2pal.engine.palindrome import disjoint_pairs, overlap_loss

    masks = torch.zeros(3, 8, 8)
    masks[0, :4] = 1  # top half
    masks[1, 4:] = 1  # bottom half: disjoint from 0
    masks[2, 2:6] = 1  # middle: overlaps both
    pairs = disjoint_pairs(masks)
    assert pairs.tolist() == [[False, True, False], [False, False, False], [False, False, False]]
    big = 30.0
    same = torch.full((3, 1, 8, 8), -big)
    same[0, 0, :4] = big
    same[1, 0, :4] = big  # object 1 predicted on object 0's place
    assert overlap_loss(same, pairs).item() == pytest.approx(1.0, abs=1e-4)
    apart = torch.full((3, 1, 8, 8), -big)
    apart[0, 0, :4] = big
    apart[1, 0, 4:] = big
    apart[2, 0] = big  # object 2 overlaps everything, but it overlaps on the template too
    assert overlap_loss(apart, pairs).item() == pytest.approx(0.0, abs=1e-4)


def test_overlap_term_on_the_target_prediction_trains(setup):
    from descriptron_sam2pal.engine.palindrome import disjoint_pairs, overlap_loss

    sam, template, args, recon, f0 = setup
    torch.manual_seed(0)
    without = palindrome_step(*args, LossWeights())
    torch.manual_seed(0)
    with_term = palindrome_step(*args, LossWeights(overlap=2.0))
    term = overlap_loss(without.target_logits, disjoint_pairs(args[2]))
    assert term.item() > 0  # a random model's structures overlap on x1
    assert with_term.loss.item() == pytest.approx(without.loss.item() + 2.0 * term.item(), rel=1e-4)
    sam.zero_grad(set_to_none=True)
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sam.sam_mask_decoder.parameters())


def test_overlap_with_rank_moves_only_the_lower_ranked_structure():
    from descriptron_sam2pal.engine.palindrome import disjoint_pairs, overlap_loss

    masks = torch.zeros(2, 8, 8)
    masks[0, :4] = 1
    masks[1, 4:] = 1
    pairs = disjoint_pairs(masks)
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)  # both at p = 0.5 everywhere: overlap
    for rank, moved in (([0.9, 0.1], 1), ([0.1, 0.9], 0)):
        logits.grad = None
        loss = overlap_loss(logits, pairs, torch.tensor(rank))
        assert loss.item() == pytest.approx(overlap_loss(logits, pairs).item(), rel=1e-5)
        loss.backward()
        assert logits.grad[moved].abs().sum() > 0
        assert logits.grad[1 - moved].abs().sum() == 0
    logits.grad = None
    overlap_loss(logits, pairs).backward()
    assert (logits.grad.flatten(1).abs().sum(1) > 0).all()  # without rank both move


def test_hard_feedback_feeds_thresholded_masks_and_cuts_the_forward_gradient(setup, monkeypatch):
    from descriptron_sam2pal.engine import palindrome

    sam, template, args, recon, f0 = setup
    calls = record_calls(monkeypatch, palindrome, "encode_memory")  # (sam, frame, masks)
    for hard in (False, True):
        calls.clear()
        out = palindrome_step(*args, LossWeights(hard_feedback=hard))
        feedback = calls[1][2]  # [M0's masks, M1's masks]
        grad = torch.autograd.grad(out.loss, out.target_logits, allow_unused=True)[0]
        if hard:
            assert set(feedback.unique().tolist()) <= {0.0, 1.0}
            assert torch.equal(feedback, (out.target_logits.detach() > 0).float())
            assert grad is None or grad.abs().sum() == 0
        else:
            assert torch.allclose(feedback, torch.sigmoid(out.target_logits.detach()))
            assert grad is not None and grad.abs().sum() > 0


def test_cycle_weighting_scales_each_object_by_its_cycle_iou(setup):
    sam, template, args, recon, f0 = setup
    torch.manual_seed(0)
    plain = palindrome_step(*args, LossWeights())
    torch.manual_seed(0)
    weighted = palindrome_step(*args, LossWeights(cycle_weighted=True))
    assert 0 < plain.cycle_iou.max() < 1  # the weights are real fractions here
    per = plain.bce + plain.dice + plain.presence + plain.iou_error
    expected = float((per * plain.cycle_iou).sum())
    assert weighted.loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert expected != pytest.approx(plain.loss.item(), rel=1e-3)


def test_resume_with_template_copies_reproduces_the_uninterrupted_run(tmp_path):
    from descriptron_sam2pal.engine.control import CancelToken
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    template = make_template("t0", seed=0, size=(120, 128))
    config = TrainConfig(steps=4, validate_every=2, val_images=1, seed=5, template_versions=3)

    def log(name):
        return [(e["loss"], [p["copy"] for p in e["pairs"]])
                for e in map(json.loads, (tmp_path / name / "log.jsonl").read_text().splitlines())]

    train(
        build_model(MINI_CONFIG, image_size=128, seed=0), [template], _pool(), tmp_path / "straight", config
    )
    cancel = CancelToken()
    train(build_model(MINI_CONFIG, image_size=128, seed=0), [template], _pool(), tmp_path / "split", config,
          progress=lambda p: cancel.cancel() if p.done == 2 else None, cancel=cancel)
    train(build_model(MINI_CONFIG, image_size=128, seed=0), [template], _pool(), tmp_path / "split", config,
          resume=True)
    assert log("split") == log("straight")
