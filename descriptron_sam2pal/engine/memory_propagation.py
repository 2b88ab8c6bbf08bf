"""Propagation: segment every target from the templates' memories (ALGORITHM.md).

* The templates' memories are encoded **once** (:class:`TemplateMemory`): each
  template with all its masks as one conditioning frame; their encoder
  features come from the (cached) :class:`FeatureEncoder`.
* Each target costs **one** encoder pass, then memory attention and mask
  decoding for all its structures at once, attending to the template memories
  only. No state goes from one target to the next, so a result does not depend
  on the batch or the order, and targets can be batched freely.
* With several templates a structure attends to the memories of every template
  that annotates it. Structures are grouped by that set of templates; each
  group is one decoder batch.
* **Palindrome confidence** (for review, worst first): the backward half with a
  memory reset. The target with its predicted (thresholded) masks becomes the
  only conditioning frame; the templates are predicted from it (their features
  are cached: no encoder pass) and scored by IoU against their ground truth on
  real pixels. With several templates in a group the IoUs are averaged.
* Masks go back to each target's own pixel grid (letterbox undone, orientation
  undone). A structure whose object-score logit is <= 0 (or whose mask is
  empty on the target's grid) is reported absent, without a mask.
* Resumable: with a :class:`ResultJournal` every finished target is appended
  to a JSONL file; a rerun with the same model, templates and settings reuses
  them instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.io import load_image
from descriptron_sam2pal.model.build import LoadedModel
from descriptron_sam2pal.engine.control import CancelToken, ProgressCallback, ProgressReporter, is_cancelled
from descriptron_sam2pal.engine.features import FeatureEncoder, ImageFeatures, hash_tensors
from descriptron_sam2pal.engine.frames import encode_memory, make_frame, predict_from_memory, repeat_memory
from descriptron_sam2pal.engine.heap import release_freed_memory
from descriptron_sam2pal.engine.orientation import (
    IDENTITY,
    ORIENTATIONS,
    choose_orientation,
    orient,
    orientation_score,
    unorient,
)
from descriptron_sam2pal.engine.palindrome import hard_iou
from descriptron_sam2pal.engine.preprocess import PreparedImage, prepare_image
from descriptron_sam2pal.engine.results import (
    JOURNAL_VERSION,
    ResultJournal,
    StructureResult,
    Target,
    TargetResult,
)
from descriptron_sam2pal.engine.collection_score import rescore_collection
from descriptron_sam2pal.engine.review_score import (
    REVIEW_SCORE_VERSION,
    combine,
    fit_for,
    mask_signals,
    soft_iou,
)
from descriptron_sam2pal.engine.prepared_templates import Template, structure_names

log = logging.getLogger(__name__)

def as_target(item: Any) -> Target:
    """Paths, arrays, PreparedImages, store ImageRecords (``path``, ``id``,
    ``structure_status``) and Targets -> Target."""
    if isinstance(item, Target):
        return item
    if isinstance(item, (str, os.PathLike)):
        return Target(path=str(item), image_id=None)
    if isinstance(item, (np.ndarray, PreparedImage)):
        return Target(image=item, path=getattr(item, "source", None))
    if hasattr(item, "path") and hasattr(item, "id"):  # a store ImageRecord
        path = item.path
        return Target(path=str(path) if path is not None else None, image_id=item.id,
                      structure_status=dict(getattr(item, "structure_status", None) or {}))
    raise TypeError(f"cannot propagate to a {type(item).__name__}; give a path, an array, "
                    "a PreparedImage, a store ImageRecord or a Target")


# --------------------------------------------------------------------------- template memories

@contextmanager
def inference_mode_of(sam):
    """Eval mode (no dropout) and no autograd for the duration; each module's
    training flag is restored afterwards (the trainer may be sharing the model)."""
    states = [(m, m.training) for m in sam.modules()]
    sam.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in states:
            m.training = training


@dataclass
class StructureGroup:
    """Structures annotated by exactly the same templates: one decoder batch."""

    names: list[str]
    templates: list[int]  # indices into TemplateMemory.templates


def group_structures(templates: Sequence[Template]) -> list[StructureGroup]:
    """Group structure names by the set of templates that annotate them (first-seen order)."""
    groups: dict[tuple[int, ...], StructureGroup] = {}
    for name in structure_names(list(templates)):
        owners = tuple(i for i, t in enumerate(templates) if name in t.masks)
        groups.setdefault(owners, StructureGroup([], list(owners))).names.append(name)
    return list(groups.values())


def select_rows(memory: dict, rows: list[int]) -> dict:
    """The memory of some of the objects (batch ``rows``) of ``memory``."""
    idx = torch.as_tensor(rows, dtype=torch.long, device=memory["maskmem_features"].device)
    return {"maskmem_features": memory["maskmem_features"].index_select(0, idx),
            "maskmem_pos_enc": [p.index_select(0, idx) for p in memory["maskmem_pos_enc"]],
            "obj_ptr": memory["obj_ptr"].index_select(0, idx)}


class TemplateMemory:
    """The templates, encoded once: cached encoder features and one SAM2 memory per
    template (all its structures as one conditioning frame, eval mode, no autograd)."""

    def __init__(self, model: LoadedModel, templates: Sequence[Template],
                 encoder: FeatureEncoder | None = None) -> None:
        templates = list(templates)
        if not templates:
            raise UserError("propagation needs at least one template; annotate a specimen first")
        for t in templates:
            if t.image.size != model.image_size:
                raise UserError(f"template {t.image_id} was prepared at {t.image.size} px but the model "
                                f"takes {model.image_size} px; prepare templates with the model's image size")
        self.model = model
        self.templates = templates
        self.encoder = encoder or FeatureEncoder(model)
        self.groups = group_structures(templates)
        self.structures = structure_names(templates)
        sam, device = model.sam, model.device
        with inference_mode_of(sam), model.autocast():
            self.features: list[ImageFeatures] = self.encoder.encode([t.image for t in templates])
            self._memories = []
            for t, feats in zip(templates, self.features):
                frame = make_frame(sam, [feats], len(t.structures))
                mem = encode_memory(sam, frame, t.model_masks(t.structures, device)[:, None])
                self._memories.append({k: mem[k] for k in ("maskmem_features", "maskmem_pos_enc", "obj_ptr")})
        self._valid = [t.valid(device) for t in templates]
        self._shares: dict[tuple, torch.Tensor] = {}

    def shares(self, group: StructureGroup) -> torch.Tensor:
        """(k,) each structure's share of the real pixels of the group's templates that annotate
        it (their mean): what a target's mask area is compared with. Computed once per group."""
        key = (tuple(group.templates), tuple(group.names))
        if key not in self._shares:
            values = []
            for name in group.names:
                per = [float((t.model_mask(name) >= 0.5)[t.image.valid_mask()].mean())
                       for t in (self.templates[i] for i in group.templates) if name in t.masks]
                values.append(float(np.mean(per)) if per else 0.0)
            self._shares[key] = torch.tensor(values, device=self.model.device)
        return self._shares[key]

    def memory(self, template: int, names: list[str]) -> dict:
        """Template ``template``'s memory restricted to ``names`` (rows in that order)."""
        t = self.templates[template]
        return select_rows(self._memories[template], [t.structures.index(n) for n in names])

    def identity(self) -> str:
        """Hash of the templates' pixels and masks (what the results depend on)."""
        h = hashlib.sha256()
        for t in self.templates:
            h.update(f"{t.image.key}|{json.dumps(t.image.letterbox.to_dict(), sort_keys=True)}|".encode())
            for name in t.structures:
                h.update(name.encode() + b"\0")
                h.update(np.packbits(t.masks[name]).tobytes())
        return h.hexdigest()


# --------------------------------------------------------------------------- journal

def weights_identity(model: LoadedModel) -> str:
    """What the predictions depend on in the model: the base checkpoint (or, without one,
    every weight) plus every weight outside the frozen image encoder (adapters, fine-tuning)."""
    sam = model.sam
    state = sam.state_dict()
    if model.checkpoint_hash:
        names = [k for k in state if not k.startswith("image_encoder.")]
    else:
        names = list(state)
    names.sort()
    h = hashlib.sha256(f"{model.checkpoint_hash}|{model.config_name}|{model.image_size}|".encode())
    h.update("|".join(names).encode())
    h.update(hash_tensors([state[k] for k in names]).encode())
    return h.hexdigest()


def target_key(target: Target) -> str:
    """Journal key of a target: its path, its content and its structure_status."""
    h = hashlib.sha256()
    h.update(f"{os.path.abspath(target.path) if target.path else ''}|".encode())
    h.update(json.dumps(target.structure_status, sort_keys=True, default=str).encode())
    img = target.image
    if isinstance(img, PreparedImage):
        h.update(f"|prepared|{img.key}|{json.dumps(img.letterbox.to_dict(), sort_keys=True)}".encode())
    elif isinstance(img, np.ndarray):
        h.update(f"|array|{img.shape}|{img.dtype}|".encode())
        h.update(np.ascontiguousarray(img).tobytes())
    else:
        if target.path is None:
            raise UserError(f"image {target.image_id!r}: its file was not found; "
                            "put the image next to the annotations")
        h.update(b"|file|")
        with open(target.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class JournalResume:
    """What a run finds in its journal: the one resume rule of the local loop
    (:func:`iter_propagate`) and the Ray driver (``jobs.cluster``), whose journals resume each other.

    ``run`` is the run's identity (:func:`run_identity`: weights, templates, settings and
    ``JOURNAL_VERSION``); lines of another run or version are not reused
    (:meth:`ResultJournal.index`). Each target's journal key (:func:`target_key`) is computed up
    front when the journal holds something of this run, or for every target with ``all_keys``; a
    target whose file cannot be read gets None here (its own turn reports it). Only each finished
    line's offset is kept in memory; :meth:`result` reads one back. Without a journal nothing is
    done before and nothing is recorded."""

    def __init__(self, journal: ResultJournal | str | Path | None, run: str, targets: Sequence[Target],
                 all_keys: bool = False) -> None:
        self.journal = ResultJournal(journal) if isinstance(journal, (str, Path)) else journal
        self.run = run
        self.targets = targets
        self._offsets = self.journal.index(run) if self.journal is not None else {}
        self.keys: list[str | None] = [None] * len(targets)
        if self._offsets or all_keys:
            for i, t in enumerate(targets):
                try:
                    self.keys[i] = target_key(t)
                except (OSError, UserError):
                    continue
        self.n_done = sum(1 for i in range(len(targets)) if self.done(i))

    def key(self, i: int) -> str | None:
        """Target ``i``'s key, computed now when it was not (raising what :func:`target_key`
        raises); None without a journal."""
        if self.journal is not None and self.keys[i] is None:
            self.keys[i] = target_key(self.targets[i])
        return self.keys[i]

    def done(self, i: int) -> bool:
        """Whether target ``i`` is finished in the journal (by this run)."""
        key = self.keys[i]
        return key is not None and key in self._offsets

    def result(self, i: int) -> TargetResult:
        """Target ``i``'s finished result, read back from the journal and named as the target is
        named now (its id and path as given this time)."""
        t = self.targets[i]
        r = TargetResult.from_json(self.journal.read(self._offsets[self.keys[i]]))
        r.image_id, r.path = t.image_id, t.path
        return r

    def record(self, entries: list[tuple[str, TargetResult]]) -> None:
        """Append finished targets ((key, result), ...) to the journal, if there is one."""
        if self.journal is not None:
            self.journal.append(self.run, entries)


# --------------------------------------------------------------------------- the forward pass

@dataclass
class _Raw:
    """One structure on one prepared image, on the model's grid."""

    logits: np.ndarray  # (S, S) float32
    object_logit: float
    predicted_iou: float
    palindrome_confidence: float | None  # None without confidence or when absent
    visible: bool  # object logit > 0 and some positive logit on real pixels
    signals: dict | None = None  # review signals (engine.review_score's module docstring)

    @property
    def present(self) -> bool:
        return self.visible

    @property
    def object_score(self) -> float:
        return 1.0 / (1.0 + math.exp(-max(min(self.object_logit, 80.0), -80.0)))


def _encode_memory_per_image(sam, frame, masks, n: int, k: int) -> dict:
    """Target memories for the confidence. SAM2 may apply a non-overlap constraint across
    the batch when encoding memories in eval mode; then encode image by image so that
    targets never see each other."""
    if not getattr(sam, "non_overlap_masks_for_mem_enc", False) or n == 1:
        return encode_memory(sam, frame, masks)
    from descriptron_sam2pal.engine.frames import Frame
    parts = []
    for i in range(n):
        rows = slice(i * k, (i + 1) * k)
        sub = Frame([f[:, rows] for f in frame.vision_feats], [p[:, rows] for p in frame.vision_pos],
                    frame.feat_sizes)
        parts.append(encode_memory(sam, sub, masks[rows]))
    return {"maskmem_features": torch.cat([p["maskmem_features"] for p in parts]),
            "maskmem_pos_enc": [torch.cat(ps) for ps in zip(*[p["maskmem_pos_enc"] for p in parts])],
            "obj_ptr": torch.cat([p["obj_ptr"] for p in parts])}


def _cycle_scores(memory: TemplateMemory, group: StructureGroup, frame, masks: torch.Tensor,
                  n: int, soft: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Palindrome confidence of ``masks`` ((n*k, S, S) bool, image-major) on the images of
    ``frame``: memory reset, the images with those masks as the only conditioning frame,
    each template of the group predicted back and compared with its ground truth (IoU on
    its real pixels), averaged over the group's templates. Returns (n*k,); with ``soft``
    also the soft IoU of the back-prediction's probabilities (n*k,)."""
    sam, device = memory.model.sam, memory.model.device
    k = len(group.names)
    m1 = _encode_memory_per_image(sam, frame, masks[:, None].float(), n, k)
    ious, softs = [], []
    for t in group.templates:
        tframe = make_frame(sam, [memory.features[t]] * n, k)
        back = predict_from_memory(sam, tframe, [m1])
        gt = memory.templates[t].model_masks(group.names, device).repeat(n, 1, 1)
        logits = back.logits.float()
        ious.append(hard_iou(logits, gt, memory._valid[t]))
        if soft:
            softs.append(soft_iou(logits, gt, memory._valid[t]))
    hard = torch.stack(ious).mean(0)
    return (hard, torch.stack(softs).mean(0)) if soft else hard


def palindrome_confidence(memory: TemplateMemory, image: PreparedImage, masks: dict[str, np.ndarray],
                          features: ImageFeatures | None = None) -> dict[str, float]:
    """Palindrome confidence of given masks ({name: (H, W) bool on the image's own grid})
    on ``image``, e.g. after a user edited a prediction. One encoder pass unless
    ``features`` are given. Structures no template annotates are ignored."""
    if features is None:
        features = memory.encoder.encode([image], cache=False)[0]
    valid = image.valid_mask()
    on_grid = {n: (image.letterbox.apply_mask(m) >= 0.5) & valid for n, m in masks.items()}
    return palindrome_confidence_on_grid(memory, features, on_grid)


def palindrome_confidence_on_grid(memory: TemplateMemory, features: ImageFeatures,
                                  masks: dict[str, np.ndarray]) -> dict[str, float]:
    """:func:`palindrome_confidence` of masks already on the model's letterboxed grid
    ({name: (S, S) bool, nothing on the padding}) of the image whose ``features`` are given."""
    sam, device = memory.model.sam, memory.model.device
    out: dict[str, float] = {}
    with inference_mode_of(sam), memory.model.autocast():
        for group in memory.groups:
            names = [n for n in group.names if n in masks]
            if not names:
                continue
            sub = StructureGroup(names, group.templates)
            hard = torch.from_numpy(np.stack([np.asarray(masks[n], bool) for n in names])).to(device)
            frame = make_frame(sam, [features], len(names))
            scores = _cycle_scores(memory, sub, frame, hard, 1)
            out.update({n: float(s) for n, s in zip(names, scores.cpu().tolist())})
    return out


def predict_prepared(memory: TemplateMemory, images: Sequence[PreparedImage],
                     features: Sequence[ImageFeatures], confidence: bool = True) -> list[dict[str, _Raw]]:
    """Every structure on each image (features already encoded), one decoder batch per group."""
    sam, device = memory.model.sam, memory.model.device
    n = len(images)
    out: list[dict[str, _Raw]] = [{} for _ in range(n)]
    if n == 0:
        return out
    valid = torch.from_numpy(np.stack([im.valid_mask() for im in images])).to(device)  # (n, S, S)
    with inference_mode_of(sam), memory.model.autocast():
        for group in memory.groups:
            k = len(group.names)
            frame = make_frame(sam, list(features), k)
            mems = [repeat_memory(memory.memory(t, group.names), n) for t in group.templates]
            pred = predict_from_memory(sam, frame, mems)
            logits = pred.logits.float()  # (n*k, 1, S, S)
            valid_rows = valid.repeat_interleave(k, dim=0)  # (n*k, S, S)
            hard = (logits[:, 0] > 0) & valid_rows
            soft = None
            if confidence:
                scores_t, soft_t = _cycle_scores(memory, group, frame, hard, n, soft=True)
                scores, soft = scores_t.cpu().numpy(), soft_t.cpu().numpy()
            else:
                scores = None
            sig = mask_signals(logits[:, 0], valid_rows, memory.shares(group).repeat(n))
            sig = {key: v.cpu().numpy() for key, v in sig.items()}
            obj = pred.object_score_logits.float()[:, 0].cpu().numpy()
            piou = pred.predicted_iou.float().cpu().numpy()
            any_fg = hard.flatten(1).any(1).cpu().numpy()
            logits_np = logits[:, 0].cpu().numpy()
            for i in range(n):
                for j, name in enumerate(group.names):
                    r = i * k + j
                    visible = bool(obj[r] > 0 and any_fg[r])
                    signals = {"palindrome": float(scores[r]) if scores is not None else None,
                               "palindrome_soft": float(soft[r]) if soft is not None else None,
                               "predicted_iou": float(piou[r]),
                               "object_score": 1.0 / (1.0 + math.exp(-max(min(float(obj[r]), 80.0), -80.0))),
                               **{key: float(v[r]) for key, v in sig.items()}}
                    out[i][name] = _Raw(logits_np[r], float(obj[r]), float(piou[r]),
                                        float(scores[r]) if scores is not None and visible else None, visible,
                                        signals)
    return out


def _finish(raw: dict[str, _Raw], image: PreparedImage, orientation: str, names: list[str], fit: str
            ) -> dict[str, StructureResult]:
    """Model-grid results -> masks on the target's own grid (letterbox, then orientation undone),
    each present one with its one-pass review score (``fit``: engine.review_score.FITS)."""
    results = {}
    present = [n for n in names if raw[n].present]
    masks = {}
    if present:
        planes = image.letterbox.unapply(np.stack([raw[n].logits for n in present]))
        planes = unorient(planes, orientation) > 0
        masks = {n: planes[i] for i, n in enumerate(present)}
    for n in names:
        r = raw[n]
        mask = masks.get(n)
        ok = mask is not None and bool(mask.any())
        signals = r.signals or {}
        results[n] = StructureResult(n, ok, mask if ok else None, combine(signals, fit) if ok else None,
                                     r.object_score, r.predicted_iou, r.palindrome_confidence if ok else None,
                                     signals.get("stability") if ok else None)
    return results


# --------------------------------------------------------------------------- the driver

def run_identity(model: LoadedModel, memory: TemplateMemory, *, confidence: bool,
                 orientation_search: bool, small_pass: bool = False) -> str:
    settings = (f"confidence={confidence}|orientation_search={orientation_search}|v={JOURNAL_VERSION}"
                f"|score={REVIEW_SCORE_VERSION}" + ("|small" if small_pass else ""))
    return hashlib.sha256(f"{weights_identity(model)}|{memory.identity()}|{settings}".encode()).hexdigest()


def _load(
    target: Target, size: int, orientation_search: bool
) -> tuple[list[tuple[str, PreparedImage]], int, int]:
    """Prepared images of a target (8 with orientation search) and its (height, width)."""
    img = target.image
    if isinstance(img, PreparedImage):
        if orientation_search:
            raise UserError("orientation search needs image files or arrays, not prepared images")
        if img.size != size:
            raise UserError(f"target prepared at {img.size} px but the model takes {size} px")
        return [(IDENTITY, img)], img.letterbox.height, img.letterbox.width
    if img is None:
        if target.path is None:
            raise UserError(f"image {target.image_id!r}: its file was not found; "
                            "put the image next to the annotations")
        img = load_image(target.path)
    h, w = img.shape[:2]
    names = ORIENTATIONS if orientation_search else (IDENTITY,)
    return [(o, prepare_image(orient(img, o), size, source=target.path)) for o in names], h, w


def default_batch_size(device: torch.device) -> int:
    """Targets per batch: 1 on the CPU, where batching saves no arithmetic and only costs
    memory traffic (batch 1 is faster than 4 at 512 and 1024 px: benchmarks/README.md, "What
    the profile shows"), 4 on a GPU, where it fills the device."""
    return 1 if torch.device(device).type == "cpu" else 4


def predict_in_batches(
    memory: TemplateMemory, images: Sequence[PreparedImage], encoder: FeatureEncoder, confidence: bool,
    batch_size: int | None = None, cache: bool = True,
) -> Iterator[tuple[int, list[PreparedImage], list[dict[str, _Raw]]]]:
    """:func:`predict_prepared` over ``images``, ``batch_size`` at a time (default
    :func:`default_batch_size`: 1 on the CPU, where a remake's batch of 16 held 1.9 GB more at
    512 px and was slower: benchmarks/README.md, "Time to result"), encoded as it goes
    (``cache`` as ``FeatureEncoder.encode``). Yields (index of the batch's first image, the
    batch, its results); the next batch is computed only when asked for."""
    per_batch = batch_size or default_batch_size(memory.model.device)
    for start in range(0, len(images), per_batch):
        chunk = list(images[start:start + per_batch])
        yield start, chunk, predict_prepared(memory, chunk, encoder.encode(chunk, cache=cache), confidence)


def iter_propagate(model: LoadedModel, templates: Sequence[Template] | TemplateMemory,
                   targets: Iterable[Any], batch_size: int | None = None,
                   progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                   journal: ResultJournal | str | Path | None = None, orientation_search: bool = False,
                   confidence: bool = True, encoder: FeatureEncoder | None = None,
                   small_structures: bool | None = None) -> Iterator[TargetResult]:
    """Yield a :class:`TargetResult` per target, in input order, batch by batch.

    ``batch_size`` targets are encoded and decoded together (with orientation
    search, ``batch_size`` oriented images); default :func:`default_batch_size`.
    ``cancel`` stops between batches.
    An unreadable target gives a result with ``error`` set; the run goes on.
    ``orientation_search`` requires ``confidence`` (it is how orientations are
    compared). ``encoder`` (default: the template memory's) encodes the targets,
    uncached: each target is seen once. ``small_structures``: the second pass for structures
    small in the photo (``engine.small_structures``; None: its ``ON_BY_DEFAULT``).
    """
    if batch_size is None:
        batch_size = default_batch_size(model.device)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if orientation_search and not confidence:
        raise UserError("orientation search compares palindrome confidences; enable confidence")
    memory = templates if isinstance(templates, TemplateMemory) else TemplateMemory(model, templates, encoder)
    encoder = encoder or memory.encoder
    size = model.image_size
    fit = fit_for(model.checkpoint_hash)
    from descriptron_sam2pal.engine import small_structures as small_module  # it builds on this module
    small = small_module.make_small_pass(model, memory.templates, encoder) if (
        small_module.ON_BY_DEFAULT if small_structures is None else small_structures) else None
    targets = [as_target(t) for t in targets]
    run = run_identity(model, memory, confidence=confidence, orientation_search=orientation_search,
                       small_pass=small is not None) if journal is not None else ""
    resume = JournalResume(journal, run, targets)
    reporter = ProgressReporter("propagate", len(targets), progress, start_done=resume.n_done)
    done = 0
    step = max(1, batch_size // len(ORIENTATIONS)) if orientation_search else batch_size
    for start in range(0, len(targets), step):
        if is_cancelled(cancel):
            log.info("propagation cancelled after %d of %d targets", done, len(targets))
            return
        window = list(range(start, min(start + step, len(targets))))
        results: dict[int, TargetResult] = {}
        jobs = []  # (target index, orientation, prepared image)
        loaded: dict[int, tuple[int, int]] = {}
        for i in window:
            t = targets[i]
            status = t.skipped
            try:
                resume.key(i)
                if resume.done(i):
                    results[i] = resume.result(i)
                    continue
                prepared, h, w = _load(t, size, orientation_search)
            except (UserError, OSError, ValueError) as exc:
                results[i] = TargetResult(t.image_id, t.path, 0, 0, error=str(exc), skipped=status)
                log.warning("target %s skipped: %s", t.path or t.image_id, exc)
                continue
            loaded[i] = (h, w)
            jobs.extend((i, o, p) for o, p in prepared)
        raws: list[dict[str, _Raw]] = []
        for _, _, batch_raws in predict_in_batches(memory, [p for _, _, p in jobs], encoder, confidence,
                                                   batch_size, cache=False):
            raws.extend(batch_raws)
        by_target: dict[int, list[tuple[str, PreparedImage, dict[str, _Raw]]]] = {}
        for (i, o, p), raw in zip(jobs, raws):
            by_target.setdefault(i, []).append((o, p, raw))
        new_entries = []
        for i, options in by_target.items():
            t = targets[i]
            skipped = {n: s for n, s in t.skipped.items() if n in memory.structures}
            names = [n for n in memory.structures if n not in skipped]
            if len(options) > 1:
                scores = {o: orientation_score({n: raw[n] for n in names}) for o, _, raw in options}
                chosen = choose_orientation(scores)
                o, p, raw = next(opt for opt in options if opt[0] == chosen)
            else:
                o, p, raw = options[0]
            h, w = loaded[i]
            r = TargetResult(t.image_id, t.path, h, w, _finish(raw, p, o, names, fit), o, skipped=skipped,
                             review_fit=fit)
            if small is not None:
                small.refine(r, t)
            results[i] = r
            if resume.keys[i] is not None:
                new_entries.append((resume.keys[i], r))
        resume.record(new_entries)
        del raws, jobs, by_target
        release_freed_memory()  # keeps the peak flat over hundreds of targets (engine/heap.py)
        for i in window:
            done += 1
            yield results[i]
        reporter.report(done, message=str(targets[window[-1]].path or ""),
                        encoder_passes=encoder.encoder_passes)


def propagate(
    model: LoadedModel,
    templates: Sequence[Template] | TemplateMemory,
    targets: Iterable[Any],
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    journal: ResultJournal | str | Path | None = None,
    orientation_search: bool = False,
    confidence: bool = True,
    encoder: FeatureEncoder | None = None,
    small_structures: bool | None = None,
) -> list[TargetResult]:
    """All results of :func:`iter_propagate` as a list (what was done before a cancel), scored
    with the collection they make (engine.collection_score)."""
    results = list(iter_propagate(model, templates, targets, batch_size, progress, cancel, journal,
                                  orientation_search, confidence, encoder, small_structures))
    rescore_collection(results)
    return results
