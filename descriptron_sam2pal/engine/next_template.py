"""Which specimen to outline next: the specimens the model is least sure of, first.

After a propagation, the specimens are ranked by the model's uncertainty (uncertainty
sampling, as in active learning). That it helps more than a random choice is not shown:
on the packaged demo a suggested second template was no better than a random one
(benchmarks/README.md, "Next template"), so the GUI says it ranks by uncertainty only and
promises no gain. A specimen's
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
    ``uncertainty`` (0..1, higher = less sure) and the structures that make it so."""

    image_id: Any
    path: str | None
    uncertainty: float
    weakest: tuple[str, ...]


@dataclass(frozen=True)
class SpecimenScores:
    """What a specimen's segmentation said: ``scores`` {structure: review score 0..1, or None when
    predicted absent}; ``skipped``: structures the project marks absent/unknown there."""

    image_id: Any
    path: str | None
    scores: dict
    skipped: frozenset = frozenset()


def from_result(result: Any) -> SpecimenScores | None:
    """A propagation result's scores (None for an unreadable target)."""
    if not result.ok:
        return None
    scores = {n: ((s.score if s.score is not None else s.predicted_iou) if s.present else None)
              for n, s in result.structures.items()}
    return SpecimenScores(result.image_id, result.path, scores, frozenset(result.skipped))


def uncertainty_of(
    specimen: SpecimenScores, structures: Sequence[str]
) -> tuple[float, tuple[str, ...]] | None:
    """(uncertainty, the structures scored below 0.5 or missing) of one specimen, None when it
    cannot be judged (every structure skipped)."""
    values, weak = [], []
    for name in structures:
        if name in specimen.skipped:
            continue
        score = specimen.scores.get(name)
        value = 1.0 if score is None else 1.0 - min(max(float(score), 0.0), 1.0)
        values.append(value)
        if value > 0.5:
            weak.append(name)
    if not values:
        return None
    return sum(values) / len(values), tuple(weak)


def rank_specimens(specimens: Iterable[SpecimenScores | None], structures: Sequence[str],
                   exclude: Iterable[Any] = (), limit: int = 5) -> list[Suggestion]:
    """The ``limit`` specimens to outline next, most uncertain first (ties: input order).
    ``exclude``: image ids or paths already used as templates."""
    skip = {str(x) for x in exclude}
    ranked = []
    for order, s in enumerate(specimens):
        if s is None or str(s.image_id) in skip or (s.path is not None and str(s.path) in skip):
            continue
        judged = uncertainty_of(s, structures)
        if judged is not None:
            ranked.append((-judged[0], order, Suggestion(s.image_id, s.path, judged[0], judged[1])))
    ranked.sort(key=lambda x: (x[0], x[1]))
    return [s for _, _, s in ranked[:limit]]


def suggest_next_templates(results: Iterable[Any], structures: Sequence[str], exclude: Iterable[Any] = (),
                           limit: int = 5) -> list[Suggestion]:
    """``rank_specimens`` of propagation results."""
    return rank_specimens((from_result(r) for r in results), structures, exclude, limit)
