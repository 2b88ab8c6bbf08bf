"""Masks from prompts on one image: the use case behind SAM2 clicks, boxes, Refine and Fix.

The Templates panel's clicks (on the structure or off it) and boxes, its Refine (SAM2 redoes a
hand-drawn outline from the outline's box and a few points inside it) and the Review panel's
Fix (clicks on a propagated result) all end here. Every call here runs the model, so a face
runs it off its GUI thread: the Templates panel through a latest-wins worker
(``gui.workers.LatestCall``), the Review panel in an ``EngineWorker``.

The image is read (encoded) once by :func:`read_image`; each prompt then only runs SAM2's
prompt encoder and mask decoder (``engine.interactive.InteractiveSegmenter``).

Importing this module is cheap: torch loads when a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from descriptron_sam2pal.imaging.drawing import refine_prompt
from descriptron_sam2pal.jobs.models import ModelRequest, load_model

if TYPE_CHECKING:
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.interactive import InteractiveSegmenter
    from descriptron_sam2pal.model.build import LoadedModel

#: A click: image-pixel (x, y) and whether it is on the structure (True) or off it.
Click = tuple[float, float, bool]
Box = tuple[float, float, float, float]

#: Feature cache of the Templates panel's segmenter (one per loaded model).
PANEL_CACHE_BYTES = 512 << 20
#: Feature cache of the Review panel's Fix, which has its own segmenter.
FIX_CACHE_BYTES = 256 << 20
#: Interior points Refine gives SAM2 besides the outline's box.
REFINE_POINTS = 3


@dataclass
class PromptModel:
    """A loaded SAM2 model, its image-feature cache and the click segmenter reading from it."""

    model: LoadedModel
    encoder: FeatureEncoder
    segmenter: InteractiveSegmenter


@dataclass
class PromptedMask:
    """SAM2's answer to a prompt: the (H, W) bool ``mask`` on the image's pixel grid, or None
    when SAM2 found nothing there, and its own quality estimate ``score`` (0 to 1)."""

    mask: np.ndarray | None
    score: float


def prompt_model_for(model: LoadedModel, cache_bytes: int = PANEL_CACHE_BYTES) -> PromptModel:
    """A click segmenter with its own feature cache for an already loaded model."""
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.zoom_in import ZoomInSegmenter

    encoder = FeatureEncoder(model, max_memory_bytes=cache_bytes)
    return PromptModel(model, encoder, ZoomInSegmenter(model, encoder))


def load_prompt_model(request: ModelRequest, cache_bytes: int = PANEL_CACHE_BYTES) -> PromptModel:
    """Load the model of ``request`` (``jobs.models.load_model``) and its click segmenter."""
    return prompt_model_for(load_model(request), cache_bytes)


def read_image(segmenter: InteractiveSegmenter, pixels: np.ndarray) -> None:
    """Encode this (H, W, 3) uint8 RGB image (or find it in the cache) for the next prompts."""
    segmenter.set_image(pixels)


def mask_from_prompts(
    segmenter: InteractiveSegmenter, clicks: Sequence[Click] = (), box: Box | None = None
) -> PromptedMask:
    """SAM2's mask for these clicks and box on the image last read."""
    points = [(x, y) for x, y, _ in clicks] or None
    labels = [int(on) for _, _, on in clicks] or None
    mask, score = segmenter.predict(points, labels, box=box)
    return PromptedMask(mask if mask.any() else None, score)


def refine_outline(
    segmenter: InteractiveSegmenter, outline: np.ndarray, n_points: int = REFINE_POINTS
) -> PromptedMask:
    """SAM2 segments again from a drawn outline's box and ``n_points`` points deep inside it."""
    box, points = refine_prompt(outline, n_points)
    return mask_from_prompts(segmenter, [(x, y, True) for x, y in points], box)


def fix_by_clicks(
    model: LoadedModel, paths: Mapping[Any, Any], cache_bytes: int = FIX_CACHE_BYTES
) -> Callable[[Any, list, list], np.ndarray | None]:
    """``reprompt(image_id, points, labels) -> mask or None`` for the Review panel's Fix.

    It runs in a worker thread with its own segmenter and feature cache, so it never shares
    mutable state with the Templates panel. ``paths`` maps image ids to their files (read in
    the GUI thread beforehand: the store is not shared with the worker); an id not in it is
    taken as the path itself.
    """
    from descriptron_sam2pal.imaging.io import load_image

    segmenter = prompt_model_for(model, cache_bytes).segmenter
    paths = dict(paths)

    def reprompt(image_id: Any, points: list, labels: list) -> np.ndarray | None:
        read_image(segmenter, load_image(paths.get(image_id) or image_id))
        clicks = [(x, y, bool(label)) for (x, y), label in zip(points, labels)]
        return mask_from_prompts(segmenter, clicks).mask

    return reprompt
