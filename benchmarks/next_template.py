"""Does outlining the suggested specimen next beat outlining a random one? (issue 14.5)

    python benchmarks/next_template.py [--seeds 3] [--pool 40] [--eval 24] [--steps 50]

For each seed: one first template is drawn (seeded) from the test-bed's training
split; the model segments a pool of unlabeled training-split specimens from it
with review scores (``propagate_run``, exactly what Segment does); the specimen
``engine.next_template.suggest_next_templates`` ranks first becomes the second
template, against a random specimen of the same pool. Both pairs are scored on the
held-out evaluation images (the seeded split of benchmarks/testbed/split.json)
without retraining (propagation from two templates) and after ``--steps`` steps of
the default Train SAM2-PAL recipe (``train_run``). The last line printed is
    next_template: suggested_miou=A.A random_miou=B.B suggested_trained_miou=C.C random_trained_miou=D.D
(percent mIoU over the structures, mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from quality import BEETLE_COLORS, CHECKPOINT_HELP, PACKAGED, checkpoint_path, pair_images, score  # noqa: E402
from testbed.data import DEFAULT_DATA, load_or_make_split  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="images/ and masks/ of the 5-class test-bed set"
    )
    p.add_argument("--checkpoint", type=checkpoint_path, default=PACKAGED, help=CHECKPOINT_HELP)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pool", type=int, default=40, help="unlabeled training-split specimens to rank")
    p.add_argument("--eval", type=int, default=24, help="held-out evaluation images scored (of 72)")
    p.add_argument("--steps", type=int, default=50, help="training steps after adding the template (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "next_template.json")
    return p.parse_args(argv)


def run_seed(args, pairs_by_name, split, seed: int) -> dict:
    from descriptron_sam2pal.engine.evaluate import truth_from_color_pngs
    from descriptron_sam2pal.engine.next_template import suggest_next_templates
    from descriptron_sam2pal.engine.trainer import TrainConfig
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png
    from descriptron_sam2pal.jobs.models import ModelRequest
    from descriptron_sam2pal.jobs.propagation import PropagateRequest, propagate_run
    from descriptron_sam2pal.jobs.templates import spec_from_color_png
    from descriptron_sam2pal.jobs.training import TrainRequest, train_run

    rng = random.Random(seed)
    train_names = [n for n in split["pretrain"] if n in pairs_by_name]
    complete = [
        n
        for n in train_names
        if all(m.any() for m in masks_from_color_png(pairs_by_name[n][1], BEETLE_COLORS).values())
    ]
    first = rng.choice(complete)
    pool = rng.sample([n for n in train_names if n != first], args.pool)
    evaluation = sorted(rng.sample([n for n in split["eval"] if n in pairs_by_name], args.eval))
    truth = truth_from_color_pngs([pairs_by_name[n][1] for n in evaluation], BEETLE_COLORS)
    eval_paths = [str(pairs_by_name[n][0]) for n in evaluation]
    model = ModelRequest(str(args.checkpoint), "cpu")

    def spec(name):
        image, mask = pairs_by_name[name]
        return spec_from_color_png(image, mask, BEETLE_COLORS)

    start = spec(first)
    ranked = propagate_run(PropagateRequest(model, [start], [str(pairs_by_name[n][0]) for n in pool]),
                           keep_results=True)
    structures = start.structures
    suggested = Path(suggest_next_templates(ranked.results, structures, limit=1)[0].path).name
    random_pick = rng.choice([n for n in pool if n != suggested])
    out = {"seed": seed, "first": first, "suggested": suggested, "random": random_pick}
    for label, second in (("suggested", suggested), ("random", random_pick)):
        specs = [start, spec(second)]
        t0 = time.time()
        zero = propagate_run(PropagateRequest(model, specs, eval_paths, confidence=False), keep_results=True)
        per = score(zero.results, truth, BEETLE_COLORS)
        out[f"{label}_miou"] = float(np.mean([v for v in per.values() if v is not None]))
        if args.steps:
            with tempfile.TemporaryDirectory() as run_dir:
                trained = train_run(
                    TrainRequest(
                        model,
                        specs,
                        [str(pairs_by_name[n][0]) for n in pool],
                        Path(run_dir) / "run",
                        TrainConfig(steps=args.steps, seed=seed),
                    )
                )
                after = propagate_run(PropagateRequest(model, specs, eval_paths, confidence=False),
                                      keep_results=True, trained=trained)
            per = score(after.results, truth, BEETLE_COLORS)
            out[f"{label}_trained_miou"] = float(np.mean([v for v in per.values() if v is not None]))
        print(f"  seed {seed} {label:<9} second template {second}: mIoU {out[f'{label}_miou']:.1f}"
              + (f", after {args.steps} steps {out[f'{label}_trained_miou']:.1f}" if args.steps else "")
              + f" ({time.time() - t0:.0f} s)", flush=True)
    return out


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = pair_images(args.data / "images", args.data / "masks")
    pairs_by_name = {p[0].name: p for p in pairs}
    split = load_or_make_split(args.data)
    runs = [run_seed(args, pairs_by_name, split, seed) for seed in range(args.seeds)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(runs, indent=2))
    keys = ["suggested_miou", "random_miou"] + (
        ["suggested_trained_miou", "random_trained_miou"] if args.steps else []
    )
    print("next_template: " + " ".join(f"{k}={np.mean([r[k] for r in runs]):.1f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
