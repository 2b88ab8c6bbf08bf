"""LoRA (peft) and full fine-tuning: what trains, what is saved, no double wrapping."""

import pytest
import torch
from peft.tuners.lora import LoraLayer
from torch import nn

from descriptron_sam2pal import UserError
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model
from descriptron_sam2pal.model.lora import (apply_lora, enable_full_finetune, finetune_mode,
                                            load_trainable_state, lora_settings, lora_target_names,
                                            trainable_parameters, trainable_state_dict)


@pytest.fixture
def model(mini_checkpoint):
    return build_model(MINI_CONFIG, mini_checkpoint, image_size=128)


def _two_frame_outputs(sam):
    """Frame 0 conditioned on a mask (memory encoder), frame 1 attends to it
    (memory attention, mask decoder): the path palindrome training uses."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 128, 128)
    _, feats, pos, sizes = sam._prepare_backbone_features(sam.forward_image(image))
    mask = torch.zeros(1, 1, 128, 128)
    mask[..., 30:90, 30:90] = 1
    memory = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    common = dict(current_vision_feats=feats, current_vision_pos_embeds=pos, feat_sizes=sizes,
                  point_inputs=None, output_dict=memory, num_frames=2)
    memory["cond_frame_outputs"][0] = sam.track_step(frame_idx=0, is_init_cond_frame=True,
                                                     mask_inputs=mask, **common)
    return sam.track_step(frame_idx=1, is_init_cond_frame=False, mask_inputs=None, **common)


def _randomize_lora(sam, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sam.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)


def test_lora_targets_and_frozen_parameters(model):
    sam = apply_lora(model.sam, rank=4)
    targets = lora_target_names(sam)
    assert "memory_attention.layers.0.cross_attn_image.k_proj" in targets  # RoPEAttention
    assert "memory_encoder.fuser.layers.0.pwconv1" in targets
    assert "sam_mask_decoder.output_hypernetworks_mlps.0.layers.2" in targets
    assert all(t.split(".")[0] in ("memory_attention", "memory_encoder", "sam_mask_decoder") for t in targets)
    wrapped = [n for n, m in sam.named_modules() if isinstance(m, LoraLayer)]
    assert sorted(wrapped) == sorted(targets)
    trainable = [n for n, p in sam.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert not any(p.requires_grad for p in sam.image_encoder.parameters())
    assert not any(isinstance(m, LoraLayer) for m in sam.image_encoder.modules())
    assert not sam.sam_mask_decoder.conv_s0.weight.requires_grad
    assert len(trainable_parameters(sam)) == len(trainable)
    assert lora_settings(sam) == {"rank": 4, "alpha": 4.0, "dropout": 0.0, "targets": targets}


def test_fresh_lora_does_not_change_outputs(model, mini_checkpoint):
    plain = build_model(MINI_CONFIG, mini_checkpoint, image_size=128)
    apply_lora(model.sam, rank=4)
    with torch.no_grad():
        a, b = _two_frame_outputs(plain.sam), _two_frame_outputs(model.sam)
    assert torch.allclose(a["pred_masks"], b["pred_masks"], atol=1e-5)


def test_gradients_reach_lora_weights_only(model):
    sam = apply_lora(model.sam, rank=4)
    out = _two_frame_outputs(sam)
    (out["object_score_logits"].sum() + out["pred_masks_high_res"].sum()).backward()
    grads = {n: p.grad for n, p in sam.named_parameters() if p.grad is not None}
    assert all("lora_" in n for n in grads)

    def reached(prefix):
        return [n for n, g in grads.items() if n.startswith(prefix) and "lora_B" in n and g.abs().sum() > 0]

    assert len(reached("memory_attention.")) == 10  # every LoRA layer of the mini's one layer
    assert len(reached("memory_encoder.")) == 2
    assert reached("sam_mask_decoder.transformer.") and reached("sam_mask_decoder.pred_obj_score_head.")


def test_lora_state_is_small_and_round_trips(model, mini_checkpoint):
    sam = apply_lora(model.sam, rank=4)
    _randomize_lora(sam)
    state = trainable_state_dict(sam)
    assert state and all("lora_" in k for k in state)
    assert all(v.device.type == "cpu" for v in state.values())
    assert sum(v.numel() for v in state.values()) < 0.05 * sum(p.numel() for p in sam.parameters())
    other = apply_lora(build_model(MINI_CONFIG, mini_checkpoint, image_size=128).sam, rank=4)
    load_trainable_state(other, state)
    with torch.no_grad():
        a, b = _two_frame_outputs(sam), _two_frame_outputs(other)
    assert torch.equal(a["pred_masks"], b["pred_masks"])
    assert torch.equal(a["object_score_logits"], b["object_score_logits"])


def test_preparing_twice_is_refused(model):
    sam = apply_lora(model.sam, rank=4)
    with pytest.raises(RuntimeError, match="already prepared for lora"):
        apply_lora(sam, rank=4)
    with pytest.raises(RuntimeError, match="already prepared"):
        enable_full_finetune(sam)
    # The layers were wrapped once: a LoRA layer's base is a plain Linear.
    base = sam.memory_attention.layers[0].self_attn.q_proj.base_layer
    assert type(base) is nn.Linear


def test_bad_lora_arguments(model):
    with pytest.raises(UserError, match="rank must be at least 1"):
        apply_lora(model.sam, rank=0)
    with pytest.raises(UserError, match="dropout"):
        apply_lora(model.sam, dropout=1.5)
    assert finetune_mode(model.sam) is None


def test_full_finetune_trains_memory_and_decoder_not_encoders(model, mini_checkpoint):
    sam = enable_full_finetune(model.sam)
    assert finetune_mode(sam) == "full"
    trainable = {n for n, p in sam.named_parameters() if p.requires_grad}
    for name in ("sam_mask_decoder.conv_s0.weight", "memory_encoder.out_proj.weight",
                 "memory_attention.layers.0.self_attn.q_proj.weight", "obj_ptr_proj.layers.0.weight",
                 "obj_ptr_tpos_proj.weight", "maskmem_tpos_enc", "no_mem_embed", "no_obj_embed_spatial"):
        assert name in trainable
    assert not any(n.startswith(("image_encoder.", "sam_prompt_encoder.", "mask_downsample."))
                   for n in trainable)
    state = trainable_state_dict(sam)
    assert set(state) >= trainable
    with torch.no_grad():
        for param in sam.parameters():
            if param.requires_grad:
                param.add_(0.01)
    other = enable_full_finetune(build_model(MINI_CONFIG, mini_checkpoint, image_size=128).sam)
    load_trainable_state(other, trainable_state_dict(sam))
    with torch.no_grad():
        assert torch.equal(_two_frame_outputs(sam)["pred_masks"], _two_frame_outputs(other)["pred_masks"])


def test_state_that_does_not_fit_is_refused(model):
    sam = apply_lora(model.sam, rank=4)
    state = trainable_state_dict(sam)
    key = next(iter(state))
    with pytest.raises(UserError, match="1 missing"):
        load_trainable_state(sam, {k: v for k, v in state.items() if k != key})
    with pytest.raises(UserError, match="of the wrong shape"):
        load_trainable_state(sam, {**state, key: torch.zeros(1)})
    with pytest.raises(UserError, match="1 unexpected"):
        load_trainable_state(sam, {**state, "image_encoder.trunk.pos_embed": torch.zeros(1)})
