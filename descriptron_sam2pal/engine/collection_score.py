"""The collection signal of the review score: how much a mask looks like the run's other masks of
its structure.

A reviewer of a collection has every specimen's prediction; on a model that, like SAM2,
knows no beetle part, the bad masks are mostly gross (a pronotum mask on the elytra, an
empty leg), and a mask unlike the rest of the run is the one to look at first
(``engine.review_score`` ranks bad masks better with it than without it on the test-bed's
evaluation photos; the AUROCs: benchmarks/testbed/README.md). The signal, ``consensus``, is measured as in
``benchmarks/review_signals.py``: each mask letterboxed into a 64 x 64 square (the same
centred letterbox as the model's input), its mean IoU with the other masks of the
structure. Only predictions are compared, never a ground truth.

The score of a result is first its one-pass estimate (known when the target is done, so a
run streams); when the run ends, :class:`CollectionScorer` gives the structures with at
least :data:`MIN_MASKS` masks their collection estimate, and the predictions file, the
store's ``score`` attributes and the kept results are rewritten with it
(``jobs.propagation``). Numpy only: the Ray driver and the GUI need no torch for it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Hashable, Iterable

import numpy as np

from descriptron_sam2pal.engine.review_score import FITS, linear
from descriptron_sam2pal.imaging.letterbox import Letterbox

#: Side of the square masks are compared in.
THUMBNAIL = 64
#: Fewer masks of a structure than this, and its scores stay one-pass ("unlike the others"
#: means little among three).
MIN_MASKS = 8
#: A mask is compared with at most this many others (chosen by content, not by order), so a
#: run of 20 000 specimens costs seconds, not hours (measured by ``benchmarks/collection_timing.py``;
#: the numbers: benchmarks/testbed/README.md).
MAX_OTHERS = 2000


def mask_thumbnail(mask: np.ndarray) -> np.ndarray:
    """The (H, W) bool mask letterboxed into a THUMBNAIL square (pixels at least half
    covered), as packed bits."""
    mask = np.asarray(mask, dtype=bool)
    step = max(1, max(mask.shape) // (4 * THUMBNAIL))  # thin it first: a 12 MP mask is then cheap
    small = mask[::step, ::step]
    box = Letterbox.fit(small.shape[0], small.shape[1], THUMBNAIL)
    return np.packbits(box.apply_mask(small).ravel() >= 0.5)


def consensus(thumbnails: list[np.ndarray]) -> np.ndarray:
    """Each packed thumbnail's mean IoU with the others (with more than MAX_OTHERS + 1, with
    the MAX_OTHERS whose content hashes lowest; a mask is never compared with itself)."""
    n = len(thumbnails)
    if n < 2:
        return np.zeros(n)
    m = np.unpackbits(np.stack(thumbnails), axis=1)[:, : THUMBNAIL * THUMBNAIL].astype(np.float32)
    if n > MAX_OTHERS + 1:
        order = sorted(range(n), key=lambda i: (hashlib.sha1(thumbnails[i].tobytes()).digest(), i))
        others = np.array(sorted(order[:MAX_OTHERS]))
    else:
        others = np.arange(n)
    area = m.sum(1)
    total = np.zeros(n)
    count = np.zeros(n)
    for start in range(0, n, 1024):
        rows = np.arange(start, min(n, start + 1024))
        inter = m[rows] @ m[others].T
        union = area[rows][:, None] + area[others][None] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        own = rows[:, None] == others[None]
        total[rows] = np.where(own, 0.0, iou).sum(1)
        count[rows] = (~own).sum(1)
    return total / np.maximum(count, 1)


class CollectionScorer:
    """Gathers what the collection signal needs from a run's results as they stream by (a
    packed 64 x 64 mask and two numbers per present structure; no full masks are kept) and
    gives the new scores at the end."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], list[tuple[Hashable, dict, np.ndarray]]] = {}

    def add(self, key: Hashable, result: Any) -> None:
        """Note a ``TargetResult`` under ``key`` (what :meth:`scores` names it by). Results
        without a fit with a collection step (or without masks) are left as they are."""
        fit = FITS.get(result.review_fit or "")
        if fit is None or fit.collection is None or not result.ok:
            return
        for name, s in result.structures.items():
            if s.present and s.mask is not None and s.stability is not None:
                signals = {"stability": s.stability, "predicted_iou": s.predicted_iou}
                self._items.setdefault((result.review_fit, name), []).append(
                    (key, signals, mask_thumbnail(s.mask)))

    def scores(self) -> dict[tuple[Hashable, str], float]:
        """{(key, structure): collection review score} for every structure with MIN_MASKS masks
        or more; the others keep their one-pass score."""
        out = {}
        for (fit, name), items in self._items.items():
            if len(items) < MIN_MASKS:
                continue
            weights = FITS[fit].collection
            agreement = consensus([thumb for _, _, thumb in items])
            for (key, signals, _), value in zip(items, agreement):
                out[(key, name)] = linear(weights, {**signals, "consensus": float(value)})
        return out


def rescore_collection(results: Iterable[Any]) -> dict[tuple[int, str], float]:
    """Give a list of ``TargetResult`` (one run) their collection scores, in place; returns
    {(index in the list, structure): new score}."""
    results = list(results)
    scorer = CollectionScorer()
    for i, r in enumerate(results):
        scorer.add(i, r)
    new = scorer.scores()
    for (i, name), value in new.items():
        results[i].structures[name].score = value
    return new
