"""The two SAM2 video primitives every mode is built from.

* ``encode_memory``: an image with mask inputs as an *initial conditioning
  frame* -> its memory (mask memory features + object pointer).
* ``predict_from_memory``: an image as a *non-conditioning frame* attending to a
  given list of memories -> mask logits, predicted IoU, object score.

Each call builds its own SAM2 ``output_dict`` holding exactly the memories it
is given, so nothing can leak between calls: a memory reset is simply a new
call with a new list. We call ``SAM2Base._track_step`` and
``_encode_memory_in_output`` directly (not the video predictor, which runs under
``inference_mode`` and squashes images) so gradients flow when wanted.

Batch layout: ``n`` images x ``k`` objects -> batch ``n * k``, image-major
(row ``i * k + j`` is object ``j`` on image ``i``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from descriptron_sam2pal.engine.features import ImageFeatures, position_encodings


@dataclass
class Frame:
    """Flattened SAM2 features of images, repeated for their objects (SAM2's (HW, B, C) layout)."""

    vision_feats: list[torch.Tensor]
    vision_pos: list[torch.Tensor]
    feat_sizes: list[tuple[int, int]]

    @property
    def batch(self) -> int:
        return self.vision_feats[-1].shape[1]


@dataclass
class Prediction:
    """Outputs of ``predict_from_memory`` for a batch of objects."""

    low_res_logits: torch.Tensor  # (B, 1, S/4, S/4)
    logits: torch.Tensor  # (B, 1, S, S) mask logits at the model input size
    predicted_iou: torch.Tensor  # (B,) SAM2's IoU estimate for the chosen mask
    object_score_logits: torch.Tensor  # (B, 1); > 0 means "present"


def make_frame(sam, features: list[ImageFeatures], objects_per_image: int | list[int]) -> Frame:
    """Stack the features of ``features`` (one per image), each repeated for its objects.

    Applies the mask decoder's high-resolution convolutions when the cached
    features were stored before them (they are trainable then).
    """
    counts = [objects_per_image] * len(features) if isinstance(objects_per_image, int) else objects_per_image
    dtype = next(sam.sam_mask_decoder.parameters()).dtype
    levels_per_image = []
    for feats in features:
        levels = [t.to(dtype) for t in feats.levels]
        if not feats.projected and sam.use_high_res_features_in_sam:
            levels[0] = sam.sam_mask_decoder.conv_s0(levels[0])
            levels[1] = sam.sam_mask_decoder.conv_s1(levels[1])
        levels_per_image.append(levels)
    pos = [p.to(dtype) for p in position_encodings(sam, features[0])]
    n_levels = len(levels_per_image[0])
    batched = []
    for lv in range(n_levels):
        parts = [levels[lv].expand(c, -1, -1, -1) for levels, c in zip(levels_per_image, counts)]
        batched.append(torch.cat(parts, 0) if len(parts) > 1 else parts[0])
    total = sum(counts)
    pos = [p.expand(total, -1, -1, -1) for p in pos]
    # Same slicing as SAM2Base._prepare_backbone_features.
    batched = batched[-sam.num_feature_levels:]
    pos = pos[-sam.num_feature_levels:]
    feat_sizes = [(x.shape[-2], x.shape[-1]) for x in pos]
    vision_feats = [x.flatten(2).permute(2, 0, 1) for x in batched]
    vision_pos = [x.flatten(2).permute(2, 0, 1) for x in pos]
    return Frame(vision_feats, vision_pos, feat_sizes)


def encode_memory(sam, frame: Frame, masks: torch.Tensor) -> dict:
    """Memory of ``frame`` with ``masks`` (B, 1, S, S) in [0, 1] as its mask inputs.

    Soft masks stay differentiable: with ``use_mask_input_as_output_without_sam``
    SAM2 turns the mask into logits directly and the memory encoder reads them.
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    masks = masks.to(frame.vision_feats[-1].dtype)
    empty = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    current_out, sam_outputs, _, _ = sam._track_step(
        frame_idx=0, is_init_cond_frame=True,
        current_vision_feats=frame.vision_feats, current_vision_pos_embeds=frame.vision_pos,
        feat_sizes=frame.feat_sizes, point_inputs=None, mask_inputs=masks,
        output_dict=empty, num_frames=2, track_in_reverse=False, prev_sam_mask_logits=None,
    )
    _, _, _, low_res, high_res, obj_ptr, object_score_logits = sam_outputs
    current_out["pred_masks"] = low_res
    current_out["pred_masks_high_res"] = high_res
    current_out["obj_ptr"] = obj_ptr
    sam._encode_memory_in_output(frame.vision_feats, frame.feat_sizes, None, True,
                                 high_res, object_score_logits, current_out)
    return current_out


def repeat_memory(memory: dict, times: int) -> dict:
    """A memory of k objects, tiled for ``times`` images (image-major batch)."""
    if times == 1:
        return memory
    return {
        "maskmem_features": memory["maskmem_features"].repeat(times, 1, 1, 1),
        "maskmem_pos_enc": [p.repeat(times, 1, 1, 1) for p in memory["maskmem_pos_enc"]],
        "obj_ptr": memory["obj_ptr"].repeat(times, 1),
    }


def predict_from_memory(sam, frame: Frame, memories: list[dict]) -> Prediction:
    """Segment ``frame`` attending to ``memories`` (conditioning frames) and nothing else."""
    if not memories:
        raise ValueError("predict_from_memory needs at least one memory")
    # Conditioning frames at 0..m-1, the predicted frame right after them.
    output_dict = {"cond_frame_outputs": dict(enumerate(memories)), "non_cond_frame_outputs": {}}
    _, sam_outputs, _, _ = sam._track_step(
        frame_idx=len(memories), is_init_cond_frame=False,
        current_vision_feats=frame.vision_feats, current_vision_pos_embeds=frame.vision_pos,
        feat_sizes=frame.feat_sizes, point_inputs=None, mask_inputs=None,
        output_dict=output_dict, num_frames=len(memories) + 1, track_in_reverse=False,
        prev_sam_mask_logits=None,
    )
    _, _, ious, low_res, high_res, _, object_score_logits = sam_outputs
    return Prediction(low_res, high_res, ious.max(dim=1).values, object_score_logits)
