"""Quality benchmark: does palindrome training make one-shot segmentation better?

    python benchmarks/quality.py --images DIR --masks DIR [--colors "head=200,0,0;..."]
        [--templates 1,5] [--seeds 3] [--quick] [--checkpoint PT] [--novel NAME]

For each seed and each number of templates K: K template images are drawn
(seeded) among the images whose mask shows every structure; every other image
is a target (scored against its mask) and, without its mask, part of the
unlabeled pool. Three models are scored on the same targets:

(a) ``zero_shot``: the checkpoint as it is (propagation only);
(b) ``pal``: after palindrome training with the engine's own trainer and
    propagation (``engine.trainer.train`` + ``engine.memory_propagation.propagate``,
    exactly what ``sam2pal train`` / ``sam2pal propagate`` do), the unlabeled
    pool being the targets' images;
(c) ``supervised``: for reference, the same trainable parameters (LoRA or
    full, as PAL), optimizer, schedule, steps and learning rate, fine-tuned with
    ordinary supervision on the templates only: a template's memory (its
    ground-truth masks) predicts an augmented copy of a template (itself when
    K = 1; any template when K > 1; flips, rotation, scale, colour), loss
    BCE + Dice + object presence + IoU head (the PAL loss terms). The weights kept
    are chosen like PAL's: the lowest loss on held-out augmented copies, checked
    at the same steps, the untrained weights included.

Only when asked for (``--methods copy,...``): ``copy``, the trivial baseline, each
template's masks copied in place onto the target (through both letterboxes; with K > 1
the first template's); pinned specimens photographed alike make it far from 0.

IoU per structure and mean IoU (engine.evaluate, at the masks' resolution; a
missed structure counts 0) are reported separately for the structures the
checkpoint was trained on ("seen") and for the held-out structure type
(``--novel``; for the packaged beetle model, read from the checkpoint). The last
line printed is:

    quality: zero_shot_miou=A.A default_miou=B.B pal_miou=C.C supervised_miou=D.D review_auroc=E.EE

(percent IoU, mean over seeds, 1 template, mIoU over all structures; ``default`` is
what Train SAM2-PAL does by default (``TrainConfig()``), ``pal`` the palindrome term
only; ``review_auroc`` the mean within-structure AUROC of the review ``score`` for
"IoU below the structure's median", zero-shot propagation). Before it, the review
ranking of ``score``, ``palindrome_confidence`` and ``predicted_iou`` (AUROC for
below-median and for IoU < 0.5, share of IoU < 0.5 masks in the first 20% of the
review order).

With the packaged beetle checkpoint and its own data folder, only the images
held out of its pretraining are used (``--all-images`` overrides). Any folder
of images with colour (or indexed) mask PNGs of the same names works.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from descriptron_sam2pal import UserError  # noqa: E402

BEETLE_COLORS = "head=200,0,0;pronotum=0,200,0;elytra=0,0,200;legs=200,200,0;antennas=200,0,200"
PACKAGED = REPO / "descriptron_sam2pal" / "resources" / "checkpoints" / "sam2pal_beetle.pt"
#: The committed instruments, by the name ``--checkpoint`` accepts (benchmarks/testbed/README.md).
INSTRUMENTS = {
    "packaged": PACKAGED,
    "testbed": REPO / "benchmarks" / "testbed" / "checkpoints" / "sam2pal_beetle_class_agnostic.pt",
    "headout": REPO / "benchmarks" / "testbed" / "checkpoints" / "sam2pal_beetle_headout.pt",
}
METHODS = ("zero_shot", "pal", "default", "supervised")
#: Not run by default: the trivial baseline a one-shot model must beat (``--methods copy,...``).
BASELINES = ("copy",)


def checkpoint_path(value: str) -> Path:
    """``--checkpoint``: a file, or an instrument's name (``INSTRUMENTS``: packaged, testbed,
    headout)."""
    return INSTRUMENTS.get(value, Path(value))


CHECKPOINT_HELP = "SAM2 checkpoint file, or an instrument: " + ", ".join(INSTRUMENTS) + " (default: packaged)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="One-shot quality benchmark: zero-shot vs palindrome vs supervised."
    )
    p.add_argument("--images", type=Path, help="folder of images (required unless --combine)")
    p.add_argument("--masks", type=Path, help="folder of colour/indexed mask PNGs (same names)")
    p.add_argument("--colors", default=BEETLE_COLORS,
                   help="structure colour map 'name=R,G,B;...' (default: the BeetleFlow 5-class map)")
    p.add_argument("--templates", default="1,5", help="numbers of templates, comma-separated (default 1,5)")
    p.add_argument("--seeds", type=int, default=3, help="seeds (default 3)")
    p.add_argument("--seed-list", default="",
                   help="run only these seeds (comma-separated, e.g. '0,2'), to run seeds as parallel "
                        "processes with one --out each; then --combine the folders")
    p.add_argument("--combine", nargs="+", type=Path, default=None, metavar="DIR",
                   help="print the summary and the quality line of the quality.json of these --out folders "
                        "(runs of one setting split by --seed-list); trains nothing")
    p.add_argument("--quick", action="store_true",
                   help="1 template only, 150 steps, at most 40 targets (a few minutes on a CPU)")
    p.add_argument(
        "--checkpoint", type=checkpoint_path, default=PACKAGED, help=CHECKPOINT_HELP
    )
    p.add_argument(
        "--novel",
        default=None,
        help="the structure type the checkpoint never saw (default: from the checkpoint, else none)",
    )
    p.add_argument("--all-images", action="store_true",
                   help="use every image, also those the checkpoint was pretrained on")
    p.add_argument("--max-targets", type=int, default=0, help="at most this many targets (0: all)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 300, quick 150)")
    p.add_argument("--validation", choices=("auto", "loo_iou", "pool_score"), default="auto",
                   help="the checkpoint choice's validation for every trained method (default: as the "
                        "product decides, engine.validation_plan)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the trainer's)")
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA (both methods)")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--loss", default="", help="PAL loss weights, e.g. 'presence=0.5,target_presence=0.5'")
    p.add_argument("--template-versions", type=int, default=0,
                   help="PAL: the backward half reconstructs one of this many augmented copies of the "
                        "template instead of the template itself (TrainConfig.template_versions; 0: off)")
    p.add_argument("--lora-dropout", type=float, default=0.0, help="LoRA dropout (both methods)")
    p.add_argument("--memory-dropout", type=float, default=None,
                   help="SAM2's dropout in memory attention while training, also for the default method "
                        "(default: the trainer's, off; 0.1 is SAM2.1's own)")
    p.add_argument("--val-images", type=int, default=None,
                   help="held-out unlabeled photos the run validates on (TrainConfig.val_images; default "
                        "the trainer's)")
    p.add_argument("--structure-share", type=float, default=None,
                   help="the share of a template's structures one palindrome trains, taking turns, also "
                        "for the default method (TrainConfig.structure_share; default: the trainer's)")
    p.add_argument(
        "--pseudo-fraction",
        type=float,
        default=None,
        help="with --loss pseudo=W: share of the unlabeled images kept as pseudo-labels per structure",
    )
    p.add_argument(
        "--pseudo-every", type=int, default=None, help="with --loss pseudo=W: remake them every N steps"
    )
    p.add_argument("--pseudo-templates", type=int, default=None,
                   help="with --loss pseudo=W: the best N pool masks per structure join the templates first")
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="which of zero_shot,default,pal,supervised to run (default: what Train SAM2-PAL does by "
        "default, TrainConfig(); pal: the palindrome term only, with --loss/--template-versions)",
    )
    p.add_argument("--template-structures", default="",
                   help="only these structures (comma-separated) are outlined on the templates and scored "
                        "(default: every structure of the colour map)")
    p.add_argument("--train-precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="training autocast of PAL/default (TrainConfig.autocast; auto: bf16 on CUDA and on "
                        "CPUs with native bf16, as Train SAM2-PAL)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: much faster than 2 on a busy 2-core CPU)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "quality",
                   help="run folders and quality.json")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data

def pair_images(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    from descriptron_sam2pal.engine.evaluate import mask_png_stem
    from descriptron_sam2pal.imaging.io import is_image_file
    from descriptron_sam2pal.store.stem import normalized_stem

    mask_by_stem = {mask_png_stem(p): p for p in sorted(masks.iterdir()) if p.suffix.lower() == ".png"}
    pairs = []
    for img in sorted(images.iterdir()):
        if is_image_file(img) and normalized_stem(img.name) in mask_by_stem:
            pairs.append((img, mask_by_stem[normalized_stem(img.name)]))
    if len(pairs) < 3:
        raise UserError(f"only {len(pairs)} images in {images} have a mask PNG of the same name in {masks}")
    return pairs


def checkpoint_meta(path: Path) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a checkpoint we can read: no test-bed metadata
        return {}
    return dict(data.get("testbed") or {}) if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- supervised baseline

def augment_template(image: np.ndarray, masks: dict[str, np.ndarray], rng: np.random.RandomState):
    """A flipped / rotated / scaled / colour-jittered copy of an image and its masks (canvas grown so
    nothing is cut off; new pixels get the image's border colour)."""
    import cv2

    h, w = image.shape[:2]
    angle, scale = rng.uniform(-25, 25), rng.uniform(0.8, 1.15)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(math.ceil(h * sin + w * cos)), int(math.ceil(h * cos + w * sin))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    bg = tuple(int(v) for v in np.median(border, axis=0))
    out = cv2.warpAffine(image, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=bg)
    out_masks = {n: cv2.warpAffine(mk.astype(np.uint8), m, (nw, nh), flags=cv2.INTER_NEAREST) > 0
                 for n, mk in masks.items()}
    if rng.rand() < 0.5:
        out = out[:, ::-1]
        out_masks = {n: mk[:, ::-1] for n, mk in out_masks.items()}
    if rng.rand() < 0.2:
        out = out[::-1]
        out_masks = {n: mk[::-1] for n, mk in out_masks.items()}
    x = out.astype(np.float32)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.85, 1.15) + mean * rng.uniform(0.85, 1.15)
    return np.ascontiguousarray(np.clip(x, 0, 255).astype(np.uint8)), \
        {n: np.ascontiguousarray(mk) for n, mk in out_masks.items() if mk.any()}


def supervised_finetune(model, templates, config, n_train_copies: int = 16, n_val_copies: int = 2,
                        log=print) -> dict:
    """Fine-tune ``model`` in place on the templates only (see the module docstring)."""
    import torch.nn.functional as F

    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.frames import encode_memory, make_frame, predict_from_memory
    from descriptron_sam2pal.engine.palindrome import hard_iou, mask_losses
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.engine.prepared_templates import Template
    from descriptron_sam2pal.imaging.io import load_image
    from descriptron_sam2pal.model.dropout import set_memory_dropout
    from descriptron_sam2pal.model.lora import (apply_lora, enable_full_finetune, load_trainable_state,
                                                 trainable_parameters, trainable_state_dict)

    sam, size = model.sam, model.image_size
    torch.manual_seed(config.seed)
    if config.full:
        enable_full_finetune(sam)
    else:
        apply_lora(sam, rank=config.lora_rank, alpha=config.effective_lora_alpha, dropout=config.lora_dropout)
    if config.memory_dropout is not None:
        set_memory_dropout(sam, config.memory_dropout)
    params = trainable_parameters(sam)
    rng = np.random.RandomState(config.seed)
    copies: list[list] = []  # per template: augmented Templates
    for t in templates:
        image = load_image(t.image.source)
        made = []
        for n in range(n_train_copies + n_val_copies):
            aug_img, aug_masks = augment_template(image, t.masks, rng)
            made.append(Template(f"{t.image_id}~{n}", prepare_image(aug_img, size), aug_masks))
        copies.append(made)
    train_copies = [c[:n_train_copies] for c in copies]
    val_pairs = [(i, c) for i, cs in enumerate(copies) for c in cs[n_train_copies:]]
    encoder = FeatureEncoder(model)
    weights = config.loss

    def step_loss(i: int, target) -> torch.Tensor:
        mem_t = templates[i]
        names = [n for n in mem_t.structures if n in target.masks]
        f0, f1 = encoder.encode([mem_t.image, target.image])
        m0 = encode_memory(
            sam, make_frame(sam, [f0], len(names)), mem_t.model_masks(names, model.device)[:, None]
        )
        pred = predict_from_memory(sam, make_frame(sam, [f1], len(names)), [m0])
        truth, valid = target.model_masks(names, model.device), target.valid(model.device)
        bce, dice = mask_losses(pred.logits, truth, valid)
        score = pred.object_score_logits.float()
        presence = F.binary_cross_entropy_with_logits(score, torch.ones_like(score), reduction="none")[:, 0]
        iou_err = (pred.predicted_iou.float() - hard_iou(pred.logits, truth, valid)).abs()
        return (weights.bce * bce.sum() + weights.dice * dice.sum() + weights.presence * presence.sum()
                + getattr(weights, "iou", 0.0) * iou_err.sum())

    def train_mode():
        sam.train()
        sam.image_encoder.eval()

    @torch.no_grad()
    def validate() -> float:
        sam.eval()
        value = float(np.mean([float(step_loss(i, c)) for i, c in val_pairs]))
        train_mode()
        return value

    opt = torch.optim.AdamW(params, lr=config.effective_lr, weight_decay=config.weight_decay)
    warmup, total, floor = config.effective_warmup, config.steps, config.min_lr_ratio

    def factor(s):  # the trainer's schedule (engine.trainer._Run._lr_factor)
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, total - warmup - 1))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    best_val, best_step, best_state = validate(), 0, trainable_state_dict(sam)
    baseline = best_val
    train_mode()
    pick = random.Random(config.seed)
    for step in range(1, config.steps + 1):
        opt.zero_grad(set_to_none=True)
        for _ in range(config.accumulate):
            i = pick.randrange(len(templates))
            j = i if len(templates) == 1 else pick.randrange(len(templates))
            loss = step_loss(i, pick.choice(train_copies[j]))
            (loss / config.accumulate).backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else float("inf"))
        opt.step()
        sched.step()
        if config.validate_every and (step % config.validate_every == 0 or step == config.steps):
            v = validate()
            if v < best_val:
                best_val, best_step, best_state = v, step, trainable_state_dict(sam)
    load_trainable_state(sam, best_state)
    sam.eval()
    return {"best_step": best_step, "best_val": best_val, "baseline_val": baseline}


# --------------------------------------------------------------------------- one run

def copy_in_place(template, target_paths: list[str], size: int) -> list:
    """The trivial baseline: the template's masks, letterboxed to the model grid, put back
    through each target's letterbox (no model)."""
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.engine.results import StructureResult, TargetResult

    out = []
    for path in target_paths:
        lb = prepare_image(path, size).letterbox
        structures = {}
        for name in template.structures:
            mask = lb.unapply(template.model_mask(name)) >= 0.5
            structures[name] = StructureResult(name, bool(mask.any()), mask, None, 1.0, 0.0)
        out.append(TargetResult(Path(path).stem, path, lb.height, lb.width, structures))
    return out


def score(results, truth, colors, structures=None, per_image: bool = False):
    from descriptron_sam2pal.engine.evaluate import evaluate

    report = evaluate(results, truth, colors, structures=structures)
    means = {n: (None if s.mean_iou is None else 100 * s.mean_iou) for n, s in report.structures.items()}
    if per_image:
        return means, {n: dict(s.ious) for n, s in report.structures.items()}
    return means


def auroc(bad, value) -> float | None:
    """P(a random bad mask has a lower value than a random good one); ties count half."""
    bad, value = np.asarray(bad, bool), np.asarray(value, float)
    if bad.all() or not bad.any():
        return None
    less = (value[bad][:, None] < value[~bad][None]).mean()
    ties = (value[bad][:, None] == value[~bad][None]).mean()
    return float(less + 0.5 * ties)


REVIEW_FIELDS = ("score", "palindrome_confidence", "predicted_iou")


def review_metrics(results, ious: dict[str, dict[str, float]]) -> dict:
    """How well each field ranks the masks for review: within-structure AUROC for "IoU below
    the structure's median" and for "IoU < 0.5" (mean over structures), and the share of
    the IoU < 0.5 masks in the first 20% of the review order (all structures, lowest value
    first; a structure predicted absent has no value and comes first, as in the Review)."""
    from descriptron_sam2pal.store.stem import normalized_stem

    by_stem = {normalized_stem(Path(r.path).name): r for r in results if r.path}
    out = {}
    for field in REVIEW_FIELDS:
        med, low, rows = [], [], []
        for name, per_image in ious.items():
            vals, iou = [], []
            for stem, v in per_image.items():
                s = by_stem[stem].structures.get(name) if stem in by_stem else None
                x = getattr(s, field, None) if s is not None and s.present else None
                vals.append(-1.0 if x is None else float(x))
                iou.append(v)
            rows += list(zip(vals, iou))
            iou_a = np.array(iou)
            a = auroc(iou_a < np.median(iou_a), vals) if len(iou) > 1 else None
            b = auroc(iou_a < 0.5, vals) if len(iou) > 1 else None
            if a is not None:
                med.append(a)
            if b is not None:
                low.append(b)
        rows.sort(key=lambda t: t[0])
        first = rows[: int(round(0.2 * len(rows)))]
        n_bad = sum(1 for _, v in rows if v < 0.5)
        out[field] = {"auroc_median": float(np.mean(med)) if med else None,
                      "auroc_iou50": float(np.mean(low)) if low else None,
                      "bad_in_first_20pct": (sum(1 for _, v in first if v < 0.5) / n_bad) if n_bad else None}
    return out


def summarise(per: dict[str, float | None], novel: str | None) -> tuple[float, float | None]:
    seen = [v for n, v in per.items() if n != novel and v is not None]
    return float(np.mean(seen)) if seen else float("nan"), per.get(novel) if novel else None


def draw_split(pairs, colors, k: int, seed: int, max_targets: int = 0):
    """(template pairs, target pairs) of one seed: ``k`` templates drawn among the images whose
    mask shows every structure, every other image a target (at most ``max_targets``, drawn)."""
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png

    rng = random.Random(1000 * seed + k)
    complete = [p for p in pairs if all(m.any() for m in masks_from_color_png(p[1], colors).values())]
    pool_for_templates = complete if len(complete) >= k else pairs
    chosen = sorted(rng.sample(range(len(pool_for_templates)), k))
    template_pairs = [pool_for_templates[i] for i in chosen]
    names = {p[0] for p in template_pairs}
    targets = [p for p in pairs if p[0] not in names]
    if max_targets:
        targets = sorted(rng.sample(targets, min(max_targets, len(targets))))
    return template_pairs, targets


def run_one(args, pairs, colors, k: int, seed: int, novel: str | None, config_kwargs: dict) -> dict:
    from descriptron_sam2pal.engine.evaluate import truth_from_color_pngs
    from descriptron_sam2pal.engine.memory_propagation import propagate
    from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png
    from descriptron_sam2pal.engine.trainer import TrainConfig, train
    from descriptron_sam2pal.model.build import build_model
    from descriptron_sam2pal.store.stem import normalized_stem

    template_pairs, targets = draw_split(pairs, colors, k, seed, args.max_targets)
    truth = truth_from_color_pngs([m for _, m in targets], colors)
    target_paths = [str(i) for i, _ in targets]
    run_dir = args.out / f"k{k}_seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    out = {"k": k, "seed": seed, "templates": [p[0].name for p in template_pairs], "targets": len(targets)}
    methods = [m for m in args.methods.split(",") if m]

    def fresh():
        return build_model(checkpoint=args.checkpoint, device=args.device)

    keep = [n.strip() for n in args.template_structures.split(",") if n.strip()] or None

    def make_templates(model):
        made = load_templates([spec_from_color_png(i, m, colors, image_id=normalized_stem(i.name))
                               for i, m in template_pairs], model.image_size)
        if keep:
            for t in made:
                t.masks = {n: mk for n, mk in t.masks.items() if n in keep}
        return made

    config = TrainConfig(seed=seed, **config_kwargs)

    def default_config(seed):
        """The product's defaults; the run length, precision, validation, memory dropout,
        structure share, remake interval and held-out photos as asked (what a candidate default
        is measured with)."""
        return TrainConfig(seed=seed, steps=config.steps, autocast=config.autocast,
                           validation=config.validation, memory_dropout=config.memory_dropout,
                           structure_share=config.structure_share, pseudo_every=config.pseudo_every,
                           val_images=config.val_images)

    for method in methods:
        if (
            method == "default"
            and "pal" in out
            and default_config(seed).to_dict() == config.to_dict()
        ):
            out["default"] = dict(out["pal"], same_as="pal")  # the same run: not trained twice
            continue
        t0 = time.time()
        model = fresh()
        templates = make_templates(model)
        info = {}
        if method in ("pal", "default"):
            pal_dir = run_dir / method
            if pal_dir.exists():
                import shutil
                shutil.rmtree(pal_dir)
            cfg = (
                config
                if method == "pal"
                else default_config(seed)
            )
            res = train(model, templates, target_paths, pal_dir, cfg,
                        feature_cache_dir=args.out / "feature_cache")
            info = {"best_step": res.best_step, "best_val": res.best_val, "baseline_val": res.baseline_val,
                    "val_metric": res.val_metric, "improved": getattr(res, "improved", None),
                    "last_cycle_iou": float(np.mean([h["cycle_iou"] for h in res.history[-20:]]))}
        elif method == "supervised":
            info = supervised_finetune(model, templates, config)
        elif method not in ("zero_shot",) + BASELINES:
            raise SystemExit(f"unknown method {method}")
        if method == "copy":
            results = copy_in_place(templates[0], target_paths, model.image_size)
        else:
            results = propagate(model, templates, target_paths, confidence=(method == "zero_shot"))
        per, ious = score(results, truth, colors, keep, per_image=True)
        seen, nov = summarise(per, novel)
        all_miou = float(np.mean([v for v in per.values() if v is not None]))
        out[method] = {"structures": per, "seen_miou": seen, "novel_iou": nov, "all_miou": all_miou,
                       "seconds": round(time.time() - t0, 1), **info}
        if method == "zero_shot":
            out[method]["review"] = review_metrics(results, ious)
        print(f"  K={k} seed={seed} {method:<10} seen mIoU {seen:5.1f}"
              + (f"  novel ({novel}) {nov:5.1f}" if nov is not None else "")
              + "  | " + " ".join(f"{n} {v:.1f}" for n, v in per.items() if v is not None)
              + (f"  | best_step {info.get('best_step')}" if "best_step" in info else "")
              + f"  ({out[method]['seconds']:.0f} s)", flush=True)
    return out


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.combine:
        return combine(args.combine)
    if args.images is None or args.masks is None:
        raise UserError("--images and --masks are required (or --combine DIR ...)")
    if args.threads:
        torch.set_num_threads(args.threads)
    from descriptron_sam2pal.imaging.mask_png import parse_colors
    from descriptron_sam2pal.engine.palindrome import LossWeights

    colors = parse_colors(args.colors)
    pairs = pair_images(args.images, args.masks)
    meta = checkpoint_meta(args.checkpoint)
    novel = args.novel
    if novel is None and meta.get("held_out_structure") in colors:
        novel = meta["held_out_structure"]
    if novel is not None and novel not in colors:
        raise UserError(f"--novel {novel!r} is not in the colour map ({', '.join(colors)})")
    held = set(meta.get("eval_images") or [])
    if held and not args.all_images and held <= {p[0].name for p in pairs}:
        pairs = [p for p in pairs if p[0].name in held]
        print(f"using the {len(pairs)} images held out of the checkpoint's pretraining (--all-images: all)")
    ks = [1] if args.quick else [int(x) for x in args.templates.split(",") if x.strip()]
    steps = args.steps or (150 if args.quick else 300)
    if args.quick and not args.max_targets:
        args.max_targets = 40
    loss = LossWeights(pseudo=0.0)  # ``pal``: the palindrome term only, unless --loss adds terms
    for part in filter(None, args.loss.split(",")):
        key, _, value = part.partition("=")
        setattr(loss, key.strip(), float(value))
    config_kwargs = {
        "autocast": {"auto": None, "fp32": False, "bf16": True}[args.train_precision],
        "steps": steps,
        "lr": args.lr,
        "full": args.full,
        "lora_rank": args.lora_rank,
        "loss": loss,
        "template_versions": args.template_versions,
        "lora_dropout": args.lora_dropout,
        "validation": args.validation,
    }
    config_kwargs.update({k: v for k, v in (("pseudo_fraction", args.pseudo_fraction),
                                            ("pseudo_every", args.pseudo_every),
                                            ("pseudo_templates", args.pseudo_templates),
                                            ("memory_dropout", args.memory_dropout),
                                            ("structure_share", args.structure_share),
                                            ("val_images", args.val_images))
                           if v is not None})
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"quality benchmark: {len(pairs)} images, structures {', '.join(colors)}"
          f" (novel: {novel or 'none'}), K in {ks}, {args.seeds} seeds, {steps} steps, "
          f"{'full' if args.full else f'LoRA rank {args.lora_rank}'}, lr {args.lr or 'default'}, "
          f"checkpoint {args.checkpoint.name}"
          + (f", loss {args.loss}" if args.loss else "")
          + (f", template copies {args.template_versions}" if args.template_versions else "")
          + (f", LoRA dropout {args.lora_dropout}" if args.lora_dropout else "")
          + ("" if args.memory_dropout is None else f", memory dropout {args.memory_dropout}")
          + ("" if args.structure_share is None else f", structure share {args.structure_share} a step"),
          flush=True)
    runs = []
    seeds = [int(x) for x in args.seed_list.split(",") if x.strip()] or list(range(args.seeds))
    for k in ks:
        for seed in seeds:
            runs.append(run_one(args, pairs, colors, k, seed, novel, config_kwargs))
            (args.out / "quality.json").write_text(
                json.dumps(
                    {"args": {a: str(v) for a, v in vars(args).items()}, "novel": novel, "runs": runs},
                    indent=1,
                )
            )
    return report([m for m in args.methods.split(",") if m], ks, novel, runs)


def combine(folders: list[Path]) -> int:
    """The report of several ``--out`` folders of one setting (seeds run as separate processes)."""
    runs, methods, novel = [], None, None
    for folder in folders:
        data = json.loads((Path(folder) / "quality.json").read_text())
        runs += data["runs"]
        novel = data["novel"]
        methods = methods or [m for m in data["args"]["methods"].split(",") if m]
    runs.sort(key=lambda r: (r["k"], r["seed"]))
    print(f"combined {len(runs)} runs from {len(folders)} folder(s): seeds "
          + ", ".join(str(r["seed"]) for r in runs))
    return report(methods, sorted({r["k"] for r in runs}), novel, runs)


def report(methods: list[str], ks: list[int], novel: str | None, runs: list[dict]) -> int:
    print("\nsummary (percent IoU, mean over seeds; per-seed values in brackets)")
    for k in ks:
        for method in methods:
            rows = [r[method] for r in runs if r["k"] == k]
            seen = [r["seen_miou"] for r in rows]
            line = (
                f"K={k} {method:<10} seen mIoU {np.mean(seen):5.1f} [{', '.join(f'{v:.1f}' for v in seen)}]"
            )
            if novel:
                nov = [r["novel_iou"] if r["novel_iou"] is not None else float("nan") for r in rows]
                line += f"  novel {np.mean(nov):5.1f} [{', '.join(f'{v:.1f}' for v in nov)}]"
            names = list(rows[0]["structures"])
            line += "  | " + " ".join(
                f"{n} {np.mean([r['structures'][n] or 0 for r in rows]):.1f}" for n in names
            )
            alls = [r["all_miou"] for r in rows]
            line += f"  | all mIoU {np.mean(alls):5.1f} [{', '.join(f'{v:.1f}' for v in alls)}]"
            print(line)

    def mean(method, key):
        vals = [r[method][key] for r in runs if r["k"] == 1 and method in r and r[method][key] is not None]
        return float(np.mean(vals)) if vals else float("nan")

    if 1 not in ks:
        print("(no K=1 run: the quality line needs --templates to include 1)")
    review = [
        r["zero_shot"]["review"]
        for r in runs
        if r["k"] == 1 and "zero_shot" in r and "review" in r["zero_shot"]
    ]
    if review:
        print(
            "\nreview ranking (zero-shot propagation, K=1): within-structure AUROC for IoU below the "
            "structure's median | for IoU < 0.5 | share of IoU < 0.5 masks in the first 20% of the "
            "review order"
        )
        for field in REVIEW_FIELDS:
            def m(key, field=field):
                vals = [r[field][key] for r in review if r[field][key] is not None]
                return f"{np.mean(vals):.3f}" if vals else "-"
            print(f"  {field:<22} {m('auroc_median')} | {m('auroc_iou50')} | {m('bad_in_first_20pct')}")
    review_auroc = float(np.mean([r["score"]["auroc_median"] for r in review
                                  if r["score"]["auroc_median"] is not None])) if review else float("nan")
    print(
        f"quality: zero_shot_miou={mean('zero_shot', 'all_miou'):.1f} "
        f"default_miou={mean('default', 'all_miou'):.1f} "
        f"pal_miou={mean('pal', 'all_miou'):.1f} supervised_miou={mean('supervised', 'all_miou'):.1f} "
        f"review_auroc={review_auroc:.2f}"
    )
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
