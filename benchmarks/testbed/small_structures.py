"""One-shot transfer of the 9-class beetle parts (eyes and mouthparts are small) at several input sizes.

    python benchmarks/testbed/small_structures.py --checkpoint PT [--sizes 256,512] [--seeds 3]

Images: the 9-class photos that are copies of the 5-class evaluation photos (found by
pixels, as ``pseudo.py`` finds them), so never seen in any pretraining. Per seed one
of them (with every structure) is the template, all others are targets; the engine's
propagation (``confidence=False``) at each input size (the model's weights are used
as they are: a 256 px model run at 512 px sees structures twice as large in pixels
but at a scale it was not trained on). Prints IoU per structure (engine.evaluate, at
the masks' resolution) and the median size of each structure in model pixels.

``--second-pass``: at the model's own size, each seed is propagated twice, without and with
the second pass for small structures (``engine.small_structures``: crops at the model's full
input size, the template's crop as memory), with the seconds per specimen of each; the
structures it chose (small on the template) are printed per seed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
sys.path.append(str(REPO / "benchmarks"))  # after HERE: ``data`` is the test-bed's data.py

import data as tbdata  # noqa: E402
import pseudo  # noqa: E402
from quality import CHECKPOINT_HELP, checkpoint_path  # noqa: E402

COLORS9 = (
    "head=100,0,0;eyes=0,100,0;mouthparts=0,0,100;pronotum=100,100,0;elytra=100,0,100;"
    "tail=0,100,100;legs=200,0,0;antennas=0,200,0;pin=0,0,200"
)


def held_out_nine_class(data5: Path, data9: Path, size: int = 256) -> list[str]:
    from descriptron_sam2pal.engine.preprocess import prepare_image

    split = tbdata.load_or_make_split(data5)
    thumbs = np.stack(
        [pseudo._thumb(prepare_image(data5 / "images" / n, size).pixels) for n in split["eval"]]
    )
    keep = []
    for p in sorted((data9 / "images").glob("*.png")):
        if np.abs(thumbs - pseudo._thumb(prepare_image(p, size).pixels)[None]).mean((1, 2)).min() < 6.0:
            keep.append(p.name)
    return keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=checkpoint_path, required=True, help=CHECKPOINT_HELP)
    ap.add_argument("--data", type=Path, default=tbdata.DEFAULT_DATA)
    ap.add_argument("--data9", type=Path, default=pseudo.DEFAULT_DATA9)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    ap.add_argument(
        "--second-pass",
        action="store_true",
        help="without and with engine.small_structures' second pass (the model's size only)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from descriptron_sam2pal.engine.evaluate import evaluate, truth_from_color_pngs
    from descriptron_sam2pal.engine.memory_propagation import propagate
    from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png
    from descriptron_sam2pal.imaging.letterbox import Letterbox
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png, parse_colors
    from descriptron_sam2pal.model.build import build_model

    colors = parse_colors(COLORS9)
    names = held_out_nine_class(args.data, args.data9)
    pairs = [(args.data9 / "images" / n, args.data9 / "masks" / n) for n in names]
    complete = [p for p in pairs if all(m.any() for m in masks_from_color_png(p[1], colors).values())]
    print(f"{len(pairs)} held-out 9-class photos, {len(complete)} with every structure", flush=True)
    result = {"images": len(pairs), "sizes": {}}
    if args.second_pass:
        result["second_pass"] = second_pass(args, pairs, complete, colors)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))
        return 0
    for size in [int(s) for s in args.sizes.split(",")]:
        model = build_model(checkpoint=args.checkpoint, image_size=size)
        per_seed = []
        for seed in range(args.seeds):
            t = random.Random(seed).choice(complete)
            [template] = load_templates([spec_from_color_png(t[0], t[1], colors, image_id=t[0].stem)], size)
            targets = [p for p in pairs if p != t]
            res = propagate(model, [template], [str(p[0]) for p in targets], confidence=False)
            report = evaluate(res, truth_from_color_pngs([m for _, m in targets], colors), colors)
            per_seed.append(
                {n: 100 * s.mean_iou for n, s in report.structures.items() if s.mean_iou is not None}
            )
        # median structure size in model pixels (area of the letterboxed mask)
        areas = {n: [] for n in colors}
        for _, m in pairs:
            masks = masks_from_color_png(m, colors)
            first = next(iter(masks.values()))
            lb = Letterbox.fit(first.shape[0], first.shape[1], size)
            for n, mk in masks.items():
                if mk.any():
                    areas[n].append(float((lb.apply_mask(mk) >= 0.5).sum()))
        mean = {n: float(np.mean([s[n] for s in per_seed if n in s])) for n in colors}
        result["sizes"][size] = {
            "miou_per_structure": mean,
            "per_seed": per_seed,
            "median_area_px": {n: float(np.median(v)) if v else 0.0 for n, v in areas.items()},
        }
        print(
            f"size {size}: "
            + " ".join(
                f"{n} {mean[n]:.1f} ({result['sizes'][size]['median_area_px'][n]:.0f} px)" for n in colors
            ),
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


def second_pass(args, pairs, complete, colors) -> dict:
    import time

    from descriptron_sam2pal.engine.evaluate import evaluate, truth_from_color_pngs
    from descriptron_sam2pal.engine.memory_propagation import propagate
    from descriptron_sam2pal.engine.small_structures import small_structure_names
    from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png
    from descriptron_sam2pal.model.build import build_model

    model = build_model(checkpoint=args.checkpoint)
    out = {"per_seed": []}
    for seed in range(args.seeds):
        t = random.Random(seed).choice(complete)
        [template] = load_templates(
            [spec_from_color_png(t[0], t[1], colors, image_id=t[0].stem)], model.image_size
        )
        targets = [p for p in pairs if p != t]
        truth = truth_from_color_pngs([m for _, m in targets], colors)
        row = {"template": t[0].name, "small": small_structure_names([template])}
        for label, on in (("whole_photo", False), ("second_pass", True)):
            t0 = time.perf_counter()
            res = propagate(
                model, [template], [str(p[0]) for p in targets], confidence=False, small_structures=on
            )
            seconds = (time.perf_counter() - t0) / len(targets)
            report = evaluate(res, truth, colors)
            row[label] = {n: 100 * s.mean_iou for n, s in report.structures.items() if s.mean_iou is not None}
            row[label + "_s_per_specimen"] = seconds
            print(
                f"seed {seed} ({t[0].name}, small: {', '.join(row['small'])}) {label:<11} "
                + " ".join(f"{n} {v:.1f}" for n, v in row[label].items())
                + f"  ({seconds:.2f} s/specimen)",
                flush=True,
            )
        out["per_seed"].append(row)
    for label in ("whole_photo", "second_pass"):
        out[label] = {n: float(np.mean([r[label].get(n, 0.0) for r in out["per_seed"]])) for n in colors}
        out[label + "_s_per_specimen"] = float(
            np.mean([r[label + "_s_per_specimen"] for r in out["per_seed"]])
        )
        print(
            f"mean {label:<11} "
            + " ".join(f"{n} {v:.1f}" for n, v in out[label].items())
            + f"  ({out[label + '_s_per_specimen']:.2f} s/specimen)"
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
