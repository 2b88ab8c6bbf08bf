"""Letterboxing: fit an image into the model's square input without stretching.

The image is resized by one scale factor (keeping its aspect ratio), centred
in a ``size`` x ``size`` canvas and padded with zeros. The exact transform is
kept so that model outputs map back onto each image's own pixel grid:
:meth:`Letterbox.unapply` crops exactly the content region and resizes it back.

Pixel coordinates follow OpenCV: integer (x, y) is the centre of column x,
row y (the same convention as :mod:`descriptron_sam2pal.imaging.masks`).
Resizing maps pixel centres the way ``cv2.resize`` does, so a point mapped with
:meth:`Letterbox.points_to_model` lands on the same content as the pixel it
named in the original image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """The transform from an image of ``height`` x ``width`` to a ``size`` square.

    ``scale`` is ``size / max(height, width)``; the content is resized to
    ``new_h`` x ``new_w`` (each ``round(side * scale)``, at least 1 pixel) and
    placed at (``pad_top``, ``pad_left``). Because of rounding the exact
    per-axis factors are ``new_w / width`` and ``new_h / height``
    (:attr:`scale_x`, :attr:`scale_y`); point mappings use those.
    """

    height: int
    width: int
    size: int
    scale: float
    new_h: int
    new_w: int
    pad_top: int
    pad_left: int

    def __post_init__(self) -> None:
        if min(self.height, self.width, self.size) < 1:
            raise ValueError(
                f"Letterbox needs positive sizes, got height={self.height}, "
                f"width={self.width}, size={self.size}"
            )
        if not (1 <= self.new_h and self.pad_top >= 0 and self.pad_top + self.new_h <= self.size):
            raise ValueError(f"Letterbox content rows out of the canvas: {self}")
        if not (1 <= self.new_w and self.pad_left >= 0 and self.pad_left + self.new_w <= self.size):
            raise ValueError(f"Letterbox content columns out of the canvas: {self}")

    @classmethod
    def fit(cls, height: int, width: int, size: int) -> Letterbox:
        """The letterbox of an image of ``height`` x ``width`` into a ``size`` square."""
        height, width, size = int(height), int(width), int(size)
        if min(height, width, size) < 1:
            raise ValueError(
                f"Letterbox needs positive sizes, got height={height}, width={width}, size={size}"
            )
        scale = size / max(height, width)
        new_h = min(size, max(1, round(height * scale)))
        new_w = min(size, max(1, round(width * scale)))
        return cls(
            height=height,
            width=width,
            size=size,
            scale=scale,
            new_h=new_h,
            new_w=new_w,
            pad_top=(size - new_h) // 2,
            pad_left=(size - new_w) // 2,
        )

    @property
    def scale_x(self) -> float:
        """Exact horizontal factor from image to model pixels."""
        return self.new_w / self.width

    @property
    def scale_y(self) -> float:
        """Exact vertical factor from image to model pixels."""
        return self.new_h / self.height

    @property
    def is_identity_resize(self) -> bool:
        """True when the content is not resized (only padded)."""
        return self.new_h == self.height and self.new_w == self.width

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """(height, width, 3) uint8 -> (size, size, 3) uint8, zero padding.

        Shrinking uses area averaging (no aliasing), enlarging bilinear.
        """
        img = np.asarray(img)
        if img.shape != (self.height, self.width, 3) or img.dtype != np.uint8:
            raise ValueError(
                f"apply_image expects a ({self.height}, {self.width}, 3) uint8 image, "
                f"got {img.shape} {img.dtype}"
            )
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        canvas[self._content_slices()] = self._resize_content(img)
        return canvas

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """(height, width) bool/float mask -> (size, size) float32 in [0, 1].

        Area averaging when shrinking, so edges become soft fractions; 0 in the
        padding.
        """
        mask = np.asarray(mask)
        if mask.shape != (self.height, self.width):
            raise ValueError(
                f"apply_mask expects a ({self.height}, {self.width}) mask, got {mask.shape}"
            )
        values = np.clip(mask.astype(np.float32), 0.0, 1.0)
        canvas = np.zeros((self.size, self.size), np.float32)
        canvas[self._content_slices()] = np.clip(self._resize_content(values), 0.0, 1.0)
        return canvas

    def valid_mask(self) -> np.ndarray:
        """(size, size) bool, True on the resized image's pixels, False on padding."""
        valid = np.zeros((self.size, self.size), bool)
        valid[self._content_slices()] = True
        return valid

    def unapply(self, arr: np.ndarray) -> np.ndarray:
        """(..., size, size) float (logits or probabilities) -> (..., height, width) float32.

        Crops exactly the content region and resizes it bilinearly back to the
        image's size. Leading dimensions (batch, objects) are kept. Takes numpy
        arrays only: convert tensors first (``tensor.detach().cpu().numpy()``).
        """
        if not isinstance(arr, np.ndarray):
            raise TypeError(
                f"Letterbox.unapply takes a numpy array, got {type(arr).__name__}; "
                "convert tensors with .detach().cpu().numpy()"
            )
        if arr.ndim < 2 or arr.shape[-2:] != (self.size, self.size):
            raise ValueError(
                f"Letterbox.unapply expects (..., {self.size}, {self.size}), got {arr.shape}"
            )
        lead = arr.shape[:-2]
        content = arr[(..., *self._content_slices())].astype(np.float32, copy=False)
        if self.is_identity_resize:
            return np.ascontiguousarray(content)
        planes = content.reshape(-1, self.new_h, self.new_w)
        out = np.empty((planes.shape[0], self.height, self.width), np.float32)
        for i, plane in enumerate(planes):
            out[i] = cv2.resize(
                np.ascontiguousarray(plane),
                (self.width, self.height),
                interpolation=cv2.INTER_LINEAR,
            )
        return out.reshape(*lead, self.height, self.width)

    def points_to_model(self, xy: np.ndarray) -> np.ndarray:
        """Image pixel (x, y) points, shape (N, 2) -> model input coordinates (float64)."""
        pts = _as_points(xy)
        out = np.empty_like(pts)
        out[:, 0] = (pts[:, 0] + 0.5) * self.scale_x - 0.5 + self.pad_left
        out[:, 1] = (pts[:, 1] + 0.5) * self.scale_y - 0.5 + self.pad_top
        return out

    def points_to_image(self, xy: np.ndarray) -> np.ndarray:
        """Model input (x, y) points, shape (N, 2) -> image pixel coordinates (float64)."""
        pts = _as_points(xy)
        out = np.empty_like(pts)
        out[:, 0] = (pts[:, 0] - self.pad_left + 0.5) / self.scale_x - 0.5
        out[:, 1] = (pts[:, 1] - self.pad_top + 0.5) / self.scale_y - 0.5
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Letterbox:
        """Inverse of :meth:`to_dict` (extra keys ignored)."""
        return cls(
            height=int(d["height"]),
            width=int(d["width"]),
            size=int(d["size"]),
            scale=float(d["scale"]),
            new_h=int(d["new_h"]),
            new_w=int(d["new_w"]),
            pad_top=int(d["pad_top"]),
            pad_left=int(d["pad_left"]),
        )

    def _content_slices(self) -> tuple[slice, slice]:
        return (
            slice(self.pad_top, self.pad_top + self.new_h),
            slice(self.pad_left, self.pad_left + self.new_w),
        )

    def _resize_content(self, arr: np.ndarray) -> np.ndarray:
        if self.is_identity_resize:
            return arr
        shrinking = self.new_h <= self.height and self.new_w <= self.width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        return cv2.resize(
            np.ascontiguousarray(arr), (self.new_w, self.new_h), interpolation=interpolation
        )


def _as_points(xy: np.ndarray) -> np.ndarray:
    pts = np.asarray(xy, dtype=np.float64)
    if pts.size == 0:
        return pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    return pts
