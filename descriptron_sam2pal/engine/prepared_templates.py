"""Templates: specimens whose structures the user outlined (the only supervision)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.preprocess import PreparedImage
from descriptron_sam2pal.imaging.kept_pixels import MIN_KEPT_PIXELS


@dataclass(eq=False)
class Template:
    """One annotated specimen: its prepared image and one mask per structure name.

    ``masks`` are bool arrays on the image's own pixel grid: the raw pixel frame, EXIF
    orientation not applied (as Descriptron draws them).
    """

    image_id: str | int
    image: PreparedImage
    masks: dict[str, np.ndarray]
    _model_masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        lb = self.image.letterbox
        for name, mask in self.masks.items():
            if mask.shape != (lb.height, lb.width):
                raise UserError(
                    f"template {self.image_id}: the mask of '{name}' is {mask.shape[1]}x{mask.shape[0]} px "
                    f"but the image is {lb.width}x{lb.height} px; use a mask made for this image")
            if not mask.any():
                raise UserError(
                    f"template {self.image_id}: the mask of '{name}' is empty; outline the structure "
                    f"or remove it from the template")
        if not self.masks:
            raise UserError(f"template {self.image_id} has no structure outlined; outline at least one")

    @property
    def structures(self) -> list[str]:
        return list(self.masks)

    def model_mask(self, name: str) -> np.ndarray:
        """The structure's mask letterboxed to the model input, float32 in [0, 1]."""
        if name not in self._model_masks:
            self._model_masks[name] = self.image.letterbox.apply_mask(self.masks[name])
        return self._model_masks[name]

    def kept_pixels(self, name: str) -> int:
        """Pixels of the structure's mask at the model input, as :meth:`model_masks` binarises it."""
        return int(np.count_nonzero(self.model_mask(name) >= 0.5))

    def model_masks(self, names: list[str], device="cpu") -> torch.Tensor:
        """(K, S, S) float tensor of the named structures, binarised at 0.5."""
        stack = np.stack([self.model_mask(n) for n in names]) >= 0.5
        return torch.from_numpy(stack.astype(np.float32)).to(device)

    def valid(self, device="cpu") -> torch.Tensor:
        return torch.from_numpy(self.image.valid_mask()).to(device)


def structure_names(templates: list[Template]) -> list[str]:
    """All structure names over the templates, in first-seen order."""
    names: list[str] = []
    for t in templates:
        names.extend(n for n in t.structures if n not in names)
    return names


def vanished_structures(templates: list[Template]) -> list[str]:
    """``"'eye' on template T (0 px at 256 px)"`` for every outline that keeps fewer than
    ``imaging.kept_pixels.MIN_KEPT_PIXELS`` pixels at the model input: the model sees that
    structure as absent there. ``jobs.templates.load_templates`` refuses these before any work;
    this is what a caller that built its templates another way is told."""
    return [f"'{name}' on template {t.image_id} ({t.kept_pixels(name)} px at {t.image.size} px)"
            for t in templates for name in t.structures if t.kept_pixels(name) < MIN_KEPT_PIXELS]
