"""Which specimen to outline next: the one whose outlines would teach the model most.

After a propagation, the specimens the model is least sure of are the ones where one
more template helps most (uncertainty sampling, as in active learning). A specimen's
uncertainty is the mean over the templates' structures of ``1 - score`` (the review
score, 0..1), a structure predicted absent counting as fully uncertain (the model could
not find it); structures the project marks absent or unknown there are left out, and
so are specimens that could not be read. Torch-free: it reads results only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class Suggestion:
    """A specimen to outline next: its result's ``image_id`` and ``path``, its
    ``uncertainty`` (0..1, higher = teaches more) and the structures that make it so."""

    image_id: Any
    path: str | None
    uncertainty: float
    weakest: tuple[str, ...]


def uncertainty_of(result: Any, structures: Sequence[str]) -> tuple[float, tuple[str, ...]] | None:
    """(uncertainty, the structures scored below 0.5 or missing) of one result, None when it
    cannot be judged (unreadable, or every structure skipped)."""
    if not result.ok:
        return None
    values, weak = [], []
    for name in structures:
        if name in result.skipped:
            continue
        s = result.structures.get(name)
        if s is None or not s.present:
            values.append(1.0)
            weak.append(name)
            continue
        score = s.score if s.score is not None else s.predicted_iou
        value = 1.0 - min(max(float(score), 0.0), 1.0)
        values.append(value)
        if value > 0.5:
            weak.append(name)
    if not values:
        return None
    return sum(values) / len(values), tuple(weak)


def suggest_next_templates(results: Iterable[Any], structures: Sequence[str], exclude: Iterable[Any] = (),
                           limit: int = 5) -> list[Suggestion]:
    """The ``limit`` specimens to outline next, most uncertain first (ties: input order).
    ``exclude``: image ids or paths already used as templates."""
    skip = {str(x) for x in exclude}
    ranked = []
    for order, r in enumerate(results):
        if str(r.image_id) in skip or (r.path is not None and str(r.path) in skip):
            continue
        judged = uncertainty_of(r, structures)
        if judged is not None:
            ranked.append((-judged[0], order, Suggestion(r.image_id, r.path, judged[0], judged[1])))
    ranked.sort(key=lambda x: (x[0], x[1]))
    return [s for _, _, s in ranked[:limit]]
