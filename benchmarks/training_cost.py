#!/usr/bin/env python3
"""What one default training run is made of, per part, at a real SAM2 size: a training step,
a pseudo-label remake and segmenting one specimen, in CPU seconds of one thread.

    python benchmarks/training_cost.py [--image-size 512] [--n 8] [--repeats 2] [--model tiny|beetle]

One process, one thread (``process_time``, so another process on the machine inflates the
figures less than wall time would). The template is the first BeetleFlow photo with all five
structures (benchmarks/data.py), the images the next ``--n``. SAM2.1 hiera-tiny with
random weights (what a step costs does not depend on them; what a remake costs does, a little:
it computes the round trip of the masks the choice reaches, and a random model closes few, so
more are tried than with a trained one). Prints, per part, CPU seconds and the process's peak
memory so far, and then

    training_cost: step_s=A remake_per_image_s=B remake_share=C remake_before_s=D propagate_s=E
    propagate_confidence_s=F

where ``remake_share`` is the remakes' share of a default run's time with 100 unlabeled
photos (TrainConfig: 300 steps, a remake every ``pseudo_every`` steps on up to
``pseudo_labels.MAX_IMAGES`` photos). Say which CPU: with ``ONEDNN_MAX_CPU_ISA=AVX2`` torch
does not use AVX512-BF16 / AMX even where the CPU has them (fp32 is used on both).
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--n", type=int, default=8, help="unlabeled photos in the remake")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--objects-per-pass", type=int, default=0,
                   help="TrainConfig.objects_per_pass for the step part (0: the default, auto; 5: all five "
                        "structures in one pass, as before issue 21)")
    p.add_argument("--memory-dropout", type=float, default=None,
                   help="TrainConfig.memory_dropout for the step part (default: the trainer's)")
    p.add_argument("--structure-share", type=float, default=None,
                   help="TrainConfig.structure_share for the step part (default: the trainer's)")
    p.add_argument("--parts", default="propagate,remake,step",
                   help="which parts to measure (comma-separated); the last line needs all three")
    p.add_argument(
        "--images",
        type=Path,
        default=BENCH.parent.parent / "shared" / "data" / "beetleflow-5class-train" / "images",
    )
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(BENCH))
    import data as bdata
    from run import cpu_name

    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, predict_prepared
    from descriptron_sam2pal.engine.pseudo_labels import (
        MAX_IMAGES,
        choose,
        pool_templates,
        predict_masks,
        select_pseudo_labels,
    )
    from descriptron_sam2pal.engine.review_score import FITS, fit_for
    from descriptron_sam2pal.engine.trainer import TrainConfig, train
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png
    from descriptron_sam2pal.engine.prepared_templates import Template
    from descriptron_sam2pal.model.build import build_model
    from descriptron_sam2pal.model.device import cpu_has_native_bf16

    cache = BENCH / "cache"
    ckpt = cache / "tiny_random_seed0.pt"
    if not ckpt.exists():
        import subprocess

        subprocess.run(
            [
                sys.executable,
                str(BENCH / "make_checkpoint.py"),
                "--config",
                "configs/sam2.1/sam2.1_hiera_t.yaml",
                "--out",
                str(ckpt),
            ],
            check=True,
        )

    def tiny():
        loaded = build_model("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt, image_size=args.image_size)
        loaded.precision = "fp32"
        return loaded

    model = tiny()
    size = model.image_size
    ds = bdata.load_dataset(args.images, args.n, cache)
    gt = masks_from_color_png(ds.template_mask, ds.colors)
    template = Template("template", prepare_image(str(ds.template_image), size), gt)
    images = [prepare_image(str(t), size) for t in ds.targets]
    print(
        f"{cpu_name()}; native bf16 in torch: {cpu_has_native_bf16()}; fp32, 1 thread, {size} px, "
        f"{len(template.structures)} structures, {len(images)} photos, torch {torch.__version__}"
    )

    parts = set(args.parts.split(","))
    # Segmenting one specimen (its encoder pass included), with and without the round trip.
    memory = TemplateMemory(model, [template])
    prop = {}
    for confidence in (False, True) if "propagate" in parts else ():
        times = []
        for r in range(args.repeats):
            image = images[r % len(images)]
            t0 = time.process_time()
            feats = memory.encoder.encode([image], cache=False)
            predict_prepared(memory, [image], feats, confidence=confidence)
            times.append(time.process_time() - t0)
        prop[confidence] = statistics.median(times)
        print(
            f"propagate one specimen, confidence={confidence}: {prop[confidence]:.2f} s "
            f"(peak {peak_gb():.2f} GB)"
        )

    # A remake on the images (features cached first: the trainer has them from its steps), and the
    # same remake with every mask's round trip computed in the decoder pass: what it cost before.
    remake = eager = None
    if "remake" in parts:
        encoder = FeatureEncoder(model)
        encoder.encode(images)
        t0 = time.process_time()
        labels = select_pseudo_labels(model, [template], images, encoder, 0.25, 4)
        remake = (time.process_time() - t0) / len(images)
        print(f"pseudo-label remake: {remake:.2f} s per photo, {sum(len(v) for v in labels.values())} "
              f"label(s) (peak {peak_gb():.2f} GB)")
        fit = FITS[fit_for(model.checkpoint_hash)]
        t0 = time.process_time()
        first = predict_masks(model, [template], images, encoder)
        again = predict_masks(model, [template] + pool_templates(first, images, fit, 4), images, encoder)
        eager_labels = choose(again, fit, max(1, math.ceil(0.25 * len(images))))
        eager = (time.process_time() - t0) / len(images)
        print(f"the same remake computing every round trip: {eager:.2f} s per photo, "
              f"{sum(len(v) for v in eager_labels.values())} label(s)")

    # Training steps (default settings, no validation, no remake): the CPU seconds of a run of
    # 1 + R steps less those of a run of 1 step (model set-up and the first encoder passes).
    step = None
    if "step" in parts:
        import tempfile

        cpu = []
        with tempfile.TemporaryDirectory() as tmp:
            for steps in (1, 1 + args.repeats):
                config = TrainConfig(steps=steps, validate_every=0, objects_per_pass=args.objects_per_pass)
                if args.memory_dropout is not None:
                    config.memory_dropout = args.memory_dropout
                if args.structure_share is not None:
                    config.structure_share = args.structure_share
                config.loss.pseudo = 0.0
                step_model = tiny()
                t0 = time.process_time()
                train(step_model, [template], images[:2], Path(tmp) / f"run{steps}", config)
                cpu.append(time.process_time() - t0)
        step = (cpu[1] - cpu[0]) / args.repeats
        trained = len(config.step_structures(len(template.structures), 0))
        print(f"training step ({trained} of {len(template.structures)} structures): {step:.2f} s "
              f"(peak {peak_gb():.2f} GB)")
    if None in (remake, step) or not prop:
        return 0

    steps, every, pool = TrainConfig().steps, TrainConfig().pseudo_every, min(100, MAX_IMAGES)
    remakes = math.ceil(steps / every)
    share = remakes * pool * remake / (remakes * pool * remake + steps * step)
    print(
        f"a default run with 100 unlabeled photos: {steps} steps = {steps * step / 60:.0f} min, "
        f"{remakes} remakes x {pool} photos = {remakes * pool * remake / 60:.0f} min"
    )
    print(
        f"training_cost: step_s={step:.2f} remake_per_image_s={remake:.2f} remake_share={share:.2f} "
        f"remake_before_s={eager:.2f} propagate_s={prop[False]:.2f} propagate_confidence_s={prop[True]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
