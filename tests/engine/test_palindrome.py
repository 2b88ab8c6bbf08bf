"""The palindrome step: gradients, differentiable feedback, real memory reset, presence loss.

Real SAM2 code, the 2.2M-parameter mini model at 128 px, synthetic specimens, CPU.
"""

from __future__ import annotations

import pytest
import torch

from descriptron_sam2pal.engine import palindrome
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.frames import make_frame
from descriptron_sam2pal.engine.palindrome import LossWeights, palindrome_step
from descriptron_sam2pal.engine.preprocess import prepare_image
from descriptron_sam2pal.model.lora import apply_lora
from tests.helpers.synthetic import make_specimen, make_template


def _force_presence(sam, present: bool) -> None:
    """Make the object-score head say "present" (or "absent") for every object."""
    with torch.no_grad():
        sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0 if present else -20.0)


def _train_mode(sam) -> None:
    sam.train()
    sam.image_encoder.eval()


@pytest.fixture
def pair(mini_model):
    """(model, template, template features, target features) with 3 structures."""
    template = make_template("t0", seed=0, size=(120, 128))
    target = prepare_image(make_specimen(1, size=(128, 112))[0], 128)
    encoder = FeatureEncoder(mini_model)
    feats0, feats1 = encoder.encode([template.image, target])
    return mini_model, template, feats0, feats1


def _step(model, template, feats0, feats1, weights=None):
    weights = LossWeights() if weights is None else weights
    names = template.structures
    return palindrome_step(model.sam, feats0, template.model_masks(names), template.valid(), feats1, weights)


class _Recorder:
    """Forward hooks keeping every output tensor of a module (grad retained), call by call."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls: list[list[torch.Tensor]] = []
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        outs = output if isinstance(output, (tuple, list)) else [output]
        kept = [t for t in outs if isinstance(t, torch.Tensor) and t.requires_grad]
        for t in kept:
            t.retain_grad()
        self.calls.append(kept)

    def grad_norms(self) -> list[float]:
        return [sum(float(t.grad.abs().sum()) if t.grad is not None else 0.0 for t in call)
                for call in self.calls]

    def remove(self) -> None:
        self._handle.remove()


def test_gradients_reach_lora_weights_of_all_three_modules_through_all_four_frames(pair):
    model, template, feats0, feats1 = pair
    sam = model.sam
    _force_presence(sam, True)
    apply_lora(sam, rank=4, alpha=8)
    _train_mode(sam)
    mem_enc = _Recorder(sam.memory_encoder.fuser)
    mem_att = _Recorder(sam.memory_attention)
    decoder = _Recorder(sam.sam_mask_decoder)
    out = _step(model, template, feats0, feats1)
    out.loss.backward()
    for rec in (mem_enc, mem_att, decoder):
        rec.remove()

    # Memory encoder runs on x0 (-> M0) and x1+ (-> M1); memory attention on x1
    # and x0+; the mask decoder on all four frames (for the conditioning frames
    # it makes the object pointer). Every one of those calls must get gradient.
    assert len(mem_enc.calls) == 2 and len(mem_att.calls) == 2 and len(decoder.calls) == 4
    for name, rec in (("memory encoder", mem_enc), ("memory attention", mem_att), ("mask decoder", decoder)):
        norms = rec.grad_norms()
        assert all(n > 0 for n in norms), f"{name}: a frame got no gradient {norms}"

    # And the LoRA weights (B starts at zero, so B gets the first gradient) of each module.
    # In the decoder, by SAM2's design some layers get none: the IoU head (only
    # used by argmax to pick one of the multimask outputs), the hypernetworks of
    # the unpicked masks, and here the object-score head (saturated at +20 above).
    no_grad_expected = ("iou_prediction_head", "output_hypernetworks_mlps", "pred_obj_score_head")
    for module in ("memory_attention", "memory_encoder", "sam_mask_decoder"):
        lora_b = {n: p.grad for n, p in sam.named_parameters() if n.startswith(module) and "lora_B" in n}
        assert lora_b, module
        with_grad = {n for n, g in lora_b.items() if g is not None and float(g.abs().sum()) > 0}
        missing = [n for n in lora_b if n not in with_grad and not any(e in n for e in no_grad_expected)]
        assert missing == [], f"LoRA layers without gradient: {missing}"
    assert any("output_hypernetworks_mlps" in n for n in with_grad)
    frozen = [n for n, p in sam.named_parameters() if "lora_" not in n and p.grad is not None]
    assert frozen == []


def test_feedback_through_soft_target_masks_is_differentiable(pair, monkeypatch):
    """M0 can influence the loss only through x1's predicted masks (L1 -> sigmoid -> M1).

    So a non-zero gradient at M0 proves the soft feedback carries gradient; with
    the feedback detached the same measurement is exactly zero (the check is real).
    """
    model, template, feats0, feats1 = pair
    sam = model.sam
    _force_presence(sam, True)
    _train_mode(sam)

    def m0_gradient() -> float:
        rec = _Recorder(sam.memory_encoder.fuser)
        out = _step(model, template, feats0, feats1)
        d_l1 = torch.autograd.grad(out.loss, out.target_logits, retain_graph=True, allow_unused=True)[0]
        out.loss.backward()
        rec.remove()
        first_memory = rec.grad_norms()[0]
        return first_memory, 0.0 if d_l1 is None else float(d_l1.abs().sum())

    m0_grad, l1_grad = m0_gradient()
    assert l1_grad > 0, "the loss does not depend on x1's predicted mask logits"
    assert m0_grad > 0, "no gradient reached the template memory M0 through x1's prediction"

    sam.zero_grad()
    real_encode = palindrome.encode_memory
    monkeypatch.setattr(palindrome, "encode_memory", lambda s, f, m: real_encode(s, f, m.detach()))
    detached_m0_grad, detached_l1_grad = m0_gradient()
    assert detached_m0_grad == 0.0 and detached_l1_grad == 0.0


def test_memory_reset_phase_two_cannot_see_the_template_ground_truth(pair, monkeypatch):
    """Hold x1's predicted masks fixed; then the template's ground truth must not change x0+.

    The same measurement with M0 leaked into phase 2 does change: the test would
    catch a palindrome that forgot to reset the memory.
    """
    model, template, feats0, feats1 = pair
    sam = model.sam
    _force_presence(sam, True)
    sam.eval()  # no dropout: the two runs must be comparable
    names = template.structures
    masks_a = template.model_masks(names)
    masks_b = torch.roll(masks_a, shifts=(9, -13), dims=(1, 2))  # other, wrong ground truth
    assert not torch.equal(masks_a, masks_b)
    valid = template.valid()
    real_predict, real_encode = palindrome.predict_from_memory, palindrome.encode_memory
    with torch.no_grad():
        fixed_p1 = real_predict(sam, make_frame(sam, [feats1], len(names)),
                                [real_encode(sam, make_frame(sam, [feats0], len(names)), masks_a[:, None])])

    def cycle_logits(masks, leak: bool) -> torch.Tensor:
        calls = {"predict": 0}
        memories = []

        def encode(s, frame, m):
            memories.append(real_encode(s, frame, m))
            return memories[-1]

        def predict(s, frame, mems):
            calls["predict"] += 1
            if calls["predict"] == 1:
                return fixed_p1  # phase 1: x1's prediction held fixed
            return real_predict(s, frame, mems + [memories[0]] if leak else mems)

        monkeypatch.setattr(palindrome, "encode_memory", encode)
        monkeypatch.setattr(palindrome, "predict_from_memory", predict)
        with torch.no_grad():
            out = palindrome_step(sam, feats0, masks, valid, feats1)
        assert calls["predict"] == 2
        return out.cycle_logits

    assert torch.equal(cycle_logits(masks_a, leak=False), cycle_logits(masks_b, leak=False))
    leaked_a, leaked_b = cycle_logits(masks_a, leak=True), cycle_logits(masks_b, leak=True)
    # Without the leak the outputs are bit-identical, so any difference is the template
    # ground truth showing through (small with random weights, but far above rounding).
    assert (leaked_a - leaked_b).abs().max() > 1e-6


def test_presence_loss_gives_gradient_when_objects_are_gated_to_no_object(pair):
    """Objects scored absent get -1024 logits (no mask gradient); the presence term still trains."""
    model, template, feats0, feats1 = pair
    sam = model.sam
    _force_presence(sam, False)
    _train_mode(sam)
    decoder = sam.sam_mask_decoder

    def decoder_grad(weights: LossWeights) -> float:
        sam.zero_grad()
        out = _step(model, template, feats0, feats1, weights)
        assert torch.all(out.cycle_logits == -1024.0)  # SAM2's NO_OBJ_SCORE
        out.loss.backward()
        return sum(float(p.grad.abs().sum()) for p in decoder.parameters() if p.grad is not None)

    # (the IoU-calibration term, which also reaches the decoder, is off here)
    assert decoder_grad(LossWeights(presence=0.0, iou=0.0)) == 0.0
    assert decoder_grad(LossWeights(presence=1.0, iou=0.0)) > 0.0


def test_iou_head_is_trained_towards_the_real_iou(mini_model):
    """The IoU head gets a gradient from the calibration term, and only with it."""

    from descriptron_sam2pal.engine.palindrome import LossWeights, palindrome_step
    from descriptron_sam2pal.model.lora import apply_lora

    from tests.helpers.synthetic import make_template

    sam = mini_model.sam
    apply_lora(sam, rank=2)
    sam.train()
    t0, t1 = make_template("a", seed=0), make_template("b", seed=1)
    from descriptron_sam2pal.engine.features import FeatureEncoder

    enc = FeatureEncoder(mini_model)
    f0, f1 = enc.encode([t0.image, t1.image])
    names = t0.structures
    head = [p for n, p in sam.sam_mask_decoder.iou_prediction_head.named_parameters() if "lora_B" in n]
    assert head

    def head_grad(weights):
        sam.zero_grad(set_to_none=True)
        out = palindrome_step(sam, f0, t0.model_masks(names), t0.valid(), f1, weights)
        out.loss.backward()
        assert out.iou_error.shape == (len(names),)
        return sum(float(p.grad.abs().sum()) for p in head if p.grad is not None)

    assert head_grad(LossWeights(iou=0.0)) == 0.0
    assert head_grad(LossWeights(iou=1.0)) > 0.0


def test_blank_memory_term_punishes_masks_that_ignore_the_memory(mini_model):
    """With `blank` on, x0 predicted from an empty memory of x1 adds a loss that trains."""
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.frames import make_frame
    from descriptron_sam2pal.engine.palindrome import LossWeights, blank_memory_loss, palindrome_step

    from tests.helpers.synthetic import make_template

    sam = mini_model.sam
    sam.train()
    t0, t1 = make_template("a", seed=0), make_template("b", seed=1)
    f0, f1 = FeatureEncoder(mini_model).encode([t0.image, t1.image])
    names = t0.structures
    args = (sam, f0, t0.model_masks(names), t0.valid(), f1)
    torch.manual_seed(0)
    without = palindrome_step(*args, LossWeights()).loss
    torch.manual_seed(0)
    with_blank = palindrome_step(*args, LossWeights(blank=1.0)).loss
    torch.manual_seed(0)
    term = blank_memory_loss(
        sam, make_frame(sam, [f0], len(names)), make_frame(sam, [f1], len(names)), t0.valid()
    )
    assert term.item() > 0
    assert with_blank.item() == pytest.approx(without.item() + term.item(), rel=1e-4)
    sam.zero_grad(set_to_none=True)
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sam.sam_mask_decoder.parameters())
