"""Pretrain the beetle test-bed SAM2 (resources/configs/sam2pal_beetle.yaml) from random weights.

One command (see README.md):

    python benchmarks/testbed/pretrain.py --data ../shared/data/beetleflow-5class-train \
        --out benchmarks/out/testbed [--device auto] [--steps 3000] [--install]

Task: one-shot structure transfer, exactly the way the engine uses SAM2. Each
training example is a pseudo-video "template(s) with their structure masks ->
target": the template is an initial conditioning frame with its ground-truth
masks (``engine.frames.encode_memory``), the target a frame attending to that
memory (``engine.frames.predict_from_memory``); the loss is BCE + Dice on the
target's real pixels for the structures present on it, SAM2's IoU head
regressed to the achieved IoU, and an object-presence loss on the object
score. Structures missing on the target (naturally, pushed out of the frame by
the augmentation, or erased from it by the augmentation) are "absent" examples,
so the object score learns to mean something. All structures of a template
travel together as a batch of objects, several pairs per step.

Everything trains, the image encoder included (random start). The held-out
structure type (``data.HELD_OUT``) is never an object: its pixels are just
background. Only the ``pretrain`` half of the split is used; the ``eval``
images are used for a small periodic one-shot check that is logged, never for
choosing weights (the saved weights are the last step's).

Augmentation (per image, independently for template and target): horizontal
and vertical flips, rotation, scale, translation, brightness / contrast /
saturation, occasional greyscale; erasing of a leg/antenna structure on the
target (an absent case). Augmentation parameters are drawn on the CPU from the
seed, so a run is reproducible on one device (and close across devices).

Output in ``--out``: ``data_<size>.npz`` (cache), ``log.jsonl`` (loss curve,
one line per logged step, with ``eval`` lines), ``sam2pal_beetle.pt``
(``{"model": state_dict}`` in float16 plus a ``testbed`` metadata entry) and
``summary.json``. ``--install`` copies the checkpoint into
``descriptron_sam2pal/resources/checkpoints/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import data as tbdata  # noqa: E402  (benchmarks/testbed/data.py)

CONFIG = "sam2pal_beetle"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
ERASABLE = ("legs", "antennas")


def add_common_args(p: argparse.ArgumentParser, out: str, warmup: int, batch_help: str) -> None:
    """The options every test-bed pretraining recipe has (this one and ``pseudo.py``)."""
    p.add_argument("--data", type=Path, default=tbdata.DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / out)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8, help=batch_help)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--seed", type=int, default=0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(p, "testbed", warmup=150, batch_help="template->target pairs per step")
    p.add_argument("--cache", type=Path, default=None, help="data cache (default OUT/data_SIZE.npz)")
    p.add_argument("--two-memory-prob", type=float, default=0.25,
                   help="probability that a step's targets attend to two templates' memories")
    p.add_argument("--same-image-prob", type=float, default=0.1,
                   help="probability that a target is its template, differently augmented")
    p.add_argument("--erase-prob", type=float, default=0.15)
    p.add_argument("--min-pixels", type=int, default=16, help="a structure smaller than this is absent")
    p.add_argument("--held-out-pixels", choices=("background", "ignore"), default="background",
                   help="the held-out structure's pixels: plain background (the committed checkpoint), "
                        "or left out of the loss (unlabeled; never taught to be background)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="bf16 autocast: auto = on CUDA only; bf16 also on a CPU with native bf16 "
        "(1.5x faster on our 2-core CPU)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--install", action="store_true", help="copy the checkpoint into the package resources")
    p.add_argument("--time-limit", type=float, default=0, help="stop after this many minutes (0: none)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- augmentation

def _draw(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def augment(images: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, n_classes: int,
            gen: torch.Generator, device: torch.device, erase: torch.Tensor | None = None,
            geometry: float = 1.0):
    """(B,S,S,3) uint8, (B,S,S) labels, (B,S,S) bool -> normalised (B,3,S,S), one-hot (B,C,S,S), valid.

    ``erase`` (B,) long: a label to erase from each image (0: none): its pixels
    (dilated) are filled with the image's background colour and become background.
    ``geometry`` (0..1) scales the rotation, scale and shift ranges and the flip
    probabilities (1: the recipe's; 0: no geometric change, colour only).
    """
    b, s = images.shape[0], images.shape[1]
    g_ = float(geometry)
    angle = _draw(gen, b, -30 * g_, 30 * g_) * math.pi / 180
    scale = torch.exp(_draw(gen, b, g_ * math.log(0.75), g_ * math.log(1.35)))
    flip_x = torch.where(torch.rand(b, generator=gen) < 0.5 * g_, -1.0, 1.0)
    flip_y = torch.where(torch.rand(b, generator=gen) < 0.2 * g_, -1.0, 1.0)
    shift = _draw(gen, 2 * b, -0.12 * g_, 0.12 * g_).view(b, 2)
    bright = _draw(gen, b, 0.75, 1.25)
    contrast = _draw(gen, b, 0.75, 1.3)
    sat = _draw(gen, b, 0.6, 1.4)
    grey = torch.rand(b, generator=gen) < 0.05
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip_x, -sin * flip_y, shift[:, 0]], 1),
                         torch.stack([sin * flip_x, cos * flip_y, shift[:, 1]], 1)], 1)

    x = images.to(device).permute(0, 3, 1, 2).float() / 255.0
    lab = labels.to(device).long()
    val = valid.to(device).float()[:, None]
    if erase is not None and bool((erase > 0).any()):
        erase = erase.to(device)
        region = (lab == erase[:, None, None]) & (erase[:, None, None] > 0)
        region = F.max_pool2d(region.float()[:, None], 7, 1, 3)[:, 0] > 0
        bg = ((lab == 0) & (val[:, 0] > 0)).float()[:, None]
        colour = (x * bg).sum((2, 3), keepdim=True) / bg.sum((2, 3), keepdim=True).clamp(min=1)
        x = torch.where(region[:, None], colour.expand_as(x), x)
        lab = torch.where(region & (lab == erase[:, None, None]), torch.zeros_like(lab), lab)
    onehot = F.one_hot(lab, n_classes + 1).permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta.to(device), (b, 3, s, s), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    onehot = F.grid_sample(onehot, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    val = F.grid_sample(val, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0] > 0.5
    # labels: the most covered class; outside the image everything is 0 -> background
    best = onehot.argmax(1)
    masks = (
        F.one_hot(best, n_classes + 1).permute(0, 3, 1, 2)[:, 1:].float()
        * (onehot.max(1).values >= 0.5)[:, None]
    )
    masks = masks * val[:, None]

    # colour (on real pixels only; the padding stays black like the engine's letterbox)
    dev = lambda t: t.to(device).view(b, 1, 1, 1)  # noqa: E731
    g = x.mean(1, keepdim=True)
    x = g + (x - g) * dev(sat)
    x = torch.where(dev(grey.float()) > 0, x.mean(1, keepdim=True).expand_as(x), x)
    m = (x * val[:, None]).sum((1, 2, 3), keepdim=True) / (3 * val[:, None].sum((2, 3), keepdim=True)).clamp(
        min=1
    )
    x = (x - m) * dev(contrast) + m
    x = (x * dev(bright)).clamp(0, 1) * val[:, None]
    x = (x - MEAN.to(device)) / STD.to(device)
    return x, masks, val


# --------------------------------------------------------------------------- model steps

def encode_images(sam, x: torch.Tensor):
    """Image encoder with gradients -> one ImageFeatures per image (before conv_s0/conv_s1)."""
    from descriptron_sam2pal.engine.features import ImageFeatures

    levels = list(sam.image_encoder(x)["backbone_fpn"])
    return [ImageFeatures([lv[i:i + 1] for lv in levels], projected=False) for i in range(x.shape[0])]


def one_shot_forward(sam, mem_feats: list[list], mem_masks: list[torch.Tensor], tgt_feats: list,
                     counts: list[int]):
    """Pairs i = 0..B-1: target i attends to the memories of its templates (mem_feats[j][i]
    with masks mem_masks[j] rows of pair i) -> engine.frames.Prediction for all objects."""
    from descriptron_sam2pal.engine.frames import encode_memory, make_frame, predict_from_memory

    memories = []
    for feats, masks in zip(mem_feats, mem_masks):
        memories.append(encode_memory(sam, make_frame(sam, feats, counts), masks[:, None]))
    return predict_from_memory(sam, make_frame(sam, tgt_feats, counts), memories)


def object_losses(pred, target: torch.Tensor, valid: torch.Tensor, present: torch.Tensor):
    """Per-object losses. target (N,S,S), valid (N,S,S) bool, present (N,) bool."""
    from descriptron_sam2pal.engine.palindrome import hard_iou, mask_losses

    score = pred.object_score_logits[:, 0].float()
    presence = F.binary_cross_entropy_with_logits(score, present.float(), reduction="none")
    # SAM2 replaces the mask logits of objects it calls absent by -1024 (no gradient):
    # the mask terms count only for present objects it also predicts present.
    use = present & (score > 0)
    logits = pred.logits.float()
    bce, dice = mask_losses(logits, target, valid)
    iou = hard_iou(logits, target, valid)
    iou_loss = (pred.predicted_iou.float() - iou) ** 2
    zero = torch.zeros_like(bce)
    bce, dice, iou_loss = (torch.where(use, t, zero) for t in (bce, dice, iou_loss))
    return {"bce": bce, "dice": dice, "iou_head": iou_loss, "presence": presence,
            "iou": iou.detach(), "use": use}


# --------------------------------------------------------------------------- evaluation (logged only)

@torch.no_grad()
def quick_eval(sam, cache, eval_idx, names: list[str], size: int, device, n_targets: int = 24) -> dict:
    """One-shot IoU from the first eval image to the next ``n_targets``: every structure
    (the held-out one included), no augmentation. Only logged."""
    from descriptron_sam2pal.engine.palindrome import hard_iou

    sam.eval()
    t_i, targets = eval_idx[0], eval_idx[1:1 + n_targets]
    mean, std = MEAN.to(device), STD.to(device)

    def tensors(i):
        x = torch.from_numpy(cache["images"][i]).to(device).permute(2, 0, 1)[None].float() / 255.0
        lab = torch.from_numpy(cache["labels"][i]).to(device).long()
        return (x - mean) / std, lab, torch.from_numpy(cache["valid"][i]).to(device)

    xt, lt, _ = tensors(t_i)
    present = [c for c in range(len(names)) if int((lt == c + 1).sum()) > 0]
    mt = torch.stack([(lt == c + 1).float() for c in present])
    ious = {names[c]: [] for c in present}
    with _autocast(device):
        ft = encode_images(sam, xt)
        for i in targets:
            x, lab, val = tensors(i)
            fx = encode_images(sam, x)
            pred = one_shot_forward(sam, [ft], [mt], fx, [len(present)])
            truth = torch.stack([(lab == c + 1).float() for c in present])
            iou = hard_iou(pred.logits.float(), truth, val)
            for k, c in enumerate(present):
                if truth[k].any():
                    ious[names[c]].append(float(iou[k]))
    sam.train()
    return {n: round(100 * float(np.mean(v)), 1) for n, v in ious.items() if v}


def _autocast(device, precision: str = "auto"):
    """bf16 autocast on CUDA (``auto``); on the CPU only with ``--precision bf16``."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from descriptron_sam2pal.model.build import build_model
    from descriptron_sam2pal.model.device import resolve_device

    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.cache or args.out / f"data_{args.size}.npz"
    if cache_path.exists():
        split = json.loads(tbdata.SPLIT_FILE.read_text())
    else:
        split = tbdata.load_or_make_split(args.data)
        print(f"building the data cache {cache_path} ...", flush=True)
        tbdata.build_cache(args.data, split["pretrain"] + split["eval"], args.size, cache_path)
    cache = tbdata.load_cache(cache_path)
    cache_names = [str(n) for n in cache["names"]]
    index = {n: i for i, n in enumerate(cache_names)}
    train_idx = np.array([index[n] for n in split["pretrain"]])
    eval_idx = np.array([index[n] for n in split["eval"]])
    names = list(tbdata.COLORS)
    held = names.index(tbdata.HELD_OUT) + 1
    labels = cache["labels"].copy()
    train_labels = labels.copy()
    if args.held_out_pixels == "background":
        train_labels[train_labels == held] = 0  # the held-out structure is background in pretraining
    # else: kept in the label map only to leave its pixels out of the loss (never an object)
    trained_classes = [c + 1 for c in range(len(names)) if c + 1 != held]
    erasable = [names.index(n) + 1 for n in ERASABLE if names.index(n) + 1 != held]

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = build_model(CONFIG, device=device, image_size=args.size, seed=args.seed)
    sam = model.sam
    sam.train()
    params = [p for p in sam.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.999))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, args.warmup, args.steps))
    rng = np.random.RandomState(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    images_t = torch.from_numpy(cache["images"])
    labels_t = torch.from_numpy(train_labels)
    valid_t = torch.from_numpy(cache["valid"])
    hardware = hardware_info(device)
    print(f"pretraining {CONFIG} ({n_params / 1e6:.2f}M parameters) on {device}, {args.steps} steps x "
          f"{args.batch} pairs, {len(train_idx)} images, held-out structure '{tbdata.HELD_OUT}'", flush=True)
    log = StepLog(args.out / "log.jsonl", {"args": {k: str(v) for k, v in vars(args).items()},
                                           "hardware": hardware, "parameters": n_params})
    t_start = time.time()
    step = 0
    for step in range(1, args.steps + 1):
        n_mem = 2 if rng.rand() < args.two_memory_prob else 1
        # Draw pairs: n_mem templates and one target each (the target may be a template, re-augmented).
        tmpl = [rng.choice(train_idx, n_mem, replace=False) for _ in range(args.batch)]
        tgt = [t[0] if rng.rand() < args.same_image_prob else rng.choice(train_idx[~np.isin(train_idx, t)])
               for t in tmpl]
        order = [int(i) for t in tmpl for i in t] + [int(i) for i in tgt]
        erase = torch.zeros(len(order), dtype=torch.long)
        for k in range(args.batch):
            if erasable and rng.rand() < args.erase_prob:
                erase[len(order) - args.batch + k] = int(rng.choice(erasable))
        idx = torch.tensor(order)
        x, masks, val = augment(images_t[idx], labels_t[idx], valid_t[idx], len(names), gen, device, erase)
        area = masks.sum((2, 3))  # (N, C)
        here = area >= args.min_pixels
        tm = lambda k, j: k * n_mem + j  # noqa: E731, B023  row of template j of pair k (used in this step)
        tr = lambda k: args.batch * n_mem + k  # noqa: E731, B023  row of the target of pair k
        objects = [[c for c in trained_classes if all(here[tm(k, j), c - 1] for j in range(n_mem))]
                   for k in range(args.batch)]
        keep = [k for k in range(args.batch) if objects[k]]
        if not keep:
            continue
        counts = [len(objects[k]) for k in keep]
        with _autocast(device, args.precision):
            feats = encode_images(sam, x)
            mem_feats = [[feats[tm(k, j)] for k in keep] for j in range(n_mem)]
            mem_masks = [
                torch.cat([masks[tm(k, j), [c - 1 for c in objects[k]]] for k in keep]) for j in range(n_mem)
            ]
            tgt_feats = [feats[tr(k)] for k in keep]
            pred = one_shot_forward(sam, mem_feats, mem_masks, tgt_feats, counts)
        truth = torch.cat([masks[tr(k), [c - 1 for c in objects[k]]] for k in keep])
        loss_val = val & (masks[:, held - 1] == 0)  # held-out pixels (kept only with "ignore")
        tval = torch.cat([loss_val[tr(k)][None].expand(len(objects[k]), -1, -1) for k in keep])
        present = torch.cat([here[tr(k), [c - 1 for c in objects[k]]] for k in keep])
        parts = object_losses(pred, truth, tval, present)
        n_obj = truth.shape[0]
        loss = (parts["bce"].sum() + parts["dice"].sum() + parts["iou_head"].sum()
                + parts["presence"].sum()) / n_obj
        grad_norm = optimizer_step(loss, opt, sched, params, step)
        score_ok = ((pred.object_score_logits[:, 0] > 0) == present).float().mean()
        for key, value in (
            ("loss", float(loss)),
            ("bce", float(parts["bce"].sum() / max(1, int(parts["use"].sum())))),
            ("dice", float(parts["dice"].sum() / max(1, int(parts["use"].sum())))),
            ("presence", float(parts["presence"].mean())),
            ("presence_acc", float(score_ok)),
            ("iou", float(parts["iou"][present].mean()) if bool(present.any()) else float("nan")),
            ("absent_frac", float(1 - present.float().mean())),
            ("grad_norm", grad_norm),
        ):
            log.add(key, value)
        if step % args.log_every == 0 or step == args.steps:
            entry = log.entry(step=step, lr=sched.get_last_lr()[0], seconds=round(time.time() - t_start, 1))
            if step % args.eval_every == 0 or step == args.steps:
                entry["eval_one_shot_iou"] = quick_eval(sam, cache, eval_idx, names, args.size, device)
            log.write(entry)
        if args.time_limit and time.time() - t_start > 60 * args.time_limit:
            print(f"time limit reached at step {step}", flush=True)
            break
    elapsed = time.time() - t_start
    log.close()
    ckpt = save_checkpoint(sam, args, step, elapsed, hardware, split)
    summary = {
        "checkpoint": str(ckpt),
        "steps_done": step,
        "seconds": round(elapsed, 1),
        "hardware": hardware,
        "parameters": n_params,
        "file_mb": round(ckpt.stat().st_size / 1e6, 2),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)
    if args.install:
        install_checkpoint(ckpt)
    return 0


class StepLog:
    """``log.jsonl`` of a pretraining run: a header line, then one line per logged step with
    the running means of the values added since the last one (also printed)."""

    def __init__(self, path: Path, header: dict) -> None:
        self._file = open(path, "w")
        self._acc: dict[str, list] = {}
        self.write(header, echo=False)

    def add(self, key: str, value: float) -> None:
        self._acc.setdefault(key, []).append(value)

    def entry(self, **fields) -> dict:
        """``fields`` and the means since the last entry (which are then reset)."""
        entry = {**fields, **{k: round(float(np.nanmean(v)), 4) for k, v in self._acc.items()}}
        self._acc = {}
        return entry

    def write(self, entry: dict, echo: bool = True) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        if echo:
            print(json.dumps(entry), flush=True)

    def close(self) -> None:
        self._file.close()


def install_checkpoint(ckpt: Path) -> Path:
    """Copy a test-bed checkpoint over the packaged demo model (``--install``)."""
    dest = REPO / "descriptron_sam2pal" / "resources" / "checkpoints" / f"{CONFIG}.pt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, dest)
    print(f"installed {dest}")
    return dest


def optimizer_step(loss, opt, sched, params, step: int) -> float:
    """One AdamW step with gradient clipping at 1.0 and the schedule; stops the run on a
    non-finite loss. Returns the gradient norm before clipping."""
    if not torch.isfinite(loss):
        raise SystemExit(f"loss is {loss.item()} at step {step}; lower --lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
    opt.step()
    sched.step()
    return grad_norm


def lr_factor(step: int, warmup: int, steps: int, at_least: float = 0.0) -> float:
    """Linear warm-up, then cosine to 2% of the rate; ``at_least``: a schedule fraction the
    cosine has reached at least (a time-limited run's elapsed share of its budget)."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, max(at_least, (step - warmup) / max(1, steps - warmup)))
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))


def hardware_info(device) -> dict:
    """What a run's figures were measured on (logged and stored in the checkpoint)."""
    return {"device": str(device), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": str(torch.__version__), "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None}


def write_checkpoint(sam, meta: dict, path: Path) -> Path:
    """``{"model": float16 state dict, "testbed": meta}``, written atomically (a reader of
    ``path``, e.g. a benchmark, never sees half a file)."""
    state = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
             for k, v in sam.state_dict().items()}
    tmp = path.with_suffix(".part")
    torch.save({"model": state, "testbed": meta}, tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(sam, args, step: int, elapsed: float, hardware: dict, split: dict) -> Path:
    meta = {
        "recipe": "benchmarks/testbed/pretrain.py",
        "config": CONFIG,
        "image_size": args.size,
        "held_out_structure": tbdata.HELD_OUT,
        "trained_structures": [n for n in tbdata.COLORS if n != tbdata.HELD_OUT],
        "colors": tbdata.COLOR_SPEC,
        "pretrain_images": len(split["pretrain"]),
        "eval_images": split["eval"],
        "steps": step,
        "batch": args.batch,
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        "hardware": hardware,
        "data": "BeetleFlow 5-class training split (Imageomics); images CC BY 4.0, see ATTRIBUTION.md",
    }
    return write_checkpoint(sam, meta, args.out / f"{CONFIG}.pt")


if __name__ == "__main__":
    raise SystemExit(main())
