"""Click-to-segment on one image: SAM2's single-image path (points / box -> mask).

The Templates panel uses it to outline structures: the image is encoded once
(through the cached :class:`FeatureEncoder`), then every click only runs the
prompt encoder and the mask decoder, which takes milliseconds.

This is what ``sam2.sam2_image_predictor.SAM2ImagePredictor`` computes, written
against our own feature cache and letterbox (that module needs torchvision,
which we do not install): the lowest-resolution level gets ``no_mem_embed``
added (SAM2 was trained that way for frames without memory), points are mapped
into the letterboxed model input, a box is two points labelled 2 and 3, and a
single click asks for three masks and keeps the one with the best predicted IoU.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from descriptron_sam2pal.model.build import LoadedModel
from descriptron_sam2pal.engine.features import FeatureEncoder, ImageFeatures
from descriptron_sam2pal.engine.preprocess import PreparedImage, prepare_image

#: SAM2's low-resolution logits are clamped to this before being fed back as a mask input.
_LOGIT_CLAMP = 32.0


class InteractiveSegmenter:
    """Points/box prompts on the current image -> a mask on the image's own pixel grid.

    ``set_image`` encodes (or finds in the encoder's cache) the image;
    ``predict`` runs only the decoder. ``last_low_res_logits`` holds the
    decoder's (1, 1, S/4, S/4) logits of the last prediction, to pass back as
    ``previous_logits`` when refining with more clicks.
    """

    def __init__(self, model: LoadedModel, encoder: FeatureEncoder | None = None) -> None:
        self.model = model
        self.encoder = encoder if encoder is not None else FeatureEncoder(model)
        self.image: PreparedImage | None = None
        self._embed: torch.Tensor | None = None
        self._high_res: list[torch.Tensor] = []
        self.last_low_res_logits: torch.Tensor | None = None
        self._others: list[tuple[torch.Tensor, float]] = []

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray | PreparedImage) -> None:
        """Use this (H, W, 3) uint8 RGB image (or an already prepared one) for the next predictions."""
        if not isinstance(image, PreparedImage):
            image = prepare_image(np.asarray(image), self.model.image_size)
        elif image.size != self.model.image_size:
            raise ValueError(f"image prepared at {image.size} px, the model takes {self.model.image_size} px")
        feats = self.encoder.encode([image])[0]
        self._embed, self._high_res = self._decoder_inputs(feats)
        self.image = image
        self.last_low_res_logits = None
        self._others = []

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """(height, width) of the current image, or None."""
        return None if self.image is None else (self.image.letterbox.height, self.image.letterbox.width)

    @torch.no_grad()
    def _decoder_inputs(self, feats: ImageFeatures) -> tuple[torch.Tensor, list[torch.Tensor]]:
        sam = self.model.sam
        dtype = next(sam.sam_mask_decoder.parameters()).dtype
        levels = [t.to(self.model.device, dtype) for t in feats.levels]
        if not feats.projected and sam.use_high_res_features_in_sam:
            levels[0] = sam.sam_mask_decoder.conv_s0(levels[0])
            levels[1] = sam.sam_mask_decoder.conv_s1(levels[1])
        embed = levels[-1]
        if sam.directly_add_no_mem_embed:
            # (1, 1, C) in SAM2's (HW, B, C) layout -> (1, C, 1, 1) for a (1, C, H, W) map.
            embed = embed + sam.no_mem_embed.reshape(1, -1, 1, 1).to(dtype)
        high_res = levels[:-1] if sam.use_high_res_features_in_sam else []
        return embed, high_res

    # ---------------------------------------------------------------- predict
    @torch.no_grad()
    def predict(
        self,
        points_xy: Sequence | np.ndarray | None = None,
        labels: Sequence | np.ndarray | None = None,
        box: Sequence[float] | None = None,
        previous_logits: torch.Tensor | None = None,
        multimask: bool | None = None,
    ) -> tuple[np.ndarray, float]:
        """Mask for these prompts on the current image.

        ``points_xy``: (N, 2) image-pixel (x, y); ``labels``: (N,) 1 = on the
        structure, 0 = not on it; ``box``: (x0, y0, x1, y1) image pixels or
        None; ``previous_logits``: ``last_low_res_logits`` of an earlier call.
        ``multimask`` defaults to True for a single click without a box (SAM2's
        advice for ambiguous prompts). Returns (H, W) bool on the image grid
        and SAM2's predicted IoU of the chosen mask.
        """
        if self.image is None or self._embed is None:
            raise RuntimeError("call set_image() before predict()")
        sam = self.model.sam
        device = self.model.device
        lb = self.image.letterbox
        pts = (
            np.zeros((0, 2), np.float32)
            if points_xy is None
            else np.asarray(points_xy, np.float32).reshape(-1, 2)
        )
        lab = np.zeros((0,), np.int32) if labels is None else np.asarray(labels, np.int32).reshape(-1)
        if len(pts) != len(lab):
            raise ValueError(f"{len(pts)} points but {len(lab)} labels")
        if len(pts) == 0 and box is None:
            raise ValueError("give at least one point or a box")
        coords = [lb.points_to_model(pts)] if len(pts) else []
        codes = [lab] if len(pts) else []
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            corners = np.array([[min(x0, x1), min(y0, y1)], [max(x0, x1), max(y0, y1)]], np.float32)
            coords.insert(0, lb.points_to_model(corners))  # SAM2 puts the box first
            codes.insert(0, np.array([2, 3], np.int32))
        point_coords = torch.as_tensor(np.concatenate(coords)[None], dtype=torch.float32, device=device)
        point_labels = torch.as_tensor(np.concatenate(codes)[None], dtype=torch.int32, device=device)
        if multimask is None:
            multimask = box is None and len(pts) == 1

        mask_input = None
        if previous_logits is not None:
            mask_input = previous_logits.to(device, torch.float32).reshape(1, 1, *previous_logits.shape[-2:])
        sparse, dense = sam.sam_prompt_encoder(
            points=(point_coords, point_labels), boxes=None, masks=mask_input
        )
        dtype = self._embed.dtype
        low_res, ious, _, _ = sam.sam_mask_decoder(
            image_embeddings=self._embed,
            image_pe=sam.sam_prompt_encoder.get_dense_pe().to(dtype),
            sparse_prompt_embeddings=sparse.to(dtype),
            dense_prompt_embeddings=dense.to(dtype),
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=self._high_res or None,
        )
        best = int(torch.argmax(ious[0]))
        chosen = low_res[:, best:best + 1].float()  # (1, 1, S/4, S/4)
        self.last_low_res_logits = chosen.clamp(-_LOGIT_CLAMP, _LOGIT_CLAMP)
        self._others = [
            (low_res[:, i:i + 1].float(), float(ious[0, i])) for i in range(low_res.shape[1]) if i != best
        ]
        return self._on_image(chosen), float(ious[0, best])

    def _on_image(self, low_res: torch.Tensor) -> np.ndarray:
        """A (1, 1, S/4, S/4) decoder mask on the image grid (bool)."""
        lb = self.image.letterbox
        full = F.interpolate(low_res, size=(lb.size, lb.size), mode="bilinear", align_corners=False)
        return lb.unapply(full[0, 0].cpu().numpy()) > 0.0

    def alternatives(self) -> list[tuple[np.ndarray, float]]:
        """The masks the last prediction did not choose (SAM2's other answers to one click: a
        smaller or a larger part), each on the image grid with its predicted IoU; empty after a
        prompt with one answer (several clicks, a box)."""
        return [(self._on_image(m), iou) for m, iou in self._others]
