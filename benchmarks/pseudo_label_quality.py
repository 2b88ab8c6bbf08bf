"""How good are the trainer's pseudo-labels (``engine.pseudo_labels``) on the test-bed?

    python benchmarks/pseudo_label_quality.py --images DIR --masks DIR --checkpoint PT \
        [--seed-list 0,1,2] [--fraction 0.25] [--from-pool 0,4]

For each seed the template is drawn exactly as ``benchmarks/quality.py --templates 1`` draws
it, every other image is unlabeled, and the untrained model (what the trainer's first
pseudo-labels come from) predicts them. Printed per seed, ``from_pool`` and palindrome gate
(none, and ``MIN_CYCLE``): the mean IoU (model grid, real pixels) of all present masks, of
those whose palindrome closes, and of the masks kept as pseudo-labels (what
``select_pseudo_labels`` keeps), with their numbers. Pseudo-labels can teach only where they
are better than the model's average mask.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality import BEETLE_COLORS, checkpoint_meta, draw_split, pair_images  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--masks", type=Path, required=True)
    p.add_argument("--colors", default=BEETLE_COLORS)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--seed-list", default="0,1,2")
    p.add_argument("--fraction", type=float, default=0.25)
    p.add_argument("--from-pool", default="0,4", help="pseudo-templates per structure, comma-separated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.engine.pseudo_labels import MIN_CYCLE, choose, pool_templates, predict_masks
    from descriptron_sam2pal.engine.review_score import FITS, fit_for
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png, parse_colors
    from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png
    from descriptron_sam2pal.model.build import build_model
    from descriptron_sam2pal.store.stem import normalized_stem

    colors = parse_colors(args.colors)
    pairs = pair_images(args.images, args.masks)
    held = set(checkpoint_meta(args.checkpoint).get("eval_images") or [])
    if held and held <= {i.name for i, _ in pairs}:
        pairs = [pr for pr in pairs if pr[0].name in held]
    model = build_model(checkpoint=args.checkpoint)
    encoder = FeatureEncoder(model)
    fit = FITS[fit_for(model.checkpoint_hash)]
    rows = []
    for seed in [int(s) for s in args.seed_list.split(",") if s.strip()]:
        (template_pair,), targets = draw_split(pairs, colors, 1, seed)  # quality.py's draw for K = 1
        template = load_templates([spec_from_color_png(*template_pair, colors,
                                                       image_id=normalized_stem(template_pair[0].name))],
                                  model.image_size)[0]
        images = [prepare_image(str(i), model.image_size) for i, _ in targets]
        truth = []
        for image, (_, m) in zip(images, targets):
            gt = masks_from_color_png(m, colors)
            truth.append(
                {n: (image.letterbox.apply_mask(g) >= 0.5) & image.valid_mask() for n, g in gt.items()}
            )

        def iou(index, name, mask):  # called in this iteration only, on this seed's truth
            gt = truth[index].get(name, np.zeros_like(mask))  # noqa: B023
            union = (gt | mask).sum()
            return float((gt & mask).sum() / union) if union else 1.0

        keep = max(1, int(np.ceil(args.fraction * len(images))))
        first = predict_masks(model, [template], images, encoder)  # the template alone: once per seed
        for from_pool in [int(x) for x in args.from_pool.split(",") if x.strip()]:
            for min_cycle in (0.0, MIN_CYCLE):
                found = first
                if from_pool:
                    extra = pool_templates(first, images, fit, from_pool, min_cycle)
                    found = predict_masks(model, [template] + extra, images, encoder)
                labels = choose(found, fit, keep, min_cycle)
                every = [
                    (iou(i, n, m), sig.get("palindrome") or 0.0)
                    for n, items in found.items()
                    for i, sig, m in items
                ]
                closing = [v for v, cycle in every if cycle >= MIN_CYCLE]
                kept_ious = [iou(i, n, m) for i, masks in labels.items() for n, m in masks.items()]
                row = {
                    "seed": seed,
                    "template": template_pair[0].name,
                    "from_pool": from_pool,
                    "min_cycle": min_cycle,
                    "all_masks": len(every),
                    "all_miou": 100 * float(np.mean([v for v, _ in every])),
                    "closing_masks": len(closing),
                    "closing_miou": 100 * float(np.mean(closing)) if closing else None,
                    "kept": len(kept_ious),
                    "kept_miou": 100 * float(np.mean(kept_ious)) if kept_ious else None,
                }
                rows.append(row)
                print(
                    f"seed {seed} from_pool {from_pool} min_cycle {min_cycle}: all {row['all_masks']} masks "
                    f"mIoU {row['all_miou']:.1f}; cycle >= {MIN_CYCLE}: {len(closing)} masks mIoU "
                    f"{row['closing_miou'] or 0:.1f}; kept {row['kept']} mIoU {row['kept_miou'] or 0:.1f}",
                    flush=True,
                )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
