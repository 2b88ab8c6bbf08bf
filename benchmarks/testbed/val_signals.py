"""Which validation signal follows the real target quality during a palindrome run? (issue 6)

With one template the trainer validates on the palindrome loss of held-out unlabeled images,
and on the beetle test-bed that loss keeps falling while the targets get worse. This script
trains PAL exactly as ``benchmarks/quality.py --quick`` does (same templates, targets, pool,
settings), keeps the weights at every validation step, and for each of those checkpoints
measures the real quality on the targets (seen mIoU, novel IoU) and several candidate
validation signals that need no target labels:

- ``plain``: the trainer's default, palindrome loss x0 -> x1 -> x0 on its held-out images;
- ``copy``: the same, the backward half reconstructing a held-out augmented copy of the
  template (what ``template_versions`` validates on);
- ``margin``: ``copy`` minus the same loss from a *blank* memory of x1 (how much the memory
  of x1 helps the reconstruction; memorisation brings it towards 0);
- ``blank_iou``: cycle IoU of the held-out copy reconstructed from a blank memory (high =
  reproduced without reading the memory);
- ``self_iou``: IoU of held-out copies predicted from the template's own memory (what the
  supervised baseline validates on, as an IoU);
- ``estimated_iou``: the mean review score (``engine.review_score``, an estimate of the IoU
  from SAM2's stability and predicted IoU; the 4 held-out images are too few for the
  collection step) of the held-out images' predictions.

Issue 25 candidates (the trainer's ``TrainConfig()`` recipe by default, ``--recipe``), from one
propagation of the template onto the 40 targets per checkpoint (the targets are the pool):

- ``score_val`` / ``score_pool``: the mean review score of the held-out images' / the whole
  pool's predictions (a structure predicted absent counts 0);
- ``agreement``: the mean collection agreement (``engine.collection_score.consensus``: each
  mask's mean IoU with the pool's other masks of its structure) over the pool;
- ``cycle_val`` / ``cycle_pool``: the mean palindrome confidence (the round trip's IoU) of the
  held-out images' / the pool's predictions (absent counts 0).

For each signal, ``picks`` is the checkpoint it would keep (step 0, the untrained model,
included) and ``picked_all`` / ``gain`` that checkpoint's all-structure mIoU and its gain
over the untrained model: what ``default_miou - zero_shot_miou`` would be with that signal.

Prints one row per checkpoint and, per seed, the rank correlation of each signal with the
seen mIoU and the novel IoU (signed so that positive = the signal picks better checkpoints).

    python benchmarks/testbed/val_signals.py --images ... --masks ... [--seeds 3] [--lr ...]
        [--template-versions N] [--loss ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402

SIGNALS = {
    "plain": -1,
    "copy": -1,
    "margin": -1,
    "blank_iou": -1,
    "self_iou": 1,
    "estimated_iou": 1,
    "score_val": 1,
    "score_pool": 1,
    "agreement": 1,
    "cycle_val": 1,
    "cycle_pool": 1,
}  # + = higher better


DUMP_SIDE = 128  # masks kept per checkpoint for post-hoc signals (masks_seedN.npz)


def dump_step(dumps: dict, step: int, results, per_image: dict, names) -> None:
    """Append one checkpoint's per-(target, structure) IoU, review score, presence and a
    DUMP_SIDE x DUMP_SIDE mask to ``dumps`` (arrays by field), for signals computed afterwards
    (``val_signals_posthoc.py``) without training again."""
    import cv2

    from descriptron_sam2pal.store.stem import normalized_stem

    for r in results:
        stem = normalized_stem(Path(r.path).name)
        for name in names:
            st = r.structures.get(name)
            present = bool(st is not None and st.present)
            mask = np.zeros((DUMP_SIDE, DUMP_SIDE), bool)
            if present and st.mask is not None:
                side = (DUMP_SIDE, DUMP_SIDE)
                small = cv2.resize(st.mask.astype(np.float32), side, interpolation=cv2.INTER_AREA)
                mask = small >= 0.5
            for key, value in (("step", step), ("target", str(r.path)), ("structure", name),
                               ("iou", per_image.get(name, {}).get(stem, np.nan)),
                               ("score", (st.score or 0.0) if present else 0.0),
                               ("predicted_iou", (st.predicted_iou or 0.0) if present else 0.0),
                               ("stability", (st.stability or 0.0) if present else 0.0),
                               ("present", present), ("mask", np.packbits(mask.ravel()))):
                dumps.setdefault(key, []).append(value)


def rank_corr(a, b) -> float:
    a, b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--masks", type=Path, required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--loss", default="")
    p.add_argument("--template-versions", type=int, default=0)
    p.add_argument(
        "--recipe",
        choices=("default", "pal"),
        default="default",
        help="default: TrainConfig() as Train SAM2-PAL (pseudo-labels on); pal: the palindrome term "
        "only, with --loss (the issue 6 measurement)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--max-targets", type=int, default=40, help="targets (= the pool) per seed (quality.py --quick: 40)"
    )
    p.add_argument("--checkpoint", type=quality.checkpoint_path, default=quality.PACKAGED,
                   help=quality.CHECKPOINT_HELP)
    p.add_argument("--seed-list", default="", help="only these seeds (comma-separated)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "val_signals")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from descriptron_sam2pal.engine.collection_score import consensus, mask_thumbnail
    from descriptron_sam2pal.engine.evaluate import truth_from_color_pngs
    from descriptron_sam2pal.imaging.mask_png import parse_colors
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.frames import encode_memory, make_frame, predict_from_memory
    from descriptron_sam2pal.engine.palindrome import (
        LossWeights,
        augment_letterboxed,
        hard_iou,
        mask_losses,
        palindrome_step,
    )
    from descriptron_sam2pal.engine.preprocess import PreparedImage, prepare_image
    from descriptron_sam2pal.engine.memory_propagation import propagate
    from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png
    from descriptron_sam2pal.engine.trainer import TrainConfig, train
    from descriptron_sam2pal.model.build import build_model
    from descriptron_sam2pal.model.lora import load_trainable_state, trainable_state_dict
    from descriptron_sam2pal.store.stem import normalized_stem

    colors = parse_colors(quality.BEETLE_COLORS)
    pairs = quality.pair_images(args.images, args.masks)
    meta = quality.checkpoint_meta(args.checkpoint)
    novel = meta.get("held_out_structure")
    held = set(meta.get("eval_images") or [])
    pairs = [q for q in pairs if q[0].name in held]
    loss = LossWeights() if args.recipe == "default" else LossWeights(pseudo=0.0)
    for part in filter(None, args.loss.split(",")):
        key, _, value = part.partition("=")
        setattr(loss, key.strip(), float(value))
    args.out.mkdir(parents=True, exist_ok=True)
    report = []
    for seed in [int(x) for x in args.seed_list.split(",") if x.strip()] or range(args.seeds):
        # The template and targets of quality.py --quick (K = 1, 40 targets).
        [template_pair], targets = quality.draw_split(pairs, colors, 1, seed, args.max_targets)
        truth = truth_from_color_pngs([m for _, m in targets], colors)
        target_paths = [str(i) for i, _ in targets]

        model = build_model(checkpoint=args.checkpoint, device="cpu")
        [template] = load_templates(
            [
                spec_from_color_png(
                    template_pair[0],
                    template_pair[1],
                    colors,
                    image_id=normalized_stem(template_pair[0].name),
                )
            ],
            model.image_size,
        )
        config = TrainConfig(
            seed=seed, steps=args.steps, lr=args.lr, loss=loss, template_versions=args.template_versions
        )
        snaps: dict[int, dict] = {}

        def keep(progress):  # this seed's run only: config, snaps and model are this iteration's
            every = config.validate_every  # noqa: B023
            last = config.steps  # noqa: B023
            due = progress.done % every == 0 or progress.done == last
            if progress.stage == "train" and progress.done and due:
                snaps[progress.done] = trainable_state_dict(model.sam)  # noqa: B023

        run_dir = args.out / f"seed{seed}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        res = train(
            model,
            [template],
            target_paths,
            run_dir,
            config,
            progress=keep,
            feature_cache_dir=args.out / "feature_cache",
        )
        settings = json.loads((run_dir / "settings.json").read_text())
        val_images = [
            prepare_image(im["source"], model.image_size) for im in settings["validation"]["images"]
        ]
        names = template.structures
        masks, valid = template.model_masks(names), template.valid()
        copy_rng = np.random.RandomState(12345 + seed)
        copies = []
        for _ in range(3):
            px, cm, cv = augment_letterboxed(template.image.pixels, masks, valid, copy_rng)
            copies.append((PreparedImage(px, template.image.letterbox, f"copy{_}-{seed}-{px.sum()}"), cm, cv))
        encoder = FeatureEncoder(model)
        val_by_step = {e["step"]: e["val"] for e in res.history if "val" in e}
        val_by_step[0] = res.baseline_val
        rows = []
        dumps: dict = {}
        # Step 0, the untrained adapter: LoRA's B matrices start at zero.
        snaps[0] = {k: (torch.zeros_like(v) if "lora_B" in k else v) for k, v in snaps[max(snaps)].items()}
        for step in sorted(snaps):
            state = snaps[step]
            load_trainable_state(model.sam, state)
            model.sam.eval()
            results = propagate(model, [template], target_paths, confidence=True)
            per, per_image = quality.score(results, truth, colors, per_image=True)
            dump_step(dumps, step, results, per_image, names)
            seen, nov = quality.summarise(per, novel)
            nov = float("nan") if nov is None else nov
            all_miou = float(np.mean([v for v in per.values() if v is not None]))
            sig = {k: [] for k in SIGNALS}
            val_sources = {str(im.source) for im in val_images}

            def mean_field(rs, field):
                return [
                    (getattr(st, field) or 0.0) if st.present else 0.0
                    for r in rs
                    for st in r.structures.values()
                ]

            on_val = [r for r in results if str(r.path) in val_sources]
            sig["score_val"] = mean_field(on_val, "score")
            sig["estimated_iou"] = sig["score_val"]
            sig["score_pool"] = mean_field(results, "score")
            sig["cycle_val"] = mean_field(on_val, "palindrome_confidence")
            sig["cycle_pool"] = mean_field(results, "palindrome_confidence")
            for name in names:
                thumbs = [
                    mask_thumbnail(r.structures[name].mask)
                    for r in results
                    if name in r.structures and r.structures[name].present
                ]
                # absent masks agree with nothing: they count 0
                agree = list(consensus(thumbs)) if len(thumbs) >= 2 else []
                sig["agreement"].append(float(np.sum(agree)) / max(1, len(results)))
            with torch.no_grad():
                f0 = encoder.encode([template.image])[0]
                fc = encoder.encode([c[0] for c in copies])
                k = len(names)
                m0 = encode_memory(model.sam, make_frame(model.sam, [f0], k), masks[:, None])
                for (_, cm, cv), f in zip(copies, fc):
                    pr = predict_from_memory(model.sam, make_frame(model.sam, [f], k), [m0])
                    sig["self_iou"].append(float(hard_iou(pr.logits, cm, cv).mean()))
                for im in val_images:
                    f1 = encoder.encode([im])[0]
                    sig["plain"].append(float(palindrome_step(model.sam, f0, masks, valid, f1, loss).loss))
                    recon = (fc[0], copies[0][1], copies[0][2])
                    real = palindrome_step(model.sam, f0, masks, valid, f1, LossWeights(), recon=recon)
                    # Blank memory: x1 with empty masks, then the copy predicted from it.
                    fr1 = make_frame(model.sam, [f1], k)
                    empty = torch.zeros(k, 1, model.image_size, model.image_size)
                    pb = predict_from_memory(
                        model.sam, make_frame(model.sam, [fc[0]], k), [encode_memory(model.sam, fr1, empty)]
                    )
                    bce, dice = mask_losses(pb.logits, copies[0][1], copies[0][2])
                    sig["copy"].append(float(real.loss))
                    sig["margin"].append(float(real.bce.sum() + real.dice.sum() - bce.sum() - dice.sum()))
                    sig["blank_iou"].append(float(hard_iou(pb.logits, copies[0][1], copies[0][2]).mean()))
            row = {
                "step": step,
                "seen": seen,
                "novel": nov,
                "all": all_miou,
                "trainer_val": val_by_step.get(step),
                **{k: float(np.mean(v)) for k, v in sig.items()},
            }
            rows.append(row)
            print(
                f"seed {seed} step {step:3d}  all {all_miou:5.1f}  seen {seen:5.1f}  novel {nov:5.1f}  "
                + "  ".join(f"{k} {row[k]:.3f}" for k in SIGNALS),
                flush=True,
            )
        corr = {}
        for k in SIGNALS:
            pick = max(rows, key=lambda r: (SIGNALS[k] * r[k], -r["step"]))  # ties: the earlier step
            corr[k] = {
                "all": SIGNALS[k] * rank_corr([r[k] for r in rows], [r["all"] for r in rows]),
                "seen": SIGNALS[k] * rank_corr([r[k] for r in rows], [r["seen"] for r in rows]),
                "novel": SIGNALS[k] * rank_corr([r[k] for r in rows], [r["novel"] for r in rows]),
                "picks": pick["step"],
                "picked_all": pick["all"],
                "gain": pick["all"] - rows[0]["all"],
            }
        best = {
            "all": max(rows, key=lambda r: r["all"])["step"],
            "seen": max(rows, key=lambda r: r["seen"])["step"],
            "novel": max(rows, key=lambda r: r["novel"])["step"],
        }
        print(
            f"seed {seed} rank correlation with (all, seen, novel), step picked, its all mIoU and gain over "
            f"step 0; best step by all {best['all']}:"
        )
        for k, c in corr.items():
            print(
                f"    {k:<13} {c['all']:+.2f} {c['seen']:+.2f} {c['novel']:+.2f}  picks {c['picks']:3d}  "
                f"{c['picked_all']:5.1f} ({c['gain']:+.1f})"
            )
        trainer = {"best_step": res.best_step, "improved": res.best_step > 0, "metric": res.val_metric,
                   "picked_all": next((r["all"] for r in rows if r["step"] == res.best_step), None)}
        print(f"seed {seed} trainer kept step {res.best_step} ({res.val_metric}): "
              f"all {trainer['picked_all']} vs untrained {rows[0]['all']:.1f}")
        np.savez_compressed(args.out / f"masks_seed{seed}.npz", val=np.array(sorted(val_sources)),
                            **{k: np.asarray(v) for k, v in dumps.items()})
        report.append(
            {"seed": seed, "template": template_pair[0].name, "rows": rows, "corr": corr, "best": best,
             "trainer": trainer}
        )
        (args.out / "val_signals.json").write_text(
            json.dumps({"args": {a: str(v) for a, v in vars(args).items()}, "runs": report}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
