"""Palindrome fine-tuning of SAM2 from a few templates and a pool of unlabeled images.

One call, ``train``, used by the GUI (in a worker thread) and the CLI alike. A
run lives in a folder ``RUN_DIR`` (``engine.run_folder``):

- ``settings.json``: everything needed to reproduce the run (configuration,
  templates, structures, images, base model identity, versions, seed);
- ``log.jsonl``: one JSON line per optimizer step (loss and its parts, ``pseudo`` the
  pseudo-label term among them, learning rate, gradient norm, seconds, and ``val`` when
  validation ran at that step);
- ``adapter.pt``: the best weights so far by validation (LoRA weights only, or
  the fine-tuned modules in full mode), written with ``model.adapter_file``
  so that loading it onto another base model is refused;
- ``state.pt``: what ``resume=True`` needs (current weights, optimizer,
  scheduler, step, random states, best weights);
- ``result.json``: written when the call ends: ``finished``, ``cancelled``
  or ``failed`` (with the error).

Every file is written atomically (temporary file + rename), so a crash or a
cancel never leaves a half-written checkpoint.

What one step does (ALGORITHM.md): sample one template (all of its structures)
and one unlabeled image, run ``palindrome_step``, backward; after ``accumulate``
such palindromes, clip gradients and take an AdamW step (learning rate: linear
warm-up, then cosine decay). The image encoder never trains; its features are
computed once per image by ``FeatureEncoder`` and reused.

Pseudo-labels (``LossWeights.pseudo``, on by default): at step 0 and every
``pseudo_every`` steps the templates are propagated onto (a window of ``MAX_IMAGES`` of) the
unlabeled images with the weights as they are (successive windows go round the pool); the best review-scored
``pseudo_fraction`` of each structure's masks whose palindrome closes
(``pseudo_min_cycle``) become targets for the forward half of the palindromes that use
those images (``engine.pseudo_labels``). ``state.pt`` keeps them, so a resumed run is the
same run; ``log.jsonl`` has ``pseudo_seconds`` on the step after each remake.

Validation chooses the best checkpoint, never the noisy training loss
(``engine.checkpoint_choice``, which also says why these signals):
- ``pool_score`` (higher is better, a label-free proxy), with any number of templates: the
  mean review score of the templates' masks on a fixed held-out subset of the unlabeled
  images (not trained on);
- ``loo_iou`` (higher is better, against labels) only with ``validation="loo_iou"`` and two
  or more templates sharing a structure: each template is predicted from the memories of
  the others (``checkpoint_choice.leave_one_out_iou``), IoU per structure averaged (the
  templates are trained on too: why it is not the default, ``engine.checkpoint_choice``).
  ``val_loss`` (the palindrome loss on those images; with ``template_versions`` its backward
  half reconstructs a held-out augmented copy of the template) is still computed by
  ``_val_loss`` for the benchmarks but chooses nothing: it falls whatever the targets do.
Validation also runs before the first step (the base model's score, step 0): if
training never beats it, the saved adapter is the untrained one and the
result says so (``best_step == 0``, ``improved`` False).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from descriptron_sam2pal import UserError, __version__
from descriptron_sam2pal.atomic import atomic_write
from descriptron_sam2pal.model.adapter_file import save_adapter
from descriptron_sam2pal.model.build import LoadedModel
from descriptron_sam2pal.model.device import autocast_context, resolve_precision
from descriptron_sam2pal.model.dropout import set_memory_dropout
from descriptron_sam2pal.model.lora import (
    apply_lora,
    enable_full_finetune,
    load_trainable_state,
    trainable_parameters,
    trainable_state_dict,
)
from descriptron_sam2pal.engine import checkpoint_choice
from descriptron_sam2pal.engine.control import CancelToken, ProgressCallback, ProgressReporter, is_cancelled
from descriptron_sam2pal.engine.features import FeatureEncoder
from descriptron_sam2pal.engine.palindrome import (
    LossWeights,
    augment_letterboxed,
    palindrome_step,
    pseudo_label_loss,
)
from descriptron_sam2pal.engine.pseudo_labels import (MAX_IMAGES, MIN_CYCLE, PseudoLabels, pack_labels,
                                                      select_pseudo_labels, unpack_labels)
from descriptron_sam2pal.engine.preprocess import PreparedImage, prepare_image
from descriptron_sam2pal.engine.run_folder import (ADAPTER_FILE, RESULT_FILE, SETTINGS_FILE, STATE_FILE,
                                                   RunFolder)
from descriptron_sam2pal.engine.prepared_templates import Template, structure_names, vanished_structures
from descriptron_sam2pal.engine.validation_plan import plan_validation

log = logging.getLogger(__name__)

# Default learning rates. LoRA: B starts at zero and the update is low-rank, so
# a few hundred steps need a rate in the usual LoRA range (1e-4..1e-3) to move
# at all. Full fine-tuning changes the pretrained decoder/memory weights
# directly: SAM2's own fine-tuning recipe uses 5e-6 with large batches; from one
# template, much above 1e-5 overfits the decoder quickly.
DEFAULT_LORA_LR = 5e-4
#: Activations one structure keeps for the backward pass of a palindrome at 512 px on the CPU
#: (SAM2.1 tiny, fp32; the measured peaks: benchmarks/README.md, "Where the default job's time goes"),
#: and what one pass may keep on the CPU: the auto split of ``TrainConfig.objects_per_pass``.
OBJECT_BYTES_512 = 1.2e9
CPU_PASS_BYTES = 1.5e9
DEFAULT_FULL_LR = 1e-5


#: Settings added since runs were first saved whose value before they existed is not their
#: default now: a run saved without one resumes with that value (``RunFolder.check_resumable``
#: lets a missing setting through when this call has the default).
SETTINGS_BEFORE_THEY_EXISTED = {"memory_dropout": None,  # SAM2's own dropout ran
                                "structure_share": 1.0}  # every structure in every step


class TrainingError(UserError):
    """Training could not go on (diverged, no gradient, nothing to train on)."""


@dataclass
class TrainConfig:
    """Hyper-parameters of a palindrome fine-tuning run.

    ``steps`` counts optimizer steps; each uses ``accumulate`` palindromes
    (one template x one unlabeled image each). ``lr=None`` picks
    ``DEFAULT_LORA_LR`` or ``DEFAULT_FULL_LR``; ``lora_alpha=None`` is
    ``2 * lora_rank``; ``warmup_steps=None`` is ``min(25, steps // 10)`` (at
    least 1). ``validate_every=0`` turns validation off (the adapter is then the
    last step's weights). ``autocast=None``: bf16 on CUDA and on CPUs with native bf16
    (AVX512-BF16 / AMX, ``model.device.resolve_precision``), fp32 elsewhere; on the beetle
    test-bed bf16 training matched fp32 on the same seeds, within the seed spread (PAL,
    ``quality.py --quick``, 3 seeds; benchmarks/testbed/README.md, issue 13). The image size and
    device are the model's (``build_model``).
    """

    steps: int = 300
    lr: float | None = None
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.05  # the cosine decays to lr * min_lr_ratio at the last step
    lora_rank: int = 8
    lora_alpha: float | None = None
    lora_dropout: float = 0.0
    full: bool = False
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    accumulate: int = 1
    seed: int = 0
    validate_every: int = 25
    # >0: stop when this many validations in a row have not beaten the best so far; the weights
    # kept are the best validation's either way, so it changes only how long a run takes.
    # Resuming may change it, as it may change ``steps``. Off by default: on the class-agnostic
    # test-bed the held-out review score fell at step 25 on every seed and, where training
    # helped, got back above the untrained model's only at step 50-75; 4 (100 steps) stopped
    # such a run before its gain (benchmarks/testbed/README.md, "Session 10").
    stop_after: int = 0
    validation: str = "auto"  # "auto" (engine.validation_plan decides), "loo_iou" or "pool_score"
    checkpoint_every: int = 25  # state.pt (for resume) every this many steps, and at the end
    val_images: int = 4  # held-out unlabeled images (validation with one template); at most a
    # fifth of the unlabeled images are held out (at least one when there are two or more)
    loss: LossWeights = field(default_factory=LossWeights)
    autocast: bool | None = None
    # >0: that many augmented copies of each template (flips, rotation, scale, colour; made
    # once, seeded) and the backward half of each palindrome reconstructs a randomly chosen
    # copy instead of the template itself (the forward half still starts from the real
    # template). With ``val_loss`` validation (no plan picks it since issue 25), one more copy
    # per template, never trained on, is what the validation palindromes reconstruct.
    template_versions: int = 0
    # With ``loss.pseudo`` > 0: every ``pseudo_every`` steps (from step 0) the best-scored
    # ``pseudo_fraction`` of the unlabeled images per structure become pseudo-labels
    # (engine.pseudo_labels) that the forward half is also supervised by; before that, the
    # best ``pseudo_templates`` masks per structure join the templates (0: the templates alone).
    # Every 125 steps since the structures take turns (``structure_share``): as many palindromes
    # of each structure between two remakes as 50 steps of every structure had, and the remakes
    # back under a quarter of the training time (issue 21; the class-agnostic quality line at 300
    # steps held: benchmarks/README.md, "Where the default job's time goes").
    pseudo_fraction: float = 0.25
    pseudo_every: int = 125
    pseudo_templates: int = 4
    pseudo_min_cycle: float = MIN_CYCLE  # a pseudo-label's palindrome must close this well (IoU)
    # How many of a template's structures go through one forward and backward pass together:
    # the objects of a palindrome are independent batch rows, so the gradient is the same for
    # any split, but the activations kept for the backward pass grow with the rows of a pass
    # (``OBJECT_BYTES_512`` each at 512 px on the CPU). 0 (auto): ``object_rows``. With
    # ``loss.overlap`` (pairs of structures) always all.
    objects_per_pass: int = 0
    # SAM2's dropout in memory attention while training (``model.dropout``): None keeps the
    # checkpoint's (0.1 in SAM2.1). Off (0) by default since issue 21: a training step 10% faster
    # on an AVX2 CPU in fp32 (torch's fused attention kernel instead of its math path) and 4% with
    # native bf16, 17% less peak memory (SAM2.1 tiny at 512 px, a 2-core AMD EPYC), the
    # class-agnostic quality line unchanged within seed noise (benchmarks/README.md, "Where the
    # default job's time goes"). A run saved before the setting existed resumes with SAM2's
    # dropout (``SETTINGS_BEFORE_THEY_EXISTED``).
    memory_dropout: float | None = 0.0
    # The share of a template's structures one palindrome trains (at least one; 1: all). A step's
    # forward and backward are per structure, so fewer cost proportionally less; the structures
    # take turns (``step_structures``), so each is trained as often as the others. 0.4 by default
    # since issue 21 (2 of 5 structures a step: 3.87 s against 10.74 s on an AVX2 CPU, tiny at
    # 512 px, one thread; a tenth of the default job 222.5 s against 433.9 s), the class-agnostic
    # quality line unchanged at the Balanced preset's 300 steps, not at 150 (benchmarks/README.md,
    # "Where the default job's time goes"). A run saved before the setting existed resumes with
    # every structure (``SETTINGS_BEFORE_THEY_EXISTED``).
    structure_share: float = 0.4

    def step_structures(self, k: int, turn: int) -> list[int]:
        """Which of a template's ``k`` structures palindrome number ``turn`` of the run trains:
        ``ceil(structure_share * k)`` of them, taking turns (all when that is ``k``)."""
        per = max(1, math.ceil(self.structure_share * k - 1e-9))
        if per >= k:
            return list(range(k))
        start = (turn * per) % k
        return sorted((start + j) % k for j in range(per))

    def object_rows(self, k: int, device, image_size: int = 512) -> list[list[int]]:
        """The rows (structures) of a K-structure palindrome, split into the passes of
        ``objects_per_pass``; auto (0): all together on a GPU, and on the CPU as many as keep
        the activations near ``CPU_PASS_BYTES`` (one at a time from 512 px up)."""
        per = self.objects_per_pass
        if not per:
            if torch.device(device).type == "cuda":
                per = k
            else:
                per = max(1, int(CPU_PASS_BYTES / (OBJECT_BYTES_512 * (image_size / 512) ** 2)))
        if self.loss.overlap:
            per = k
        return [list(range(a, min(k, a + per))) for a in range(0, k, per)]

    def use_bf16(self, device) -> bool:
        """Whether training runs under bf16 autocast on ``device`` (see ``autocast``)."""
        if self.autocast is not None:
            return bool(self.autocast)
        return resolve_precision(device) == "bf16"

    @property
    def mode(self) -> str:
        return "full" if self.full else "lora"

    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return DEFAULT_FULL_LR if self.full else DEFAULT_LORA_LR

    @property
    def effective_lora_alpha(self) -> float:
        return float(2 * self.lora_rank if self.lora_alpha is None else self.lora_alpha)

    @property
    def effective_warmup(self) -> int:
        if self.warmup_steps is not None:
            return int(self.warmup_steps)
        return max(1, min(25, self.steps // 10))

    def check(self) -> None:
        """UserError for values a run cannot use."""
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be at least 1 (got {self.steps})")
        if self.effective_lr <= 0 or not math.isfinite(self.effective_lr):
            problems.append(f"the learning rate must be a positive number (got {self.lr})")
        if self.accumulate < 1:
            problems.append(f"accumulate must be at least 1 (got {self.accumulate})")
        if self.lora_rank < 1:
            problems.append(f"the LoRA rank must be at least 1 (got {self.lora_rank})")
        if self.weight_decay < 0 or self.grad_clip < 0:
            problems.append("weight decay and gradient clipping must not be negative")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            problems.append(f"min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if self.template_versions < 0:
            problems.append(f"template_versions must not be negative (got {self.template_versions})")
        if not 0.0 < self.pseudo_fraction <= 1.0 or self.pseudo_every < 1 or self.pseudo_templates < 0 \
                or not 0.0 <= self.pseudo_min_cycle <= 1.0:
            problems.append(
                f"pseudo_fraction must be in (0, 1], pseudo_every at least 1, pseudo_templates not "
                f"negative and pseudo_min_cycle in [0, 1] (got {self.pseudo_fraction}, "
                f"{self.pseudo_every}, {self.pseudo_templates}, {self.pseudo_min_cycle})"
            )
        if self.loss.pseudo < 0:
            problems.append(f"the pseudo-label weight must not be negative (got {self.loss.pseudo})")
        if self.objects_per_pass < 0:
            problems.append(f"objects_per_pass must not be negative (got {self.objects_per_pass})")
        if not 0.0 < self.structure_share <= 1.0:
            problems.append(f"structure_share must be in (0, 1] (got {self.structure_share})")
        if self.memory_dropout is not None and not 0.0 <= self.memory_dropout < 1.0:
            problems.append(f"memory_dropout must be in [0, 1) (got {self.memory_dropout})")
        if min(self.validate_every, self.checkpoint_every, self.val_images, self.stop_after) < 0:
            problems.append("validate_every, checkpoint_every, val_images and stop_after must not be "
                            "negative")
        if self.effective_warmup < 0:
            problems.append(f"warmup_steps must not be negative (got {self.warmup_steps})")
        if problems:
            raise UserError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """Plain values, with the defaults that ``None`` stands for resolved."""
        d = asdict(self)
        d["resolved"] = {"lr": self.effective_lr, "lora_alpha": self.effective_lora_alpha,
                         "warmup_steps": self.effective_warmup, "mode": self.mode}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        if isinstance(values.get("loss"), dict):
            values["loss"] = LossWeights(**values["loss"])
        return cls(**values)


@dataclass
class TrainResult:
    """What a ``train`` call did. ``best_val`` is None when validation was off."""

    run_dir: Path
    steps_done: int  # optimizer steps completed in this run folder (all calls together)
    total_steps: int
    best_step: int  # the step whose weights adapter.pt holds (0: the untrained model)
    best_val: float | None
    val_metric: str | None  # "loo_iou", "pool_score" (validation_plan.METRICS) or None
    baseline_val: float | None  # validation of the untrained model
    cancelled: bool
    history: list[dict]  # the log.jsonl lines of the whole run
    adapter_path: Path
    encoder_passes: int  # images sent through the image encoder by this call
    skipped_images: list[dict] = field(default_factory=list)  # {"source", "error"}
    # outlines that keep (almost) no pixel at the model's input size
    # (engine.prepared_templates.vanished_structures)
    vanished: list[str] = field(default_factory=list)
    # the run stopped before ``total_steps``: ``TrainConfig.stop_after`` validations in a row
    # did not beat the best one
    stopped_early: bool = False

    @property
    def higher_is_better(self) -> bool:
        return self.val_metric is not None and checkpoint_choice.metric_info(self.val_metric).higher_is_better

    @property
    def improvement(self) -> float | None:
        """How much the kept weights beat the untrained model on validation, signed so that
        positive is better (in the metric's units); None without validation."""
        return checkpoint_choice.improvement(self.val_metric, self.baseline_val, self.best_val)

    @property
    def improved(self) -> bool | None:
        """True when the kept weights are trained ones that validated better than the
        untrained model; False when the untrained model was kept (training did not help), and
        always when an outline vanished at the model's input size (``vanished``: that
        structure was never learnt); None without validation."""
        if self.vanished:
            return False
        if self.improvement is None:
            return None
        return self.best_step > 0 and self.improvement > 0


def train(model: LoadedModel, templates: Sequence[Template],
          unlabeled: Sequence[PreparedImage | str | os.PathLike], run_dir: str | os.PathLike,
          config: TrainConfig | None = None, progress: ProgressCallback | None = None,
          cancel: CancelToken | None = None, resume: bool = False,
          feature_cache_dir: str | os.PathLike | None = None,
          log_fn: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune ``model`` in place with palindrome self-training; see the module docstring.

    ``model`` must be freshly built (LoRA is injected into it, or its modules
    are unfrozen for full fine-tuning); when the call returns it holds the
    best weights (the same as ``adapter.pt``) and is in eval mode.
    ``templates`` must be prepared at ``model.image_size``. ``unlabeled``:
    prepared images or image paths; a path that cannot be read is skipped and
    named in a warning (``log_fn`` and ``result.skipped_images``); none usable
    is a UserError. While paths are read, ``progress`` gets ``Progress("load", i, n)``;
    then a ``Progress("train", step, steps)`` after
    every step with metrics ``loss``, ``lr`` and ``val`` (when computed), and an
    ETA. ``cancel`` is checked between steps: the run then validates, saves and
    returns with ``cancelled=True``. ``resume=True`` continues the run in
    ``run_dir`` from its ``state.pt`` (the same templates, images and settings;
    only ``steps`` may grow). Failures raise (``TrainingError`` for a
    diverged loss) after writing ``result.json`` with status ``failed``; they
    are never reported as success, and the model is then in an undefined
    state (build a fresh one).
    """
    run = _Run(model, list(templates), list(unlabeled), Path(run_dir), config or TrainConfig(),
               progress, cancel, resume, feature_cache_dir, log_fn)
    return run.execute()


class _Run:
    """One ``train`` call: setup, the step loop, validation and checkpoints."""

    def __init__(self, model: LoadedModel, templates: list[Template], unlabeled: list,
                 run_dir: Path, config: TrainConfig, progress, cancel, resume: bool,
                 feature_cache_dir, log_fn) -> None:
        config.check()
        self.model, self.sam, self.device = model, model.sam, model.device
        self.config, self.progress, self.cancel, self.resume = config, progress, cancel, resume
        self.run_dir, self.folder = run_dir, RunFolder(run_dir)
        self.log_fn = log_fn
        self.feature_cache_dir = feature_cache_dir
        self.templates = self._check_templates(templates)
        self.structures = structure_names(self.templates)
        self.vanished = vanished_structures(self.templates)
        if self.vanished:
            self._say(f"{'; '.join(self.vanished)}: vanished at the model's input size, so training cannot "
                      "learn it; this run will not be reported as an improvement")
        self.folder.check_start(resume)  # before loading hundreds of images
        self.skipped: list[dict] = []
        self.pool = self._load_unlabeled(unlabeled)
        self.val_metric, self.train_pool, self.val_pool = self._plan_validation()

    # -- setup ------------------------------------------------------------------
    def _say(self, message: str) -> None:
        log.info(message)
        if self.log_fn is not None:
            self.log_fn(message)

    def _check_templates(self, templates: list[Template]) -> list[Template]:
        if not templates:
            raise UserError("training needs at least one template (an image with outlined structures)")
        size = self.model.image_size
        for t in templates:
            if t.image.size != size:
                raise ValueError(f"template {t.image_id} was prepared at {t.image.size} px but the "
                                 f"model takes {size} px; prepare it with prepare_image(..., {size})")
        ids = [t.image_id for t in templates]
        if len(set(map(str, ids))) != len(ids):
            raise UserError(f"the same template is given twice ({ids}); give each annotated image once")
        return templates

    def _load_unlabeled(self, items: list) -> list[PreparedImage]:
        size = self.model.image_size
        template_keys = {t.image.key for t in self.templates}
        pool, seen, same_as_template = [], set(), 0
        paths = sum(not isinstance(item, PreparedImage) for item in items)
        reporter = ProgressReporter("load", len(items), self.progress) if paths else None
        for n, item in enumerate(items, 1):
            if is_cancelled(self.cancel):
                break  # the step loop then stops at once
            if reporter is not None:
                reporter.report(n, "reading unlabeled images")
            if isinstance(item, PreparedImage):
                if item.size != size:
                    raise ValueError(f"unlabeled image {item.source or item.key[:12]} was prepared at "
                                     f"{item.size} px but the model takes {size} px")
                image = item
            else:
                try:
                    image = prepare_image(item, size)
                except (UserError, OSError, ValueError) as exc:
                    self.skipped.append({"source": str(item), "error": str(exc)})
                    continue
            if image.key in template_keys:
                same_as_template += 1  # a palindrome of a template with itself teaches nothing
                continue
            if image.key in seen:
                continue
            seen.add(image.key)
            pool.append(image)
        if self.skipped:
            names = ", ".join(Path(s["source"]).name for s in self.skipped[:10])
            more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            self._say(f"warning: {len(self.skipped)} unlabeled image(s) could not be read and are "
                      f"skipped: {names}{more}")
            for s in self.skipped:
                log.warning("skipped %s: %s", s["source"], s["error"])
        if same_as_template:
            self._say(f"{same_as_template} unlabeled image(s) are template images; not used as unlabeled")
        if not pool:
            raise UserError("no usable unlabeled image: palindrome training needs at least one image "
                            "without annotations besides the templates" +
                            (f" ({len(self.skipped)} could not be read)" if self.skipped else ""))
        return pool

    def _plan_validation(self):
        """(metric, training images, held-out images) as ``plan_validation`` decides."""
        plan = plan_validation([t.masks for t in self.templates], len(self.pool),
                               validate_every=self.config.validate_every,
                               val_images=self.config.val_images, seed=self.config.seed,
                               metric=None if self.config.validation == "auto" else self.config.validation)
        for note in plan.notes:
            self._say(note)
        if plan.on_training_images:
            return plan.metric, list(self.pool), list(self.pool)
        return (plan.metric, [im for i, im in enumerate(self.pool) if i not in plan.held_out],
                [im for i, im in enumerate(self.pool) if i in plan.held_out])

    def _settings(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        def pkg(name):
            try:
                return version(name)
            except PackageNotFoundError:
                return None

        def image_entry(im: PreparedImage) -> dict:
            return {"source": im.source, "key": im.key, "height": im.letterbox.height,
                    "width": im.letterbox.width}

        return {
            "package_version": __version__,
            "versions": {"torch": torch.__version__, "sam2": pkg("sam2"), "peft": pkg("peft")},
            "config": self.config.to_dict(),
            "seed": self.config.seed,
            "model": {"config_name": self.model.config_name, "checkpoint_hash": self.model.checkpoint_hash,
                      "checkpoint_path": str(getattr(self.model, "checkpoint_path", None) or "") or None,
                      "image_size": self.model.image_size, "device": str(self.device)},
            "structures": self.structures,
            "templates": [{"id": t.image_id, "structures": t.structures, **image_entry(t.image)}
                          for t in self.templates],
            "unlabeled": [image_entry(im) for im in self.train_pool],
            "validation": {"metric": self.val_metric, "images": [image_entry(im) for im in self.val_pool]},
            "skipped_images": self.skipped,
        }

    def _prepare_model(self) -> None:
        torch.manual_seed(self.config.seed)  # LoRA initialisation is random
        if self.config.full:
            enable_full_finetune(self.sam)
        else:
            apply_lora(self.sam, rank=self.config.lora_rank, alpha=self.config.effective_lora_alpha,
                       dropout=self.config.lora_dropout)
        if self.config.memory_dropout is not None:
            set_memory_dropout(self.sam, self.config.memory_dropout)
        self.sam.to(self.device)
        leaked = [n for n, p in self.sam.image_encoder.named_parameters() if p.requires_grad]
        if leaked:
            raise RuntimeError(f"image encoder parameters are trainable ({leaked[:3]}...); the cached "
                               "features would go stale")
        self.params = trainable_parameters(self.sam)
        if not self.params:
            raise TrainingError("nothing to train: the model has no trainable parameters")
        self._train_mode()

    def _train_mode(self) -> None:
        self.sam.train()
        self.sam.image_encoder.eval()

    def _lr_factor(self, step: int) -> float:
        """Multiplier of the base learning rate for optimizer step ``step`` (0-based)."""
        warmup, total = self.config.effective_warmup, self.config.steps
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, total - warmup - 1)
        progress = min(1.0, (step - warmup) / span)
        floor = self.config.min_lr_ratio
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    # -- files --------------------------------------------------------------------
    def _save_adapter(self) -> None:
        hyper = self.config.to_dict()
        hyper.update(best_step=self.best_step, val_metric=self.val_metric, best_val=self.best_val)
        save_adapter(self.run_dir / ADAPTER_FILE, self.model, structures=self.structures,
                     template_ids=[t.image_id for t in self.templates], hyperparameters=hyper)

    def _save_state(self) -> None:
        state = {
            "step": self.step, "trainable": trainable_state_dict(self.sam),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.getstate(), "python_random": random.getstate(),
            "numpy_random": _numpy_state_plain(), "torch_random": torch.get_rng_state(),
            "cuda_random": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "best_step": self.best_step, "best_val": self.best_val, "baseline_val": self.baseline_val,
            "best_state": self.best_state, "pseudo_labels": pack_labels(self._pseudo),
            "untrained_masks": None if self.untrained_masks is None else self.untrained_masks.to_state(),
        }
        atomic_write(self.run_dir / STATE_FILE, lambda f: torch.save(state, f))

    def _load_state(self) -> None:
        path = self.run_dir / STATE_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"cannot resume: {path} is unreadable ({str(exc).splitlines()[0][:200]}); "
                            "start a new run") from exc
        load_trainable_state(self.sam, state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.setstate(state["sampler"])
        random.setstate(state["python_random"])
        kind, keys, pos, has_gauss, cached = state["numpy_random"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch_random"])
        if state.get("cuda_random") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_random"])
        self.step = int(state["step"])
        self.best_step, self.best_val = int(state["best_step"]), state["best_val"]
        self.baseline_val, self.best_state = state["baseline_val"], state["best_state"]
        self._pseudo = unpack_labels(state.get("pseudo_labels"), self.model.image_size)
        anchor = state.get("untrained_masks")
        self.untrained_masks = None if anchor is None else checkpoint_choice.HeldOutMasks.from_state(anchor)

    # -- the run --------------------------------------------------------------------
    def execute(self) -> TrainResult:
        run_dir = self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = self._settings()
        if self.resume:
            saved = self.folder.check_resumable(settings, TrainConfig().to_dict()).get("config", {})
            ran = {k: v for k, v in SETTINGS_BEFORE_THEY_EXISTED.items() if k not in saved}
            if ran:  # the run goes on as it ran
                self.config = replace(self.config, **ran)
                settings = self._settings()

        self._prepare_model()
        self.encoder = FeatureEncoder(self.model, cache_dir=self.feature_cache_dir)
        self.optimizer = torch.optim.AdamW(self.params, lr=self.config.effective_lr,
                                           weight_decay=self.config.weight_decay)
        # A plain function (not a bound method): LambdaLR then keeps nothing of it in its state.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: self._lr_factor(s))
        self.sampler = _PairSampler(len(self.templates), len(self.train_pool), self.config.seed)
        self.step, self.best_step, self.best_val, self.baseline_val = 0, 0, None, None
        self.stopped_early = False
        self.untrained_masks: checkpoint_choice.HeldOutMasks | None = None  # set at step 0's validation
        self._mostly_better = True  # the last validation improved most held-out masks (pool_score)
        self.best_state: dict | None = None
        self._masks: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._versions = self._make_versions()
        self._pseudo: PseudoLabels | None = None  # made at step 0 (a resume restores them)
        history: list[dict] = []
        if self.resume:
            self._load_state()
            history = self.folder.log_until(self.step)  # steps logged after the state are redone
            self._say(f"resuming at step {self.step} of {self.config.steps}")
        else:
            random.seed(self.config.seed)
            np.random.seed(self.config.seed % (2 ** 32))
        self.folder.write_json(SETTINGS_FILE, settings)

        try:
            cancelled = self._loop(history)
        except BaseException as exc:
            self.folder.write_json(
                RESULT_FILE, {"status": "failed", "step": self.step, "error": f"{type(exc).__name__}: {exc}"}
            )
            raise
        if self.best_state is not None:
            load_trainable_state(self.sam, self.best_state)
        self.sam.eval()
        result = TrainResult(
            run_dir=run_dir, steps_done=self.step, total_steps=self.config.steps, best_step=self.best_step,
            best_val=self.best_val, val_metric=self.val_metric, baseline_val=self.baseline_val,
            cancelled=cancelled, history=history, adapter_path=run_dir / ADAPTER_FILE,
            encoder_passes=self.encoder.encoder_passes, skipped_images=self.skipped, vanished=self.vanished,
            stopped_early=self.stopped_early)
        self.folder.write_json(RESULT_FILE, {
            "status": "cancelled" if cancelled else "finished", "steps_done": self.step,
            "total_steps": self.config.steps, "best_step": self.best_step, "val_metric": self.val_metric,
            "best_val": self.best_val, "baseline_val": self.baseline_val,
            "improved": result.improved, "improvement": result.improvement, "vanished": self.vanished,
            "stopped_early": self.stopped_early,
            "val_signal": None if not self.val_metric else {
                "name": checkpoint_choice.metric_info(self.val_metric).name,
                "against_labels": checkpoint_choice.metric_info(self.val_metric).against_labels}})
        if self.val_metric and self.best_step == 0 and self.step > 0:
            self._say(f"validation ({self.val_metric}) never improved on the untrained model "
                      f"({self.baseline_val:.4f}); the saved adapter leaves the model unchanged")
        return result

    def _loop(self, history: list[dict]) -> bool:
        config = self.config
        reporter = ProgressReporter("train", config.steps, self.progress, start_done=self.step)
        if self.step == 0:
            if self.val_metric and not is_cancelled(self.cancel):
                self._say(checkpoint_choice.describe(self.val_metric))
                self.baseline_val = self.best_val = self._validate()
                self._say(f"untrained model: {self.val_metric} {self.baseline_val:.4f}")
                # Step 0 of the curve: what training has to beat.
                reporter.report(0, "untrained model", val=self.baseline_val, val_metric=self.val_metric)
            self.best_state = trainable_state_dict(self.sam)
            self._save_adapter()  # a usable adapter exists from the start
            self._save_state()  # and a run that fails later can resume
        start_step = self.step
        any_gradient = False
        cancelled = False
        while self.step < config.steps:
            pseudo_seconds = self._refresh_pseudo_labels()  # stops early, unused, on a Cancel
            if is_cancelled(self.cancel):
                cancelled = True
                break
            entry = self._train_step()
            if pseudo_seconds:
                entry["pseudo_seconds"] = round(pseudo_seconds, 4)
            any_gradient = any_gradient or entry["grad_norm"] > 0
            self.step += 1
            entry = {"step": self.step, **entry}
            validated = bool(self.val_metric) and (
                self.step % config.validate_every == 0 or self.step == config.steps
            )
            if validated:
                entry["val"] = self._validate()
                self._consider_best(entry["val"])
            elif not self.val_metric:
                self.best_step, self.best_state = self.step, None
            self.folder.append_log(entry)
            history.append(entry)
            if not self.val_metric and (self.step == config.steps or self._checkpoint_due()):
                self._save_adapter()
            if self._checkpoint_due() or self.step == config.steps:
                self._save_state()
            metrics = {"loss": entry["loss"], "lr": entry["lr"]}
            if "val" in entry:
                metrics.update(val=entry["val"], val_metric=self.val_metric)
            reporter.report(self.step, f"step {self.step}/{config.steps}", **metrics)
            if validated and self._stalled():
                self.stopped_early = True
                in_a_row = ("1 validation" if config.stop_after == 1
                            else f"{config.stop_after} validations in a row")
                self._say(f"stopping early at step {self.step} of {config.steps}: {in_a_row} "
                          f"did not beat step {self.best_step}'s "
                          f"({self.best_val:.4f}), which is kept; stop_after 0 trains every step")
                self._save_state()
                break
        if self.step > start_step and not any_gradient:
            raise TrainingError("no gradient reached the trained weights in any step, so nothing was "
                                "learned; check that the templates' structures are visible in the images")
        if cancelled:
            # No validation here: Cancel answers within one step. The adapter keeps the best
            # validated weights so far (with validation), else the last step's.
            self._say(f"cancelled after step {self.step} of {config.steps}")
            if not self.val_metric:
                self._save_adapter()
            self._save_state()
        return cancelled

    def _refresh_pseudo_labels(self) -> float:
        """Remake the pseudo-labels at every ``pseudo_every``-th step with the weights as they
        are (a resumed run has those of its last saved state); returns the seconds it took.
        Each remake takes part of the unlabeled images, ``pseudo_labels.MAX_IMAGES`` at most:
        the next window of a seeded order of them, so that successive remakes go round the
        whole pool; the labels of images outside the window are those an earlier remake made."""
        if not self.config.loss.pseudo:
            return 0.0
        if self._pseudo is not None and self.step % self.config.pseudo_every:
            return 0.0
        t0 = time.monotonic()
        n = len(self.train_pool)
        if n > MAX_IMAGES:
            order = np.random.RandomState((self.config.seed * 104729 + 17) % (2 ** 32)).permutation(n)
            start = (self.step // self.config.pseudo_every) * MAX_IMAGES
            subset = sorted(int(order[(start + i) % n]) for i in range(MAX_IMAGES))
        else:
            subset = list(range(n))
        labels = select_pseudo_labels(self.model, self.templates, [self.train_pool[i] for i in subset],
                                      self.encoder, self.config.pseudo_fraction, self.config.pseudo_templates,
                                      self.config.pseudo_min_cycle, self.cancel)
        if labels is None:  # cancelled: the loop stops before the next step
            return 0.0
        window = set(subset)
        kept = {i: masks for i, masks in (self._pseudo or {}).items() if i not in window}
        self._pseudo = kept | {subset[i]: masks for i, masks in labels.items()}
        made = sum(len(v) for v in labels.values())
        if made:
            self._say(f"step {self.step}: pseudo-labels remade on {len(subset)} of {n} unlabeled image(s): "
                      f"{made} outline(s) (per structure the best-scored {self.config.pseudo_fraction:.0%} "
                      f"whose round trip to the template works); "
                      f"{sum(len(v) for v in self._pseudo.values())} in all")
        else:
            self._say(
                f"step {self.step}: pseudo-labels remade on {len(subset)} of {n} unlabeled image(s), none "
                f"new: no outline there leads back to the template"
                + ("; learning from the palindromes alone until the next remake" if not kept else "")
            )
        return time.monotonic() - t0

    def _stalled(self) -> bool:
        """Whether ``stop_after`` validations in a row since the best one did not beat it (and
        steps are left to skip)."""
        every, wait = self.config.validate_every, self.config.stop_after
        return bool(wait and every and self.step < self.config.steps
                    and self.step - self.best_step >= wait * every)

    def _checkpoint_due(self) -> bool:
        every = self.config.checkpoint_every
        return every > 0 and self.step % every == 0

    def _consider_best(self, value: float) -> None:
        if not checkpoint_choice.better(self.val_metric, value, self.best_val):
            return
        if not self._mostly_better:
            self._say(f"step {self.step}: {self.val_metric} {value:.4f} beats step {self.best_step}'s "
                      f"({self.best_val:.4f}), but fewer held-out masks improved than got worse; not kept")
            return
        self.best_val, self.best_step = value, self.step
        self.best_state = trainable_state_dict(self.sam)
        self._save_adapter()

    def _template_tensors(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index not in self._masks:
            t = self.templates[index]
            self._masks[index] = (t.model_masks(t.structures, self.device), t.valid(self.device))
        return self._masks[index]

    def _make_versions(self) -> list[list[tuple[PreparedImage, torch.Tensor, torch.Tensor]]]:
        """Per template: ``template_versions`` augmented copies (+1 for validation with
        ``val_loss``), each (image, masks, valid); the same on every call with the same seed."""
        n = self.config.template_versions
        if n == 0:
            return [[] for _ in self.templates]
        n += self.val_metric == "val_loss"
        versions = []
        for i, t in enumerate(self.templates):
            rng = np.random.RandomState((self.config.seed * 7919 + i) % (2 ** 32))
            masks, valid = self._template_tensors(i)
            made = []
            for v in range(n):
                pixels, vmasks, vvalid = augment_letterboxed(t.image.pixels, masks, valid, rng)
                image = PreparedImage(pixels=pixels, letterbox=t.image.letterbox,
                                      key=f"{t.image.key}~v{self.config.seed}.{v}:" +
                                      hashlib.sha256(pixels.tobytes()).hexdigest(),
                                      source=f"{t.image.source or t.image_id}~copy{v}")
                made.append((image, vmasks, vvalid))
            versions.append(made)
        return versions

    def _palindrome(self, t_index: int, image: PreparedImage, version: int | None = None,
                    rows: list[int] | None = None):
        """One palindrome; ``version``: index of the template copy the backward half reconstructs;
        ``rows``: which of the template's structures (all by default)."""
        masks, valid = self._template_tensors(t_index)
        if rows is not None:
            masks = masks[rows]
        extra = {}
        if version is None:
            feats0, feats1 = self.encoder.encode([self.templates[t_index].image, image])
        else:
            v_image, v_masks, v_valid = self._versions[t_index][version]
            feats0, feats_v, feats1 = self.encoder.encode([self.templates[t_index].image, v_image, image])
            extra["recon"] = (feats_v, v_masks if rows is None else v_masks[rows], v_valid)
        with autocast_context(self.device, self.config.use_bf16(self.device)):
            return palindrome_step(self.sam, feats0, masks, valid, feats1, self.config.loss, **extra)

    def _train_step(self) -> dict:
        config = self.config
        t0 = time.monotonic()
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        totals = {"loss": 0.0, "bce": 0.0, "dice": 0.0, "presence": 0.0, "iou_error": 0.0, "cycle_iou": 0.0,
                  "pseudo": 0.0}
        used = []
        for turn in range(config.accumulate):
            t_index = self.sampler.next_template()
            i_image = self.sampler.next_image()
            image = self.train_pool[i_image]
            version = (self.sampler.next_version(config.template_versions)
                       if config.template_versions else None)
            template = self.templates[t_index]
            where = f"template {template.image_id}, image {image.source or image.key[:12]}"
            names = template.structures
            labels = (self._pseudo or {}).get(i_image, {})
            image_valid = torch.from_numpy(image.valid_mask()).to(self.device)
            trained = config.step_structures(len(names), self.step * config.accumulate + turn)
            for part in config.object_rows(len(trained), self.device, self.model.image_size):
                rows = [trained[r] for r in part]
                try:
                    out = self._palindrome(t_index, image, version, rows)
                    loss = out.loss
                    extra = pseudo_label_loss(
                        out.target_logits, [names[r] for r in rows], labels, image_valid
                    )
                    if extra is not None:
                        loss = loss + config.loss.pseudo * extra
                        totals["pseudo"] += float(extra.detach()) / config.accumulate
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"training diverged at step {self.step + 1} ({where}): the loss is "
                            f"{loss.item()}; lower the learning rate (now {config.effective_lr:g}) or check "
                            "the images"
                        )
                    (loss / config.accumulate).backward()
                except TrainingError:
                    raise
                except Exception as exc:
                    exc.add_note(f"in training step {self.step + 1} ({where})")
                    raise
                totals["loss"] += loss.item() / config.accumulate
                for key, value in (("bce", out.bce), ("dice", out.dice), ("presence", out.presence),
                                   ("iou_error", out.iou_error)):
                    totals[key] += float(value.sum()) / config.accumulate
                totals["cycle_iou"] += float(out.cycle_iou.sum()) / len(trained) / config.accumulate
            used.append({"template": template.image_id, "image": image.source or image.key[:12]}
                        | ({"copy": version} if version is not None else {})
                        | ({"structures": [names[r] for r in trained]} if len(trained) < len(names) else {}))
        if all(p.grad is None for p in self.params):
            raise TrainingError(f"step {self.step + 1}: the loss is not connected to the trained weights")
        max_norm = config.grad_clip if config.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if not math.isfinite(grad_norm):
            raise TrainingError(f"training diverged at step {self.step + 1}: the gradient is {grad_norm}; "
                                f"lower the learning rate (now {config.effective_lr:g})")
        self.optimizer.step()
        self.scheduler.step()
        entry = {**totals, "lr": lr, "grad_norm": grad_norm, "seconds": round(time.monotonic() - t0, 4)}
        entry["pairs"] = used
        return entry

    # -- validation ------------------------------------------------------------------
    @torch.no_grad()
    def _validate(self) -> float:
        self.sam.eval()
        try:
            with autocast_context(self.device, self.config.use_bf16(self.device)):
                value = {"loo_iou": self._loo_iou, "val_loss": self._val_loss,
                         "pool_score": self._pool_score}[self.val_metric]()
        finally:
            self._train_mode()
        if not math.isfinite(value):
            raise TrainingError(f"validation at step {self.step} gave {value}; the model has diverged; "
                                f"lower the learning rate (now {self.config.effective_lr:g})")
        return value

    def _val_loss(self) -> float:
        # With template copies, the held-out copy (the last one) is reconstructed.
        version = self.config.template_versions if self.config.template_versions else None
        losses = [float(self._palindrome(ti, image, version).loss)
                  for ti in range(len(self.templates)) for image in self.val_pool]
        return float(np.mean(losses))

    def _pool_score(self) -> float:
        current = checkpoint_choice.held_out_masks(self.model, self.templates, self.val_pool, self.encoder)
        if self.step == 0:  # the untrained model: what every later validation is anchored to
            self.untrained_masks = current
        if self.untrained_masks is None:  # a run begun before anchoring: go on as it began
            return float(current.scores.mean())
        if self.step:
            self._mostly_better = checkpoint_choice.mostly_better(current, self.untrained_masks)
        return checkpoint_choice.anchored_review_score(current, self.untrained_masks)

    def _loo_iou(self) -> float:
        return checkpoint_choice.leave_one_out_iou(self.model, self.templates, self.encoder)


class _PairSampler:
    """Which template and which unlabeled image each palindrome uses.

    Both are drawn from shuffled rounds (without replacement within a round),
    so every template is used within each ``n_templates`` palindromes and every
    image within each ``n_images``: a short run cannot leave a template out by
    chance, as independent draws could.
    """

    def __init__(self, n_templates: int, n_images: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._sizes = (n_templates, n_images)
        self._queues: list[list[int]] = [[], []]

    def _next(self, which: int) -> int:
        if not self._queues[which]:
            order = list(range(self._sizes[which]))
            self._rng.shuffle(order)
            self._queues[which] = order
        return self._queues[which].pop()

    def next_template(self) -> int:
        return self._next(0)

    def next_image(self) -> int:
        return self._next(1)

    def next_version(self, n: int) -> int:
        """A template copy, uniformly among ``n`` (independent draws)."""
        return self._rng.randrange(n)

    def getstate(self):
        return {"rng": self._rng.getstate(), "queues": [list(q) for q in self._queues]}

    def setstate(self, state) -> None:
        self._rng.setstate(state["rng"])
        self._queues = [list(q) for q in state["queues"]]


def _numpy_state_plain() -> tuple:
    """NumPy's global random state as plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return kind, keys.tolist(), int(pos), int(has_gauss), float(cached)
