"""Specimen image -> letterboxed, normalised model input (one way, for every mode)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from descriptron_sam2pal.imaging.io import load_image
from descriptron_sam2pal.imaging.letterbox import Letterbox

# SAM2's normalisation (ImageNet statistics, as in sam2.utils.transforms).
SAM2_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
SAM2_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(eq=False)
class PreparedImage:
    """An image letterboxed to the model's square input, with the exact transform.

    ``key`` hashes the letterboxed pixels and the size, so any change of the
    image (or of the size) gives another key.
    """

    pixels: np.ndarray  # (S, S, 3) uint8, letterboxed
    letterbox: Letterbox
    key: str
    source: str | None = None  # file path, when it came from one

    @property
    def size(self) -> int:
        return self.letterbox.size

    def tensor(self) -> torch.Tensor:
        """(3, S, S) float32, normalised with SAM2's mean/std."""
        x = (self.pixels.astype(np.float32) / 255.0 - SAM2_MEAN) / SAM2_STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def valid_mask(self) -> np.ndarray:
        return self.letterbox.valid_mask()


def prepare_image(image: str | Path | np.ndarray, size: int, source: str | None = None) -> PreparedImage:
    """Load if given a path (``imaging.io.load_image``: the raw pixel frame, EXIF orientation not
    applied, as Descriptron), then letterbox to ``size`` x ``size``."""
    if not isinstance(image, np.ndarray):
        source = str(image)
        image = load_image(image)
    lb = Letterbox.fit(image.shape[0], image.shape[1], size)
    pixels = lb.apply_image(image)
    h = hashlib.sha256()
    h.update(f"{size}:".encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return PreparedImage(pixels=pixels, letterbox=lb, key=h.hexdigest(), source=source)
