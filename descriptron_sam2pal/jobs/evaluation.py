"""The Evaluate use case: per-structure IoU of predictions against ground truth you trust.

``evaluate_run(EvaluateRequest(predictions, truth, colors))`` checks the inputs (missing
files, an empty truth folder) with errors that say what to give instead, then scores with
``engine.evaluate.evaluate``; the report prints as text (``format()``) or JSON (``to_dict()``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.control import CancelToken, ProgressCallback

if TYPE_CHECKING:
    from descriptron_sam2pal.engine.evaluate import EvaluationReport


@dataclass(frozen=True)
class EvaluateRequest:
    """``predictions`` (a COCO file ``sam2pal propagate`` wrote, or any Descriptron store), ``truth``
    (a COCO file or store, or a folder of colour / indexed mask PNGs named like the photos) and
    ``colors`` ("name=R,G,B;..."), the colour of each structure in mask PNGs."""

    predictions: str | os.PathLike
    truth: str | os.PathLike
    colors: str | None = None


def check_inputs(request: EvaluateRequest) -> None:
    """UserError for a missing input or an empty ground-truth folder."""
    for path in (request.predictions, request.truth):
        if not Path(path).exists():
            raise UserError(f"{path} does not exist")
    truth = Path(request.truth)
    if truth.is_dir() and not any(p for p in truth.iterdir() if not p.name.startswith(".")):
        raise UserError(
            f"the ground truth folder {truth} is empty: give the folder of mask PNGs named like the "
            "photos (with --colors), or a Descriptron annotation file or folder of annotated photos"
        )


def evaluate_run(
    request: EvaluateRequest,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log_fn: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Check the inputs, then score. Scoring takes seconds: it reports no progress and does not
    stop early (``progress``, ``cancel`` and ``log_fn`` are the use-case signature of both faces)."""
    from descriptron_sam2pal.engine.evaluate import evaluate

    check_inputs(request)
    return evaluate(request.predictions, request.truth, colors=request.colors)
