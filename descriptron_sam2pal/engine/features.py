"""Frozen image-encoder features, computed once per image and cached.

SAM2's ``forward_image`` also runs the mask decoder's ``conv_s0``/``conv_s1`` on
the two high-resolution levels. Those convolutions belong to the decoder: when
they are trainable (full fine-tuning) we cache the features *before* them and
apply them in every step (``ImageFeatures.projected`` is False); when they are
frozen (LoRA, inference) we cache them already projected, which is 8x smaller
at level 0, and the cache key includes the convolutions' weights.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from descriptron_sam2pal.atomic import atomic_write
from descriptron_sam2pal.model.build import LoadedModel
if TYPE_CHECKING:
    from descriptron_sam2pal.engine.preprocess import PreparedImage

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ImageFeatures:
    """Backbone feature levels of one image, each (1, C, H, W), highest resolution first."""

    levels: list[torch.Tensor]
    projected: bool  # True: conv_s0/conv_s1 already applied to levels 0 and 1

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.levels)

    def to(self, device) -> "ImageFeatures":
        return ImageFeatures([t.to(device) for t in self.levels], self.projected)


def hash_tensors(tensors: Sequence[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def model_identity(model: LoadedModel) -> str:
    """What the encoder output depends on: weights (checkpoint hash), config, input size, precision."""
    weights = model.checkpoint_hash or hash_tensors(list(model.sam.image_encoder.state_dict().values()))
    return hashlib.sha256(
        f"{weights}|{model.config_name}|{model.image_size}|{model.resolved_precision}".encode()
    ).hexdigest()


def _high_res_convs(sam) -> list[torch.nn.Module]:
    if not sam.use_high_res_features_in_sam:
        return []
    return [sam.sam_mask_decoder.conv_s0, sam.sam_mask_decoder.conv_s1]


def convs_trainable(sam) -> bool:
    return any(p.requires_grad for conv in _high_res_convs(sam) for p in conv.parameters())


class FeatureEncoder:
    """Runs the frozen image encoder; remembers results in memory (bounded) and on disk.

    ``encoder_passes`` counts images actually sent through the encoder, so
    tests and benchmarks can check that nothing is encoded twice.
    """

    def __init__(self, model: LoadedModel, cache_dir: str | Path | None = None,
                 max_memory_bytes: int = 2 << 30, batch_size: int = 4) -> None:
        self.model = model
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_memory_bytes = max_memory_bytes
        self.batch_size = batch_size
        self.encoder_passes = 0
        self._memory: OrderedDict[str, ImageFeatures] = OrderedDict()
        self._memory_bytes = 0
        self._identity = model_identity(model)
        self._pos_enc: dict[tuple, list[torch.Tensor]] = {}

    # -- keys -------------------------------------------------------------
    def _key(self, image: PreparedImage, projected: bool) -> str:
        extra = ""
        if projected:
            extra = hash_tensors([p for conv in _high_res_convs(self.model.sam) for p in conv.parameters()])
        return hashlib.sha256(f"{self._identity}|{image.key}|{projected}|{extra}".encode()).hexdigest()

    # -- public -------------------------------------------------------------
    def encode(self, images: Sequence[PreparedImage], cache: bool = True) -> list[ImageFeatures]:
        """Features for each image, in order; only cache misses reach the encoder.

        With ``cache=False`` nothing is remembered (propagation targets, used once).
        """
        projected = not convs_trainable(self.model.sam)
        keys = [self._key(im, projected) for im in images] if cache else [None] * len(images)
        out: list[ImageFeatures | None] = [None] * len(images)
        missing = []
        for i, key in enumerate(keys):
            feats = self._lookup(key) if key else None
            if feats is None:
                missing.append(i)
            else:
                out[i] = feats
        for start in range(0, len(missing), self.batch_size):
            idx = missing[start:start + self.batch_size]
            for i, feats in zip(idx, self._run_encoder([images[i] for i in idx], projected)):
                out[i] = feats
                if keys[i]:
                    self._remember(keys[i], feats)
        return out  # type: ignore[return-value]

    def position_encodings(self, feats: ImageFeatures) -> list[torch.Tensor]:
        """The neck's positional encodings: they depend only on the feature shapes."""
        shape = tuple(tuple(t.shape[-2:]) for t in feats.levels)
        if shape not in self._pos_enc:
            self._pos_enc[shape] = position_encodings(self.model.sam, feats)
        return self._pos_enc[shape]

    def clear_memory(self) -> None:
        self._memory.clear()
        self._memory_bytes = 0

    # -- internals ------------------------------------------------------------
    @torch.no_grad()
    def _run_encoder(self, images: Sequence[PreparedImage], projected: bool) -> list[ImageFeatures]:
        sam = self.model.sam
        device = self.model.device
        batch = torch.stack([im.tensor() for im in images]).to(device)
        was_training = sam.image_encoder.training
        sam.image_encoder.eval()
        try:
            with self.model.autocast():
                out = sam.image_encoder(batch)
                levels = list(out["backbone_fpn"])
                if projected:
                    for level, conv in enumerate(_high_res_convs(sam)):
                        levels[level] = conv(levels[level])
        finally:
            sam.image_encoder.train(was_training)
        self.encoder_passes += len(images)
        store_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        return [ImageFeatures([lv[i:i + 1].to(store_dtype).contiguous() for lv in levels], projected)
                for i in range(len(images))]

    def _lookup(self, key: str) -> ImageFeatures | None:
        feats = self._memory.get(key)
        if feats is not None:
            self._memory.move_to_end(key)
            return feats
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.pt"
        if not path.exists():
            return None
        try:
            data = torch.load(path, map_location=self.model.device, weights_only=True)
            feats = ImageFeatures(list(data["levels"]), bool(data["projected"]))
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
            log.warning("ignoring unreadable feature cache file %s (%s)", path, exc)
            return None
        self._remember(key, feats, write=False)
        return feats

    def _remember(self, key: str, feats: ImageFeatures, write: bool = True) -> None:
        self._memory[key] = feats
        self._memory_bytes += feats.nbytes()
        while self._memory_bytes > self.max_memory_bytes and len(self._memory) > 1:
            _, old = self._memory.popitem(last=False)
            self._memory_bytes -= old.nbytes()
        if write and self.cache_dir is not None:
            payload = {"levels": [t.cpu() for t in feats.levels], "projected": feats.projected}
            try:
                atomic_write(self.cache_dir / f"{key}.pt", lambda f: torch.save(payload, f))
            except OSError as exc:  # a full disk slows us down but loses nothing
                log.warning("could not write feature cache to %s (%s); continuing without it",
                            self.cache_dir, exc)

@torch.no_grad()
def position_encodings(sam, feats: ImageFeatures) -> list[torch.Tensor]:
    """Recompute the neck's sine position encodings for feature maps of these shapes."""
    neck = sam.image_encoder.neck
    return [neck.position_encoding(t).to(t.dtype) for t in feats.levels]
