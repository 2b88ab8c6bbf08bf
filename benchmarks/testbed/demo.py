"""The packaged demo model: every beetle part, by clicks, boxes and mask memories.

One command (see README.md, "Issue 23: a demo trained on the zoom-in crops too"; 95 minutes
on one core of a 2-core CPU):

    python benchmarks/testbed/demo.py --out benchmarks/out/testbed_demo --threads 1 \
        --precision bf16 --freeze-trunk --batch 4 --max-prompt-objects 48 --prompt-lr-mult 5 \
        --zoom-crops 8 --balanced-steps 300 --steps 100000 --time-limit 95 [--install]

The packaged demo since session 14 is that model trained 145 minutes more with crop pairs of
small structures (README.md, "Session 14": it ran 70 minutes with ``--small-crops 4`` and was
resumed with ``--small-crops 8 --time-limit 145``, 1,510 steps; the one command that follows
the same schedule, not run end to end):

    python benchmarks/testbed/demo.py --init <the model above> --out OUT --threads 1 \
        --precision bf16 --freeze-trunk --batch 4 --max-prompt-objects 48 --prompt-lr-mult 5 \
        --warmup 25 --balanced-steps 0 --zoom-crops 8 --small-crops 8 --steps 100000 \
        --time-limit 145 [--install]

What it trains on: every structure of the *training* photos of both shared beetle folders
(5-class: head, pronotum, elytra, legs, antennas; 9-class: head, eyes, mouthparts, pronotum,
elytra, tail, legs, antennas, pin), with no held-out structure, plus label-free regions
(``pseudo.py``'s Felzenszwalb regions) so that a click on something that is no named part
still outlines a region. Never used: the 72 evaluation photos of ``split.json`` and their
copies in the 9-class folder (found by pixels, as ``pseudo.py`` and ``small_structures.py``
find them); ``benchmarks/clicks.py`` and ``quality.py`` measure on those.

The three prompt kinds the workspace uses, each the way the product runs it:

* **mask memories** (``engine.frames``, propagation and training): "template with its part
  masks -> another photo of the same folder" (or, for label-free regions, the same photo
  differently augmented), a quarter of the steps with two templates;
* **clicks** (``engine.interactive``: the decoder on the image embedding plus ``no_mem_embed``,
  no memory): one positive click (three masks; the best one counts for the mask loss, the
  IoU head learns all three, as SAM), then 0-3 corrective clicks, each from the error
  region of the mask the product would show (the one with the best predicted IoU):
  positive on missed part, negative on false positive; all clicks so far go to the decoder,
  as the Templates panel sends them;
* **boxes**: a jittered box around the part (one mask), then 0-3 corrective clicks too.

Prompts target one connected part at a time (a leg, not the six legs), as a user outlines.
The first click is the part's most interior point or a uniform draw inside it; a
corrective click the most interior point of the largest error region or a uniform draw
in the error.

**Zoom-in crops** (``--zoom-crops N``): the product looks closer at a part under
``zoom_in.THIN`` model pixels wide (``engine.zoom_in``: the part's window, at least a tenth of
the photo's longer side, letterboxed to the model's full input). Each step also prompts N
such parts (any structure thin at its photo's scale: legs, antennae, eyes, mouthparts, pin)
in that window, cut from the full-resolution photo around the part's box (its corners
jittered, as a first pass finds it roughly), with clicks and boxes as above: the model
otherwise never sees a part at the zoomed scale.

The prompt masks' loss balances part and background pixels for the first
``--balanced-steps`` steps (without it they collapse to empty), then plain BCE + 2 x Dice
(the balanced term over-segments); see ``prompt_mask_loss``. ``--freeze-trunk`` keeps the
Hiera trunk as it is (no backward through it), ``--prompt-lr-mult`` raises the learning
rate of the prompt encoder and mask decoder. The runs that made the packaged demo (the first
stages, and session 12's 95 minutes with ``--zoom-crops 8`` from them) and the one command
that rebuilds a demo from the head-held-out model are in README.md ("Issue 23" and "Issue 23:
a demo trained on the zoom-in crops too").

Starts from ``pretrain.py``'s head-held-out model, the packaged demo before issue 23, kept in
``checkpoints/sam2pal_beetle_headout.pt`` (``--init``; ``--init ''`` for random).
Everything trains. Saves ``state.pt`` (weights, optimizer, schedule, random states) and the
float16 ``sam2pal_beetle.pt`` atomically every ``--save-every`` steps, so a stopped run keeps
its progress; ``--resume`` continues it (the time limit counts the time already spent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import data as tbdata  # noqa: E402  (benchmarks/testbed/data.py)
import pretrain as tbpre  # noqa: E402  (benchmarks/testbed/pretrain.py)
import pseudo as tbpseudo  # noqa: E402  (benchmarks/testbed/pseudo.py)

sys.path.insert(0, str(HERE.parent))
from clicks import interior_point  # noqa: E402  (benchmarks/clicks.py: the benchmark's click)

CONFIG = "sam2pal_beetle"
HEADOUT = HERE / "checkpoints" / "sam2pal_beetle_headout.pt"  # pretrain.py's model, the demo before issue 23
COLORS9 = {
    "head": (100, 0, 0),
    "eyes": (0, 100, 0),
    "mouthparts": (0, 0, 100),
    "pronotum": (100, 100, 0),
    "elytra": (100, 0, 100),
    "tail": (0, 100, 100),
    "legs": (200, 0, 0),
    "antennas": (0, 200, 0),
    "pin": (0, 0, 200),
}
N_CH = 9  # label channels (the 9-class folder has the most structures)
MIN_PART = 16  # a part (connected component at the model's input size) smaller than this is no prompt target


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tbpre.add_common_args(p, "testbed_demo", warmup=50, batch_help="photo pairs per step")
    p.set_defaults(lr=2e-4, batch=6)
    p.add_argument("--data9", type=Path, default=tbpseudo.DEFAULT_DATA9)
    p.add_argument("--init", default=str(HEADOUT), help="weights to start from ('' for random)")
    p.add_argument("--pseudo-prob", type=float, default=0.25, help="share of pairs on label-free regions")
    p.add_argument("--two-memory-prob", type=float, default=0.25)
    p.add_argument("--union-prob", type=float, default=0.5)
    p.add_argument("--prompt-weight", type=float, default=1.0)
    p.add_argument(
        "--max-prompt-objects", type=int, default=24, help="prompted parts per step (a random subset)"
    )
    p.add_argument(
        "--prompt-lr-mult",
        type=float,
        default=1.0,
        help="learning rate of the prompt encoder and mask decoder, as a multiple of --lr",
    )
    p.add_argument(
        "--balanced-steps",
        type=int,
        default=300,
        help="steps (counted from the run's start) whose prompt loss balances part and background "
        "pixels (see prompt_mask_loss)",
    )
    p.add_argument("--max-corrections", type=int, default=3)
    p.add_argument(
        "--zoom-crops",
        type=int,
        default=0,
        help="thin parts per step also prompted in a zoom-in crop, as the product's zoom-in pass "
        "sees them (engine.zoom_in: the part's window, at least a tenth of the photo, at the model's "
        "full input); 0: none",
    )
    p.add_argument(
        "--small-crops",
        type=int,
        default=0,
        help="pairs of photos per step whose small structures (eyes, mouthparts) are also segmented "
        "crop to crop through the memory path, as the product's second pass does (engine."
        "small_structures: the template's crop as memory, the target's crop placed roughly); 0: none",
    )
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--time-limit", type=float, default=0, help="minutes in all, resumed segments included (0: none)"
    )
    p.add_argument(
        "--freeze-trunk",
        action="store_true",
        help="keep the image encoder's Hiera trunk as it is (no backward through it: ~2x faster on a "
        "CPU); the FPN neck and everything after it train",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--install", action="store_true", help="copy the checkpoint into the package resources")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data


def photo_files(args, name) -> tuple[Path, Path, dict]:
    """A cache name ("5class/0001.png" or "9class/...") -> its photo, its mask PNG and its
    folder's colour map."""
    origin, file = str(name).split("/")
    root, colors = (args.data, tbdata.COLORS) if origin == "5class" else (args.data9, COLORS9)
    return root / "images" / file, root / "masks" / file, colors


def build_demo_cache(args, path: Path) -> dict:
    """pseudo.py's photos (5-class pretrain half + 9-class minus copies of eval photos) with
    their Felzenszwalb levels, plus each photo's part label map (its own folder's structures)."""
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png

    split = tbdata.load_or_make_split(args.data)
    pseudo_path = args.out / f"pseudo_{args.size}.npz"
    cache = (
        tbdata.load_cache(pseudo_path)
        if pseudo_path.exists()
        else tbpseudo.build_pseudo_cache(args, split["eval"], pseudo_path)
    )
    labels = np.zeros(cache["valid"].shape, np.uint8)
    folder = np.zeros(len(cache["names"]), np.uint8)  # 0: 5-class, 1: 9-class
    for i, name in enumerate(cache["names"]):
        image, mask_file, colors = photo_files(args, name)
        folder[i] = 0 if str(name).startswith("5class/") else 1
        lb = prepare_image(image, args.size).letterbox
        masks = masks_from_color_png(mask_file, colors)
        soft = np.stack([lb.apply_mask(masks[n]) for n in colors])
        labels[i] = np.where(soft.max(0) >= 0.5, soft.argmax(0) + 1, 0)
    out = {**cache, "labels": labels, "folder": folder}
    np.savez_compressed(path, **out)
    return tbdata.load_cache(path)


def thin_parts(args, names) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]]:
    """The parts the product's zoom-in pass looks at closer, from the full-resolution photos
    of the training set: every connected part (of any structure) under ``zoom_in.THIN`` model
    pixels wide at the photo's scale. (photo pixels, part mask, part box (y0, x0, y1, x1)) each."""
    from descriptron_sam2pal.engine import zoom_in
    from descriptron_sam2pal.engine.small_structures import mask_box
    from descriptron_sam2pal.imaging.io import load_image
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png

    out = []
    for name in names:
        image, mask_file, colors = photo_files(args, name)
        pixels = load_image(image)
        scale = args.size / max(pixels.shape[:2])
        for mask in masks_from_color_png(mask_file, colors).values():
            n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
            for c in range(1, n):
                if stats[c, cv2.CC_STAT_AREA] < 4:
                    continue
                part = lab == c
                if zoom_in.mask_width(part) * scale < zoom_in.THIN:
                    out.append((pixels, part, mask_box(part)))
    return out


def zoom_crop(pixels: np.ndarray, part: np.ndarray, box, size: int, rng: np.random.RandomState):
    """The product's zoom-in window around a part (``zoom_in.zoom_window`` on the part's box,
    its corners jittered by up to 15% of its side, as a first pass finds it roughly),
    letterboxed to ``size``: (pixels uint8 (S,S,3), part (S,S) bool, valid (S,S) bool)."""
    from descriptron_sam2pal.engine import zoom_in
    from descriptron_sam2pal.engine.preprocess import prepare_image

    h, w = part.shape
    y0, x0, y1, x1 = box
    j = (rng.rand(4) - 0.5) * 0.3 * max(y1 - y0, x1 - x0)
    where = (
        int(np.clip(y0 + j[0], 0, h - 1)),
        int(np.clip(x0 + j[1], 0, w - 1)),
        int(np.clip(y1 + j[2], 1, h)),
        int(np.clip(x1 + j[3], 1, w)),
    )
    where = (where[0], where[1], max(where[2], where[0] + 1), max(where[3], where[1] + 1))
    wy0, wx0, wy1, wx1 = zoom_in.zoom_window(where, 0.0, h, w, size / max(h, w))
    prep = prepare_image(np.ascontiguousarray(pixels[wy0:wy1, wx0:wx1]), size)
    truth = prep.letterbox.apply_mask(part[wy0:wy1, wx0:wx1]) >= 0.5
    return prep.pixels, truth, prep.letterbox.valid_mask()


def small_groups(args, names) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The small structures of the 9-class training photos as the product's second pass takes
    them (``small_structures.is_small_mask`` at the photo's scale, grouped by ``group_boxes``):
    (photo pixels, {structure: mask}) per photo and group."""
    from descriptron_sam2pal.engine import small_structures as ss
    from descriptron_sam2pal.imaging.io import load_image
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png

    out = []
    for name in names:
        if not str(name).startswith("9class/"):
            continue
        image, mask_file, colors = photo_files(args, name)
        pixels = load_image(image)
        scale = args.size / max(pixels.shape[:2])
        masks = masks_from_color_png(mask_file, colors)
        boxes = {n: ss.mask_box(m) for n, m in masks.items() if ss.is_small_mask(m, scale)}
        for group in ss.group_boxes(boxes, ss.MAX_BOX / scale):
            out.append((pixels, {n: masks[n] for n in group}))
    return out


def small_crop(pixels: np.ndarray, masks: dict, names: list, size: int, rng, jitter: float):
    """The second pass's crop around ``names`` (``small_structures.square_box`` of their joint
    box, ``CONTEXT`` times its side); ``jitter`` > 0 moves the box's centre and scales its side
    by up to that share, as the target's crop, placed by the large structures, lands roughly.
    (pixels (S,S,3), label map (S,S): 1 + index in ``COLORS9``, valid (S,S))."""
    from descriptron_sam2pal.engine import small_structures as ss
    from descriptron_sam2pal.engine.preprocess import prepare_image

    h, w = pixels.shape[:2]
    y0, x0, y1, x1 = ss.union_box([ss.mask_box(masks[n]) for n in names])
    side = max(y1 - y0, x1 - x0)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    if jitter:
        cy, cx = cy + (rng.rand() - 0.5) * 2 * jitter * side, cx + (rng.rand() - 0.5) * 2 * jitter * side
        side *= 1 + (rng.rand() - 0.5) * 2 * jitter
    half = side / 2
    box = (int(round(cy - half)), int(round(cx - half)), int(round(cy + half)), int(round(cx + half)))
    y0, x0, y1, x1 = ss.square_box(box, ss.CONTEXT, h, w)
    prep = prepare_image(np.ascontiguousarray(pixels[y0:y1, x0:x1]), size)
    labels = np.zeros((size, size), np.int64)
    for n in names:
        labels[prep.letterbox.apply_mask(masks[n][y0:y1, x0:x1]) >= 0.5] = 1 + list(COLORS9).index(n)
    return prep.pixels, labels, prep.letterbox.valid_mask()


def small_crop_task(sam, groups: list, args, rng, gen, device):
    """``args.small_crops`` pairs of photos with the same small structures: the first's crop
    (its masks as memory) predicts the second's, roughly placed (:func:`small_crop`), through
    the memory path. (mean loss, mean IoU of the present objects) or None when no pair is left."""
    by_names: dict[tuple, list[int]] = {}
    for i, (_, masks) in enumerate(groups):
        by_names.setdefault(tuple(sorted(masks)), []).append(i)
    mems, tgts, names = [], [], []
    for i in rng.choice(len(groups), args.small_crops):
        key = tuple(sorted(groups[int(i)][1]))
        others = [j for j in by_names[key] if j != int(i)]
        if not others:
            continue
        j = others[rng.randint(len(others))]
        mems.append(small_crop(*groups[int(i)], list(key), args.size, rng, 0.0))
        tgts.append(small_crop(*groups[j], list(key), args.size, rng, 0.15))
        names.append([list(COLORS9).index(n) for n in key])
    if not mems:
        return None
    rows = mems + tgts
    x, masks, val = tbpre.augment(
        torch.from_numpy(np.stack([r[0] for r in rows])),
        torch.from_numpy(np.stack([r[1] for r in rows])),
        torch.from_numpy(np.stack([r[2] for r in rows])),
        N_CH,
        gen,
        device,
        geometry=0.0,
    )
    n = len(mems)
    here = masks.sum((2, 3)) >= MIN_PART
    objects = [[c for c in names[k] if bool(here[k, c])] for k in range(n)]  # shown on the memory
    keep = [k for k in range(n) if objects[k]]
    if not keep:
        return None
    feats = encode(sam, x, args.freeze_trunk)
    loss, parts, present = memory_task(
        sam, feats, masks, val, here, [[k] for k in keep], [n + k for k in keep], [objects[k] for k in keep]
    )
    return loss, float(parts["iou"][present].mean()) if bool(present.any()) else float("nan")


def memory_task(sam, feats: list, masks, val, here, memories: list, targets: list, objects: list):
    """The memory path's one-shot task on encoded rows: pair k's target row ``targets[k]``
    attends to its memory rows ``memories[k]`` (as many for every pair) holding the label
    channels ``objects[k]``. (mean loss, ``pretrain.object_losses``' parts, present (N,) bool)."""
    counts, n_mem = [len(o) for o in objects], len(memories[0])
    mem_feats = [[feats[m[j]] for m in memories] for j in range(n_mem)]
    mem_masks = [torch.cat([masks[m[j], o] for m, o in zip(memories, objects)]) for j in range(n_mem)]
    pred = tbpre.one_shot_forward(sam, mem_feats, mem_masks, [feats[t] for t in targets], counts)
    truth = torch.cat([masks[t, o] for t, o in zip(targets, objects)])
    tval = torch.cat([val[t][None].expand(len(o), -1, -1) for t, o in zip(targets, objects)])
    present = torch.cat([here[t, o] for t, o in zip(targets, objects)])
    parts = tbpre.object_losses(pred, truth, tval, present)
    return (parts["bce"] + parts["dice"] + parts["iou_head"] + parts["presence"]).mean(), parts, present


# --------------------------------------------------------------------------- prompts


def largest_component(mask: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask & False
    return lab == (1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))


def pick_part(mask: np.ndarray, rng: np.random.RandomState) -> np.ndarray | None:
    """One connected part (>= MIN_PART pixels) of a structure mask, at random."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    ok = [c for c in range(1, n) if stats[c, cv2.CC_STAT_AREA] >= MIN_PART]
    return None if not ok else lab == ok[rng.randint(len(ok))]


def click_in(region: np.ndarray, rng: np.random.RandomState, interior: bool) -> tuple[float, float]:
    if interior:
        return interior_point(region)
    ys, xs = np.nonzero(region)
    j = rng.randint(len(ys))
    return float(xs[j]), float(ys[j])


def corrective_click(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray, rng: np.random.RandomState):
    """(x, y, label) from the error of ``pred``: label 1 on missed part, 0 on a false positive;
    None when there is no error."""
    missed, extra = truth & ~pred & valid, pred & ~truth & valid
    if not (missed.any() or extra.any()):
        return None
    if rng.rand() < 0.5:  # the benchmark's click: the largest error region's most interior point
        lm, le = largest_component(missed), largest_component(extra)
        positive = lm.sum() >= le.sum()
        x, y = interior_point(lm if positive else le)
    else:  # SAM's: uniform in the error, positive or negative by the share of each
        positive = rng.rand() < missed.sum() / (missed.sum() + extra.sum())
        x, y = click_in(missed if positive else extra, rng, interior=False)
    return x, y, int(positive)


def box_of(part: np.ndarray, rng: np.random.RandomState, jitter: float = 0.1) -> list[float]:
    ys, xs = np.nonzero(part)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    w, h = x1 - x0 + 1, y1 - y0 + 1
    j = (rng.rand(4) - 0.5) * 2 * jitter
    return [x0 + j[0] * w, y0 + j[1] * h, x1 + j[2] * w, y1 + j[3] * h]


def encode(sam, x: torch.Tensor, freeze_trunk: bool):
    """``pretrain.encode_images``, optionally without gradients through the trunk."""
    if not freeze_trunk:
        return tbpre.encode_images(sam, x)
    from descriptron_sam2pal.engine.features import ImageFeatures

    enc = sam.image_encoder
    with torch.no_grad():
        trunk = enc.trunk(x)
    levels, _ = enc.neck(trunk)
    if enc.scalp > 0:
        levels = levels[: -enc.scalp]
    return [ImageFeatures([lv[i : i + 1] for lv in levels], projected=False) for i in range(x.shape[0])]


def decoder_inputs(sam, feats: list) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Batched ``InteractiveSegmenter._decoder_inputs``: image embedding + no_mem_embed and
    the projected high-resolution levels, one row per image (with gradients)."""
    levels = [torch.cat([f.levels[k] for f in feats]) for k in range(len(feats[0].levels))]
    high = []
    if sam.use_high_res_features_in_sam:
        high = [sam.sam_mask_decoder.conv_s0(levels[0]), sam.sam_mask_decoder.conv_s1(levels[1])]
    embed = levels[-1]
    if sam.directly_add_no_mem_embed:
        embed = embed + sam.no_mem_embed.reshape(1, -1, 1, 1)
    return embed, high


def decode(sam, embed, high, rows: torch.Tensor, coords: np.ndarray, labels: np.ndarray, multimask: bool):
    """The product's prompt path (``engine.interactive``) for objects on image rows ``rows``:
    coords (N, P, 2) model pixels, labels (N, P) -> low-res logits (N, M, S/4, S/4), ious (N, M)."""
    dev = embed.device
    pc = torch.as_tensor(coords, dtype=torch.float32, device=dev)
    pl = torch.as_tensor(labels, dtype=torch.int32, device=dev)
    sparse, dense = sam.sam_prompt_encoder(points=(pc, pl), boxes=None, masks=None)
    low, ious, _, _ = sam.sam_mask_decoder(
        image_embeddings=embed[rows],
        image_pe=sam.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=False,
        high_res_features=[h[rows] for h in high] if high else None,
    )
    return low, ious


def prompt_mask_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, balanced: bool
) -> torch.Tensor:
    """Per mask (K,S,S): BCE + Dice. ``balanced``: the BCE averaged over the part's pixels and
    over the rest separately (half each), plus Dice: with the plain pixel mean a part of 1% of
    the photo makes "nothing" the cheapest answer (the first run's prompt masks collapsed to
    empty within 60 steps, as pseudo.py's did for 900), and Dice has no gradient there. Once
    the masks are not empty the balanced term over-segments (a leg's mask grew to ten times
    the leg), so later steps use the plain mean with twice the Dice (``--balanced-steps``)."""
    logits, target = logits.float(), target.float()
    valid = valid.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    fg, bg = target * valid, (1 - target) * valid
    prob = torch.sigmoid(logits) * valid
    dice = 1.0 - (2.0 * (prob * target).sum((1, 2)) + 1.0) / (prob.sum((1, 2)) + fg.sum((1, 2)) + 1.0)
    if balanced:
        return (
            0.5 * (bce * fg).sum((1, 2)) / fg.sum((1, 2)).clamp(min=1)
            + 0.5 * (bce * bg).sum((1, 2)) / bg.sum((1, 2)).clamp(min=1)
            + dice
        )
    return (bce * valid).sum((1, 2)) / valid.sum((1, 2)).clamp(min=1) + 2.0 * dice


def prompt_task(
    sam,
    tgt_feats: list,
    truths: list,
    valids: list,
    obj_img: list,
    rng,
    size: int,
    max_corrections: int,
    balanced: bool = False,
):
    """Clicks and boxes with corrective clicks on the target photos. ``truths``: (S, S) bool
    part masks (numpy), ``obj_img``: the target row of each. Returns (mean loss, stats)."""
    from descriptron_sam2pal.engine.palindrome import hard_iou

    embed, high = decoder_inputs(sam, tgt_feats)
    dev = embed.device
    n = len(truths)
    rows_all = torch.as_tensor(obj_img, device=dev)
    truth_t = torch.as_tensor(np.stack(truths), dtype=torch.float32, device=dev)
    valid_t = torch.as_tensor(np.stack(valids), device=dev)
    use_box = rng.rand(n) < 0.4
    points = [[] for _ in range(n)]  # (x, y, label) in model pixels
    for i in range(n):
        if use_box[i]:
            b = box_of(truths[i], rng)
            points[i] = [(b[0], b[1], 2), (b[2], b[3], 3)]
        else:
            x, y = click_in(truths[i], rng, interior=rng.rand() < 0.5)
            points[i] = [(x, y, 1)]
    rounds = 1 + int(rng.randint(0, max_corrections + 1))
    losses, first_iou, last_iou = [], None, None
    for r in range(rounds):
        step_iou = torch.zeros(n, device=dev)
        for group in (np.nonzero(use_box)[0], np.nonzero(~use_box)[0]):
            if len(group) == 0:
                continue
            multimask = r == 0 and not use_box[group[0]]
            coords = np.array([[p[:2] for p in points[i]] for i in group], np.float32)
            labels = np.array([[p[2] for p in points[i]] for i in group], np.int32)
            low, ious = decode(sam, embed, high, rows_all[group], coords, labels, multimask)
            m = low.shape[1]
            logits = F.interpolate(low.float(), size=(size, size), mode="bilinear", align_corners=False)
            t = truth_t[group].repeat_interleave(m, 0)
            v = valid_t[group].repeat_interleave(m, 0)
            per = prompt_mask_loss(logits.flatten(0, 1), t, v, balanced).view(-1, m)
            achieved = hard_iou(logits.flatten(0, 1)[:, None], t, v).view(-1, m).detach()
            iou_loss = ((ious.float() - achieved) ** 2).mean(1)
            losses.append(per.min(1).values + iou_loss)
            shown = ious.detach().float().argmax(1)  # the product shows the best predicted IoU
            step_iou[torch.as_tensor(group, device=dev)] = achieved.gather(1, shown[:, None])[:, 0]
            if r + 1 < rounds:
                pred = logits.detach().gather(1, shown.view(-1, 1, 1, 1).expand(-1, 1, size, size))[:, 0] > 0
                pred = pred.cpu().numpy()
                for k, i in enumerate(group):
                    c = corrective_click(pred[k], truths[i], valids[i], rng)
                    points[i].append(c if c is not None else (0.0, 0.0, -1))  # -1: SAM's padding point
        first_iou = step_iou if first_iou is None else first_iou
        last_iou = step_iou
    loss = torch.cat(losses).mean()
    return loss, {
        "click_iou": float(first_iou[torch.as_tensor(~use_box, device=dev)].mean())
        if (~use_box).any()
        else float("nan"),
        "box_iou": float(first_iou[torch.as_tensor(use_box, device=dev)].mean())
        if use_box.any()
        else float("nan"),
        "last_iou": float(last_iou.mean()),
        "rounds": rounds,
    }


def zoom_crop_task(sam, thin: list, args, rng, gen, device, balanced: bool):
    """``prompt_task`` on ``args.zoom_crops`` thin parts in their zoom-in windows
    (:func:`zoom_crop`): (mean loss, stats), or None when no drawn part is left in its crop."""
    crops = [zoom_crop(*thin[int(i)], args.size, rng) for i in rng.choice(len(thin), args.zoom_crops)]
    crops = [c for c in crops if int(c[1].sum()) >= MIN_PART]
    if not crops:
        return None
    # colour only: a crop is already at the part's scale, and the window is the product's
    x, masks, valid = tbpre.augment(
        torch.from_numpy(np.stack([c[0] for c in crops])),
        torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64)),
        torch.from_numpy(np.stack([c[2] for c in crops])),
        1,
        gen,
        device,
        geometry=0.0,
    )
    truths = list(masks[:, 0].bool().cpu().numpy())
    keep = [i for i, m in enumerate(truths) if m.sum() >= MIN_PART]
    if not keep:
        return None
    return prompt_task(
        sam,
        encode(sam, x, args.freeze_trunk),
        [truths[i] for i in keep],
        [valid[i].cpu().numpy() for i in keep],
        keep,
        rng,
        args.size,
        args.max_corrections,
        balanced,
    )


@torch.no_grad()
def click_eval(sam, ecache, size: int, device, n_images: int = 16) -> dict:
    """One interior click and one box per part (>= MIN_PART px) on the first eval photos,
    IoU on the model grid, per structure (logged only; ``benchmarks/clicks.py`` is the measure)."""
    sam.eval()
    out = {n: {"click": [], "box": []} for n in tbdata.COLORS}
    for i in range(min(n_images, len(ecache["names"]))):
        x = torch.from_numpy(ecache["images"][i]).to(device).permute(2, 0, 1)[None].float() / 255.0
        x = (x - tbpre.MEAN.to(device)) / tbpre.STD.to(device)
        embed, high = decoder_inputs(sam, tbpre.encode_images(sam, x))
        lab = ecache["labels"][i]
        for c, name in enumerate(tbdata.COLORS):
            n, comp, stats, _ = cv2.connectedComponentsWithStats(
                (lab == c + 1).astype(np.uint8), connectivity=8
            )
            for k in range(1, n):
                if stats[k, cv2.CC_STAT_AREA] < MIN_PART:
                    continue
                part = comp == k
                row = torch.zeros(1, dtype=torch.long, device=device)
                for kind in ("click", "box"):
                    if kind == "click":
                        coords, labels, mm = np.array([[interior_point(part)]]), np.array([[1]]), True
                    else:
                        b = box_of(part, np.random.RandomState(0), 0.0)
                        coords, labels, mm = np.array([[b[:2], b[2:]]]), np.array([[2, 3]]), False
                    low, ious = decode(sam, embed, high, row, coords, labels, mm)
                    best = low[:, int(ious[0].argmax())]
                    pred = F.interpolate(best[None].float(), size=(size, size), mode="bilinear")[0, 0] > 0
                    t = torch.from_numpy(part).to(device)
                    inter, union = float((pred & t).sum()), float((pred | t).sum())
                    out[name][kind].append(inter / max(union, 1.0))
    sam.train()
    return {
        f"{kind}_{n}": round(100 * float(np.mean(v[kind])), 1)
        for n, v in out.items()
        for kind in v
        if v[kind]
    }


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from descriptron_sam2pal.model.build import build_model
    from descriptron_sam2pal.model.device import resolve_device

    args.out.mkdir(parents=True, exist_ok=True)
    split = tbdata.load_or_make_split(args.data)
    ecache = tbdata.eval_cache(args.data, args.size, args.out)
    cache_path = args.out / f"demo_{args.size}.npz"
    cache = tbdata.load_cache(cache_path) if cache_path.exists() else build_demo_cache(args, cache_path)
    n_img = len(cache["names"])
    by_folder = [np.nonzero(cache["folder"] == f)[0] for f in (0, 1)]
    thin = thin_parts(args, cache["names"]) if args.zoom_crops else []
    if args.zoom_crops:
        print(f"{len(thin)} thin parts for the zoom-in crops", flush=True)
    small = small_groups(args, cache["names"]) if args.small_crops else []
    if args.small_crops:
        print(f"{len(small)} groups of small structures for the crop-to-crop memories", flush=True)

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    init = Path(args.init) if args.init else None
    model = build_model(CONFIG, checkpoint=init, device=device, image_size=args.size, seed=args.seed)
    sam = model.sam.float()
    sam.train()
    for name, prm in sam.named_parameters():
        prm.requires_grad_(not (args.freeze_trunk and name.startswith("image_encoder.trunk.")))
    params = [p for p in sam.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    prompt_side = ("sam_prompt_encoder.", "sam_mask_decoder.")
    fast = [p for n, p in sam.named_parameters() if p.requires_grad and n.startswith(prompt_side)]
    slow = [p for n, p in sam.named_parameters() if p.requires_grad and not n.startswith(prompt_side)]
    opt = torch.optim.AdamW(
        [{"params": slow, "lr": args.lr}, {"params": fast, "lr": args.lr * args.prompt_lr_mult}],
        weight_decay=args.weight_decay,
    )
    train_mode = lambda: (sam.train(), sam.image_encoder.trunk.train(not args.freeze_trunk))  # noqa: E731
    train_mode()
    rng = np.random.RandomState(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    spent_before, start_step = 0.0, 0
    state_path = args.out / "state.pt"
    if args.resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        sam.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.set_state(st["rng"])
        gen.set_state(st["gen"])
        spent_before, start_step = st["seconds"], st["step"]
        print(f"resumed at step {start_step} ({spent_before / 60:.1f} min spent)", flush=True)
    t_start = time.time()

    def elapsed() -> float:
        return spent_before + time.time() - t_start

    def lr_factor(step):
        spent = elapsed() / (60 * args.time_limit) if args.time_limit else 0.0
        return tbpre.lr_factor(step, args.warmup, args.steps, at_least=spent)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s + start_step))
    hardware = {**tbpre.hardware_info(device), "precision": args.precision}

    def save(step_done: int) -> Path:
        tmp = state_path.with_suffix(".part")
        torch.save(
            {
                "model": sam.state_dict(),
                "opt": opt.state_dict(),
                "rng": rng.get_state(),
                "gen": gen.get_state(),
                "seconds": elapsed(),
                "step": step_done,
            },
            tmp,
        )
        os.replace(tmp, state_path)
        meta = {
            "recipe": "benchmarks/testbed/demo.py",
            "config": CONFIG,
            "image_size": args.size,
            "held_out_structure": None,
            "trained_structures": sorted(set(tbdata.COLORS) | set(COLORS9)),
            "label_free_regions": "felzenszwalb levels " + json.dumps(tbpseudo.LEVELS),
            "prompts": "clicks (1 positive + 0-3 corrective), boxes (+ corrective clicks), mask memories",
            "zoom_crops_per_step": args.zoom_crops,
            "small_crop_pairs_per_step": args.small_crops,
            "frozen_trunk": bool(args.freeze_trunk),
            "init": (Path(args.init).name if args.init else None),
            "colors": tbdata.COLOR_SPEC,
            "training_photos": n_img,
            "eval_images": split["eval"],
            "steps": step_done,
            "batch": args.batch,
            "seed": args.seed,
            "seconds": round(elapsed(), 1),
            "hardware": hardware,
            "data": "BeetleFlow 5- and 9-class training photos and masks (Imageomics), the 72 "
            "evaluation photos of split.json and their 9-class copies left out; CC BY 4.0, "
            "see ATTRIBUTION.md",
        }
        return tbpre.write_checkpoint(sam, meta, args.out / f"{CONFIG}.pt")

    log = tbpre.StepLog(
        args.out / ("log.jsonl" if not args.resume else f"log_resume{start_step}.jsonl"),
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "hardware": hardware,
            "parameters": n_params,
            "photos": n_img,
        },
    )
    print(
        f"demo pretraining of {CONFIG} ({n_params / 1e6:.2f}M) on {device}: {n_img} photos, "
        f"from {args.init or 'random weights'}",
        flush=True,
    )
    if start_step == 0:
        log.write(
            {
                "step": 0,
                "eval_click_iou": click_eval(sam, ecache, args.size, device),
                "eval_one_shot_iou": tbpre.quick_eval(
                    sam, ecache, np.arange(len(ecache["names"])), list(tbdata.COLORS), args.size, device
                ),
            }
        )
    step = start_step
    b = args.batch
    for step in range(start_step + 1, args.steps + 1):
        n_mem = 2 if rng.rand() < args.two_memory_prob else 1
        pairs = []  # (template indices, target index, label maps for templates + target)
        for _ in range(b):
            if rng.rand() < args.pseudo_prob:
                i = int(rng.randint(n_img))
                lab = tbpseudo.sample_structures(cache["segs"][i], cache["valid"][i], rng, args.union_prob)
                pairs.append(([i] * n_mem, i, [lab] * (n_mem + 1)))
            else:
                pool = by_folder[int(rng.rand() < len(by_folder[1]) / n_img)]
                t = [int(v) for v in rng.choice(pool, n_mem + 1, replace=False)]
                pairs.append((t[:n_mem], t[n_mem], [cache["labels"][j] for j in t]))
        order = [i for tm, _, _ in pairs for i in tm] + [tg for _, tg, _ in pairs]
        labs = [lab for _, _, ls in pairs for lab in ls[:n_mem]] + [ls[n_mem] for _, _, ls in pairs]
        x, masks, val = tbpre.augment(
            torch.from_numpy(cache["images"][order]),
            torch.from_numpy(np.stack(labs)),
            torch.from_numpy(cache["valid"][order]),
            N_CH,
            gen,
            device,
        )
        here = masks.sum((2, 3)) >= MIN_PART  # (rows, N_CH)
        tm = lambda k, j, n_mem=n_mem: k * n_mem + j  # noqa: E731
        tr = lambda k, n_mem=n_mem, b=b: b * n_mem + k  # noqa: E731
        objects = [
            [c for c in range(N_CH) if all(bool(here[tm(k, j), c]) for j in range(n_mem))] for k in range(b)
        ]
        keep = [k for k in range(b) if objects[k]]
        if not keep:
            continue
        with tbpre._autocast(device, args.precision):
            feats = encode(sam, x, args.freeze_trunk)
            mem_loss, parts, present = memory_task(
                sam,
                feats,
                masks,
                val,
                here,
                [[tm(k, j) for j in range(n_mem)] for k in keep],
                [tr(k) for k in keep],
                [objects[k] for k in keep],
            )
            loss = mem_loss
            stats = {}
            if args.prompt_weight > 0:
                # prompt targets: one connected part of every structure present on each target photo
                masks_np, val_np = masks[b * n_mem :].bool().cpu().numpy(), val[b * n_mem :].cpu().numpy()
                cand = [(k, c) for k in range(b) for c in range(N_CH) if bool(here[tr(k), c])]
                if len(cand) > args.max_prompt_objects:
                    cand = [cand[i] for i in rng.choice(len(cand), args.max_prompt_objects, replace=False)]
                truths, valids, rows = [], [], []
                for k, c in cand:
                    part = pick_part(masks_np[k, c], rng)
                    if part is not None:
                        truths.append(part)
                        valids.append(val_np[k])
                        rows.append(k)
                if truths:
                    p_loss, stats = prompt_task(
                        sam,
                        [feats[tr(k)] for k in range(b)],
                        truths,
                        valids,
                        rows,
                        rng,
                        args.size,
                        args.max_corrections,
                        step <= args.balanced_steps,
                    )
                    loss = loss + args.prompt_weight * p_loss
                    log.add("prompt_loss", float(p_loss.detach()))
            if args.prompt_weight > 0 and thin:
                zoomed = zoom_crop_task(sam, thin, args, rng, gen, device, step <= args.balanced_steps)
                if zoomed is not None:
                    z_loss, z_stats = zoomed
                    loss = loss + args.prompt_weight * z_loss
                    log.add("zoom_loss", float(z_loss.detach()))
                    log.add("zoom_click_iou", z_stats["click_iou"])
                    log.add("zoom_box_iou", z_stats["box_iou"])
            if small:
                cropped = small_crop_task(sam, small, args, rng, gen, device)
                if cropped is not None:
                    s_loss, s_iou = cropped
                    loss = loss + s_loss
                    log.add("small_loss", float(s_loss.detach()))
                    log.add("small_iou", s_iou)
        grad_norm = tbpre.optimizer_step(loss, opt, sched, params, step)
        for key, value in (
            ("loss", float(loss.detach())),
            ("mem_loss", float(mem_loss.detach())),
            ("mem_iou", float(parts["iou"][present].mean()) if bool(present.any()) else float("nan")),
            ("grad_norm", grad_norm),
            *[(k, v) for k, v in stats.items() if k != "rounds"],
        ):
            log.add(key, value)
        if step % args.log_every == 0 or step == args.steps:
            entry = log.entry(step=step, lr=sched.get_last_lr()[0], seconds=round(elapsed(), 1))
            if step % args.eval_every == 0:
                entry["eval_click_iou"] = click_eval(sam, ecache, args.size, device)
                entry["eval_one_shot_iou"] = tbpre.quick_eval(
                    sam, ecache, np.arange(len(ecache["names"])), list(tbdata.COLORS), args.size, device
                )
                train_mode()
            log.write(entry)
        if step % args.save_every == 0:
            save(step)
        if args.time_limit and elapsed() > 60 * args.time_limit:
            print(f"time limit reached at step {step}", flush=True)
            break
    ckpt = save(step)
    final = {
        "click": click_eval(sam, ecache, args.size, device),
        "one_shot": tbpre.quick_eval(
            sam, ecache, np.arange(len(ecache["names"])), list(tbdata.COLORS), args.size, device
        ),
    }
    log.write({"step": step, "final_eval": final}, echo=False)
    log.close()
    summary = {
        "checkpoint": str(ckpt),
        "steps_done": step,
        "seconds": round(elapsed(), 1),
        "final_eval": final,
        "hardware": hardware,
        "file_mb": round(ckpt.stat().st_size / 1e6, 2),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)
    if args.install:
        tbpre.install_checkpoint(ckpt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
