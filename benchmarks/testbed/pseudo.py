"""Class-agnostic test-bed: pretrain the beetle SAM2 on label-free pseudo-structures.

One command (see README.md, "Class-agnostic test-bed"):

    python benchmarks/testbed/pseudo.py --out benchmarks/out/testbed_pseudo [--time-limit 55] [--install]

Why: the first two test-beds were pretrained on the very part labels they are
evaluated on, so a "seen" structure left nothing to learn and the "novel" one
started near 0 because a 5M model taught five part types has no notion of a
region. Real SAM2 is the opposite: it knows no pronotum but segments any region
it is shown. This recipe never reads a part mask for training.

Pseudo-structures: regions found without labels in every photo of both data
folders (``--data``, ``--data9``) except the 72 evaluation images of the
5-class split (and their copies in the 9-class folder, found by pixels):
scikit-image's Felzenszwalb graph segmentation of the letterboxed photo at
three scales (a region-merge hierarchy: fine / medium / coarse), regions of
1-30% of the photo, each optionally grown by the union with 1-2 neighbouring
regions of the same level.

Two tasks per step, both the way the engine uses SAM2:

* **mask memory** (``engine.frames``): a pseudo-video "photo with K pseudo-
  structure masks -> the same photo differently augmented" (flips, rotation
  +-30 deg, scale, shift, colour; SAM2's own recipe for static images):
  ``encode_memory`` of the first, ``predict_from_memory`` of the second.
* **clicks / boxes** (``engine.interactive``): each target structure from one
  positive click (three masks, the best one counts, as SAM) or from a jittered
  box, without memory (SAM2's prompt path, ``no_mem_embed``).

Loss per object: BCE + 2 x Dice (memory task) on real pixels, the IoU head regressed to the
achieved IoU, object presence. Everything trains from random weights (seed 0).
The eval images are used only for a logged one-shot check on the *real* parts
(every part is novel to this model): one eval photo -> 24 others.

Curriculum: the first ``--large-first`` steps draw only large pseudo-structures (the
coarsest level, >= 4% of the photo), and the geometric augmentation grows from none to full
over ``--geometry-ramp`` steps, so the first thing the memory attention can learn is to
copy a mask where it was. It is a hedge against the early "predict nothing" phase, not a
measured need: the CPU run with it left that phase at step 150-300, as a run without it may
(README, "class-agnostic test-bed").
The weights are saved at every logged evaluation too, so a long CPU run that is stopped
early leaves its last evaluated checkpoint.

``--time-limit`` makes the cosine schedule follow the elapsed fraction of the
budget as well as the step fraction (whichever is further), so a time-limited
CPU run still ends at a low learning rate (not bit-reproducible across
machines; ``--time-limit 0`` is).
"""

from __future__ import annotations

import argparse
import json
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
import pretrain as tbpre  # noqa: E402  (benchmarks/testbed/pretrain.py)

CONFIG = "sam2pal_beetle"
DEFAULT_DATA9 = HERE.parents[2] / "shared" / "data" / "beetleflow-9class-train"
LEVELS = ((60, 0.6, 20), (250, 0.8, 60), (1000, 0.8, 200))  # felzenszwalb (scale, sigma, min_size)
MAX_OBJECTS = 4
# Smallest pseudo-structure (share of the real pixels). With 0.15% the first run collapsed to
# "predict nothing" (train IoU 0.0 after 100 steps): tiny regions make an empty mask the
# cheapest answer for BCE before any region is learnt.
MIN_SHARE = 0.01
LARGE_SHARE = 0.04


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tbpre.add_common_args(p, "testbed_pseudo", warmup=100, batch_help="pseudo-videos per step")
    p.add_argument("--data9", type=Path, default=DEFAULT_DATA9, help="more photos (masks unused); '' to skip")
    p.add_argument("--prompt-weight", type=float, default=1.0, help="weight of the click/box task")
    p.add_argument("--union-prob", type=float, default=0.5, help="a pseudo-structure grows by 1-2 neighbours")
    p.add_argument("--geometry-ramp", type=int, default=400,
                   help="steps over which the geometric augmentation grows from none to full")
    p.add_argument("--large-first", type=int, default=300,
                   help="first steps draw only large pseudo-structures (coarse level, >= 4%% of the photo)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=0, help="minutes (0: none); see the docstring")
    p.add_argument("--install", action="store_true", help="copy the checkpoint into the package resources")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data

def _thumb(pixels: np.ndarray) -> np.ndarray:
    g = pixels.astype(np.float32).mean(2)
    s = g.shape[0] // 32
    return g[: s * 32, : s * 32].reshape(32, s, 32, s).mean((1, 3))


def build_pseudo_cache(args, eval_names: list[str], path: Path) -> dict:
    """Letterboxed photos (5-class pretrain half + 9-class minus eval copies) and their
    Felzenszwalb segmentations at every level. Part masks are not read."""
    from skimage.segmentation import felzenszwalb

    from descriptron_sam2pal.engine.preprocess import prepare_image

    split = tbdata.load_or_make_split(args.data)
    eval_thumbs = np.stack(
        [_thumb(prepare_image(args.data / "images" / n, args.size).pixels) for n in eval_names]
    )
    sources = [(args.data / "images" / n, "5class") for n in split["pretrain"]]
    if args.data9 and Path(args.data9).is_dir():
        sources += [(p, "9class") for p in sorted((Path(args.data9) / "images").glob("*.png"))]
    images, valid, segs, names, dropped = [], [], [], [], []
    for path_i, origin in sources:
        prepared = prepare_image(path_i, args.size)
        px = prepared.pixels
        if origin == "9class":
            dist = np.abs(eval_thumbs - _thumb(px)[None]).mean((1, 2)).min()
            if dist < 6.0:  # a copy of an evaluation photo (grey levels 0-255; copies are < 2, others > 15)
                dropped.append(path_i.name)
                continue
        val = prepared.letterbox.valid_mask()
        levels = []
        for scale, sigma, min_size in LEVELS:
            seg = felzenszwalb(px, scale=scale, sigma=sigma, min_size=min_size).astype(np.int32) + 1
            seg[~val] = 0
            levels.append(seg.astype(np.uint16))
        images.append(px)
        valid.append(val)
        segs.append(np.stack(levels))
        names.append(f"{origin}/{path_i.name}")
    np.savez_compressed(path, images=np.stack(images), valid=np.stack(valid), segs=np.stack(segs),
                        names=np.array(names), dropped=np.array(dropped))
    print(
        f"pseudo cache: {len(names)} photos, {len(dropped)} 9-class copies of eval photos dropped", flush=True
    )
    return tbdata.load_cache(path)


def sample_structures(seg: np.ndarray, valid: np.ndarray, rng: np.random.RandomState,
                      union_prob: float, large: bool = False) -> np.ndarray:
    """(L, S, S) segmentation levels -> a label map (S, S) with 1..K pseudo-structures.

    ``large``: only the coarsest level's regions of at least LARGE_SHARE (the warm-up: a
    random decoder's first useful answer is a big blob, as the elytra were for the
    part-label recipe; small regions first make "nothing" the cheapest answer)."""
    level = seg[-1 if large else rng.randint(len(seg))].astype(np.int64)
    n_valid = max(1, int(valid.sum()))
    ids, areas = np.unique(level[valid], return_counts=True)
    frac = areas / n_valid
    cand = ids[(frac >= (LARGE_SHARE if large else MIN_SHARE)) & (frac <= 0.30) & (ids > 0)]
    out = np.zeros(level.shape, np.uint8)
    if len(cand) == 0:
        return out
    k = int(rng.randint(1, MAX_OBJECTS + 1))
    chosen = rng.choice(cand, min(k, len(cand)), replace=False)
    label = 0
    for c in chosen:
        region = level == c
        if rng.rand() < union_prob:
            for _ in range(int(rng.randint(1, 3))):
                ring = _dilate(region) & ~region & valid
                nb = np.unique(level[ring])
                nb = nb[(nb > 0)]
                if len(nb) == 0:
                    break
                grown = region | (level == rng.choice(nb))
                if grown.sum() > 0.35 * n_valid:
                    break
                region = grown
        region &= out == 0  # no overlap with earlier structures
        if region.sum() < 16:
            continue
        label += 1
        out[region] = label
    return out


def _dilate(m: np.ndarray) -> np.ndarray:
    d = m.copy()
    d[1:] |= m[:-1]
    d[:-1] |= m[1:]
    d[:, 1:] |= m[:, :-1]
    d[:, :-1] |= m[:, 1:]
    return d


# --------------------------------------------------------------------------- prompts

def sample_prompts(masks: torch.Tensor, gen: torch.Generator):
    """(N, S, S) masks -> point_inputs for SAM2: one positive click inside (half the
    objects) or a jittered box (labels 2, 3), model-input pixel coordinates."""
    n, s = masks.shape[0], masks.shape[-1]
    coords = torch.zeros(n, 2, 2)
    labels = torch.full((n, 2), -1, dtype=torch.int32)  # -1: padding point (ignored by SAM's encoder)
    use_box = torch.rand(n, generator=gen) < 0.5
    for i in range(n):
        ys, xs = torch.nonzero(masks[i] > 0.5, as_tuple=True)
        if len(ys) == 0:
            coords[i, 0] = s / 2
            labels[i, 0] = 1
            continue
        if use_box[i]:
            x0, x1, y0, y1 = xs.min().float(), xs.max().float(), ys.min().float(), ys.max().float()
            w, h = (x1 - x0 + 1), (y1 - y0 + 1)
            jit = (torch.rand(4, generator=gen) - 0.5) * 0.2
            coords[i, 0] = torch.stack([x0 + jit[0] * w, y0 + jit[1] * h])
            coords[i, 1] = torch.stack([x1 + jit[2] * w, y1 + jit[3] * h])
            labels[i] = torch.tensor([2, 3], dtype=torch.int32)
        else:
            j = int(torch.randint(len(ys), (1,), generator=gen))
            coords[i, 0] = torch.stack([xs[j].float() + 0.5, ys[j].float() + 0.5])
            labels[i, 0] = 1
    coords = coords.clamp(0, s)
    # SAM2 asks for three masks only when a prompt has at most ``multimask_max_pt_num`` (1)
    # points, so clicks and boxes go to the decoder separately: padded to two points, a
    # click would get one mask, the average of every region it could mean.
    return coords, labels, use_box


def prompt_losses(sam, frame, coords, labels, truth, valid):
    """SAM2's single-frame prompt path (no memory) -> per-object loss (min over masks)."""
    from descriptron_sam2pal.engine.palindrome import hard_iou, mask_losses

    if bool((labels[:, 1] == -1).all()):  # clicks: one real point each, so SAM2 gives three masks
        coords, labels = coords[:, :1], labels[:, :1]
    point_inputs = {"point_coords": coords.to(truth.device), "point_labels": labels.to(truth.device)}
    empty = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    _, outs, _, _ = sam._track_step(
        frame_idx=0, is_init_cond_frame=True, current_vision_feats=frame.vision_feats,
        current_vision_pos_embeds=frame.vision_pos, feat_sizes=frame.feat_sizes,
        point_inputs=point_inputs, mask_inputs=None, output_dict=empty, num_frames=1,
        track_in_reverse=False, prev_sam_mask_logits=None)
    _, high_multi, ious, _, _, _, obj = outs
    m = high_multi.shape[1]
    logits = high_multi.float().flatten(0, 1)
    t = truth.repeat_interleave(m, 0)
    v = valid.repeat_interleave(m, 0)
    bce, dice = mask_losses(logits[:, None] if logits.dim() == 3 else logits, t, v)
    per = (bce + dice).view(-1, m)
    best = per.argmin(1)
    achieved = hard_iou(logits[:, None] if logits.dim() == 3 else logits, t, v).view(-1, m).detach()
    iou_loss = ((ious.float() - achieved) ** 2).mean(1)
    presence = F.binary_cross_entropy_with_logits(obj[:, 0].float(), torch.ones_like(obj[:, 0].float()),
                                                  reduction="none")
    ok = obj[:, 0] > 0
    mask_loss = torch.where(ok, per.gather(1, best[:, None])[:, 0], torch.zeros_like(best, dtype=per.dtype))
    iou_loss = torch.where(ok, iou_loss, torch.zeros_like(iou_loss))
    return mask_loss + iou_loss + presence, achieved.gather(1, best[:, None])[:, 0]


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from descriptron_sam2pal.engine.frames import make_frame
    from descriptron_sam2pal.model.build import build_model
    from descriptron_sam2pal.model.device import resolve_device

    args.out.mkdir(parents=True, exist_ok=True)
    split = tbdata.load_or_make_split(args.data)
    ecache = tbdata.eval_cache(args.data, args.size, args.out)
    pseudo_path = args.out / f"pseudo_{args.size}.npz"
    cache = (
        tbdata.load_cache(pseudo_path)
        if pseudo_path.exists()
        else build_pseudo_cache(args, split["eval"], pseudo_path)
    )
    n_img = len(cache["names"])
    names = list(tbdata.COLORS)

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model = build_model(CONFIG, device=device, image_size=args.size, seed=args.seed)
    sam = model.sam
    sam.train()
    params = [p for p in sam.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    t_start = time.time()

    def lr_factor(step):
        spent = (time.time() - t_start) / (60 * args.time_limit) if args.time_limit else 0.0
        return tbpre.lr_factor(step, args.warmup, args.steps, at_least=spent)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    rng = np.random.RandomState(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    images_t = torch.from_numpy(cache["images"])
    valid_t = torch.from_numpy(cache["valid"])
    hardware = {**tbpre.hardware_info(device), "precision": args.precision}

    def save(step_done: int) -> Path:
        meta = {
            "recipe": "benchmarks/testbed/pseudo.py",
            "config": CONFIG,
            "image_size": args.size,
            "held_out_structure": None,
            "trained_structures": [],
            "class_agnostic": True,
            "pseudo_structures": "felzenszwalb levels " + json.dumps(LEVELS) + " + unions of neighbours",
            "colors": tbdata.COLOR_SPEC,
            "pretrain_images": n_img,
            "eval_images": split["eval"],
            "steps": step_done,
            "batch": args.batch,
            "seed": args.seed,
            "seconds": round(time.time() - t_start, 1),
            "hardware": hardware,
            "data": "BeetleFlow 5- and 9-class training photos (Imageomics), masks unused; "
            "CC BY 4.0, see ATTRIBUTION.md",
        }
        return tbpre.write_checkpoint(sam, meta, args.out / f"{CONFIG}.pt")

    log = tbpre.StepLog(
        args.out / "log.jsonl",
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "hardware": hardware,
            "parameters": n_params,
            "photos": n_img,
        },
    )
    print(
        f"pseudo-structure pretraining of {CONFIG} ({n_params / 1e6:.2f}M) on {device}: {n_img} photos",
        flush=True,
    )
    step = 0
    for step in range(1, args.steps + 1):
        idx = rng.randint(n_img, size=args.batch)
        large = step <= args.large_first
        labs = [
            sample_structures(cache["segs"][i], cache["valid"][i], rng, args.union_prob, large) for i in idx
        ]
        order = torch.tensor(np.concatenate([idx, idx]).astype(np.int64))
        lab_t = torch.from_numpy(np.stack(labs + labs))
        # Curriculum: template and target start geometrically aligned, so the first thing the
        # memory attention can learn is "copy the mask where it was"; the warps then grow.
        geometry = min(1.0, step / args.geometry_ramp) if args.geometry_ramp else 1.0
        x, masks, val = tbpre.augment(images_t[order], lab_t, valid_t[order], MAX_OBJECTS, gen, device,
                                      geometry=geometry)
        here = masks.sum((2, 3)) >= 16  # (2B, MAX_OBJECTS)
        b = args.batch
        objects = [[c for c in range(MAX_OBJECTS) if bool(here[k, c])] for k in range(b)]
        keep = [k for k in range(b) if objects[k]]
        if not keep:
            continue
        counts = [len(objects[k]) for k in keep]
        with tbpre._autocast(device, args.precision):
            feats = tbpre.encode_images(sam, x)
            mem_masks = torch.cat([masks[k, objects[k]] for k in keep])
            pred = tbpre.one_shot_forward(sam, [[feats[k] for k in keep]], [mem_masks],
                                          [feats[b + k] for k in keep], counts)
            truth = torch.cat([masks[b + k, objects[k]] for k in keep])
            tval = torch.cat([val[b + k][None].expand(len(objects[k]), -1, -1) for k in keep])
            present = torch.cat([here[b + k, objects[k]] for k in keep])
            parts = tbpre.object_losses(pred, truth, tval, present)
            mem_loss = (parts["bce"] + 2.0 * parts["dice"] + parts["iou_head"] + parts["presence"]).mean()
            loss = mem_loss
            if args.prompt_weight > 0 and bool(present.any()):
                rows = torch.nonzero(present).flatten()
                frame = make_frame(sam, [feats[b + k] for k in keep], counts)
                sel = lambda t: t[:, rows]  # noqa: E731, B023  (HW, B, C) layout; used in this step
                from descriptron_sam2pal.engine.frames import Frame

                sub = Frame(
                    [sel(f) for f in frame.vision_feats], [sel(p) for p in frame.vision_pos], frame.feat_sizes
                )
                coords, plabels, use_box = sample_prompts(truth[rows].cpu(), gen)
                p_loss, p_iou = [], []
                for kind in (use_box, ~use_box):  # boxes, then clicks (see sample_prompts)
                    sel_k = torch.nonzero(kind).flatten()
                    if len(sel_k) == 0:
                        continue
                    part = Frame(
                        [f[:, sel_k] for f in sub.vision_feats],
                        [q[:, sel_k] for q in sub.vision_pos],
                        sub.feat_sizes,
                    )
                    lk, ik = prompt_losses(sam, part, coords[sel_k], plabels[sel_k], truth[rows][sel_k],
                                           tval[rows][sel_k])
                    p_loss.append(lk)
                    p_iou.append(ik)
                p_loss, p_iou = torch.cat(p_loss), torch.cat(p_iou)
                loss = loss + args.prompt_weight * p_loss.mean()
                log.add("prompt_iou", float(p_iou.mean()))
        grad_norm = tbpre.optimizer_step(loss, opt, sched, params, step)
        for key, value in (
            ("loss", float(loss.detach())),
            ("mem_loss", float(mem_loss.detach())),
            ("mem_iou", float(parts["iou"][present].mean()) if bool(present.any()) else float("nan")),
            ("absent_frac", float(1 - present.float().mean())),
            ("grad_norm", grad_norm),
        ):
            log.add(key, value)
        if step % args.log_every == 0 or step == args.steps:
            entry = log.entry(step=step, lr=sched.get_last_lr()[0], seconds=round(time.time() - t_start, 1))
            if step % args.eval_every == 0 or step == args.steps:
                entry["eval_one_shot_iou"] = tbpre.quick_eval(sam, ecache, np.arange(len(ecache["names"])),
                                                               names, args.size, device)
                save(step)  # a CPU run stopped early still leaves its last evaluated weights
            log.write(entry)
        if args.time_limit and time.time() - t_start > 60 * args.time_limit:
            print(f"time limit reached at step {step}", flush=True)
            break
    elapsed = time.time() - t_start
    final = tbpre.quick_eval(sam, ecache, np.arange(len(ecache["names"])), names, args.size, device)
    log.write({"step": step, "final_eval_one_shot_iou": final}, echo=False)
    log.close()
    ckpt = save(step)
    summary = {"checkpoint": str(ckpt), "steps_done": step, "seconds": round(elapsed, 1),
               "final_eval_one_shot_iou": final, "hardware": hardware}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)
    if args.install:
        tbpre.install_checkpoint(ckpt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
