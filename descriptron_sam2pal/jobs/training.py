"""The Train SAM2-PAL use case: load the model and the templates, plan validation, train."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TYPE_CHECKING, Callable, Sequence

from descriptron_sam2pal.engine.validation_plan import METRICS, ValidationPlan, plan_validation
from descriptron_sam2pal.jobs.models import ModelRequest, check_memory_for, load_model, resolved_image_size
from descriptron_sam2pal.jobs.outputs import check_run_folder, check_writable_folder, mark_run_folder
from descriptron_sam2pal.jobs.templates import TemplateSpec, check_structures_kept, load_templates

if TYPE_CHECKING:  # importing jobs loads no torch: these are for the annotations only
    from descriptron_sam2pal.engine.control import CancelToken, ProgressCallback
    from descriptron_sam2pal.engine.prepared_templates import Template
    from descriptron_sam2pal.engine.trainer import TrainConfig, TrainResult
    from descriptron_sam2pal.model.build import LoadedModel
    from descriptron_sam2pal.store import ImageRecord


@dataclass
class TrainRequest:
    """A training run: the model, the templates, the unlabeled images (paths or store
    records), the run folder, the settings (``engine.trainer.TrainConfig``; None: the
    defaults), whether to resume the run in ``run_dir``, an optional disk cache of
    image-encoder features, and whether the user allows the run to replace files in
    ``run_dir`` that sam2pal did not write (``overwrite``, ``jobs.outputs``)."""

    model: ModelRequest
    templates: Sequence[TemplateSpec]
    unlabeled: Sequence[str | os.PathLike | ImageRecord]
    run_dir: Path
    config: TrainConfig | None = None
    resume: bool = False
    cache_dir: str | os.PathLike | None = None
    overwrite: bool = False


@dataclass
class TrainOutcome:
    """``result`` (``engine.trainer.TrainResult``), the trained ``model`` (best weights, eval
    mode; propagation can reuse it) and the prepared ``templates``."""

    result: TrainResult
    model: LoadedModel
    templates: list[Template]


def validation_plan_for(templates: Sequence[TemplateSpec], n_unlabeled: int,
                        config: TrainConfig | None = None) -> ValidationPlan:
    """The validation the trainer will use for these templates (the GUI names its plot after it)."""
    from_config = {} if config is None else {
        "validate_every": config.validate_every, "val_images": config.val_images, "seed": config.seed,
        "metric": None if config.validation == "auto" else config.validation}
    return plan_validation([t.masks for t in templates], n_unlabeled, **from_config)


def train_config(steps: int | None = None, lora_rank: int | None = None, full: bool = False, seed: int = 0,
                 lr: float | None = None, pseudo_labels: bool = True, stop_after: int | None = None) -> Any:
    """The training settings (``engine.trainer.TrainConfig``) from a face's choices; None keeps
    the default (``lr``: the one of LoRA or of full fine-tuning); ``pseudo_labels=False`` trains
    on the palindromes alone."""
    from descriptron_sam2pal.engine.trainer import TrainConfig

    config = TrainConfig(full=full, seed=seed, lr=lr)
    if steps is not None:
        config.steps = steps
    if lora_rank is not None:
        config.lora_rank = lora_rank
    if stop_after is not None:
        config.stop_after = stop_after
    if not pseudo_labels:
        config.loss.pseudo = 0.0
    return config


def unlabeled_paths(items: Sequence[str | os.PathLike | ImageRecord]) -> list[str]:
    """Image paths of store records or paths."""
    return [str(item.path) if hasattr(item, "path") else str(item) for item in items]


def train_run(
    request: TrainRequest,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log_fn: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Build the model, prepare the templates, train. ``progress``/``cancel`` as in the engine;
    ``log_fn`` gets lines worth showing the user."""
    from descriptron_sam2pal.engine.trainer import TrainConfig, train

    say = log_fn or (lambda text: None)
    config = request.config if request.config is not None else TrainConfig()
    if config.autocast is None and request.model.precision != "auto":
        config.autocast = request.model.precision == "bf16"  # "auto": bf16 on CUDA, fp32 on a CPU
    config.check()
    size = resolved_image_size(request.model)
    check_memory_for(size, training=True)
    if size is not None:  # before the model is loaded (load_templates checks again at the model's size)
        check_structures_kept(request.templates, size)
    run_dir = Path(request.run_dir).expanduser()
    check_run_folder(run_dir, overwrite=request.overwrite)
    check_writable_folder(run_dir, "the training run")
    say("Loading SAM2...")
    model = load_model(request.model)
    say(f"Model: {model.describe()} at {model.image_size} px on {model.device}")
    templates = load_templates(request.templates, model.image_size)
    say(f"{len(templates)} template(s), {len(request.unlabeled)} unlabeled image(s); "
        f"run folder {request.run_dir}")
    mark_run_folder(run_dir)
    result = train(model, templates, unlabeled_paths(request.unlabeled), Path(request.run_dir), config,
                   progress=progress, cancel=cancel, resume=request.resume,
                   feature_cache_dir=request.cache_dir, log_fn=say)
    return TrainOutcome(result, model, templates)


def describe_result(result: TrainResult) -> list[str]:
    """What a run did, in the lines both faces print: how it ended and what validation said."""
    state = "cancelled" if result.cancelled else "finished"
    lines = [f"training {state} after {result.steps_done} of {result.total_steps} steps"]
    if result.stopped_early:
        lines[0] += " (stopped early: validation had stopped improving)"
    vanished = getattr(result, "vanished", None)
    if vanished:  # never "improved": a structure the model could not see was not learnt
        scores = (f" (validation {result.val_metric}: untrained {result.baseline_val:.4f}, best "
                  f"{result.best_val:.4f} at step {result.best_step})"
                  if result.improvement is not None else "")
        lines.append(f"not reported as an improvement{scores}: {'; '.join(vanished)} vanished at the model's "
                     "input size, so training could not learn it; train again at a larger --image-size or "
                     "without that structure")
    elif result.improved is not None:
        info = METRICS.get(result.val_metric)
        verdict = (f"improved by {result.improvement:.4f} at step {result.best_step}" if result.improved
                   else "training did not improve on the untrained model, which is kept")
        named = f"{info.name}, {info.basis}" if info is not None else "validation"
        lines.append(f"validation ({result.val_metric}: {named}): untrained {result.baseline_val:.4f}, "
                     f"best {result.best_val:.4f}: {verdict}")
    lines.append(f"adapter: {result.adapter_path}")
    return lines
