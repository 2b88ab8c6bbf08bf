"""Time one palindrome training step and propagation per image, in-process, per model and size.

    python benchmarks/engine_timing.py [--models mini,tiny] [--sizes 256,512,1024] [--repeats 3]
                                       [--structures 3] [--threads N] [--precision fp32|bf16]

Random weights (the cost does not depend on them) and synthetic specimens.
Training steps are timed after the feature cache is full (no encoder pass);
propagation per image includes its encoder pass and palindrome confidence.
Prints a table of medians (min-max) and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root: tests.helpers, and the package itself

from descriptron_sam2pal.engine.features import FeatureEncoder  # noqa: E402
from descriptron_sam2pal.engine.palindrome import palindrome_step  # noqa: E402
from descriptron_sam2pal.engine.preprocess import prepare_image  # noqa: E402
from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, propagate  # noqa: E402
from descriptron_sam2pal.engine.prepared_templates import Template  # noqa: E402
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model  # noqa: E402
from descriptron_sam2pal.model.lora import apply_lora, trainable_parameters  # noqa: E402
from tests.helpers.synthetic import make_specimen  # noqa: E402

CONFIGS = {"mini": MINI_CONFIG, "tiny": "sam2.1_hiera_t"}
STRUCTURES = ("head", "eye", "scape", "mandible")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f} s ({min(values):.3f}-{max(values):.3f})"


def time_model(name: str, size: int, repeats: int, k: int, precision: str) -> tuple[str, str]:
    model = build_model(CONFIGS[name], image_size=size, seed=0)
    model.precision = precision
    image, masks = make_specimen(0, size=(int(size * 0.75), size), structures=STRUCTURES[:k])
    template = Template("t", prepare_image(image, size), masks)
    targets = [make_specimen(10 + i, size=(int(size * 0.8), size), structures=STRUCTURES[:k])[0]
               for i in range(repeats + 1)]

    # Propagation: one target at a time, after one warm-up target.
    memory = TemplateMemory(model, [template])
    times = []
    for i, target in enumerate(targets):
        t0 = time.perf_counter()
        propagate(model, memory, [target], batch_size=1)
        if i:
            times.append(time.perf_counter() - t0)
    propagation = _median(times)

    # Training: LoRA palindrome step on cached features (as after the first epoch).
    apply_lora(model.sam, rank=8)
    model.sam.train()
    model.sam.image_encoder.eval()
    encoder = FeatureEncoder(model)
    pool = [prepare_image(t, size) for t in targets]
    feats0, *pool_feats = encoder.encode([template.image, *pool])
    optimizer = torch.optim.AdamW(trainable_parameters(model.sam), lr=1e-4)
    masks_t, valid = template.model_masks(template.structures), template.valid()
    times = []
    autocast = model.autocast() if precision == "bf16" else torch.autocast("cpu", enabled=False)
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = palindrome_step(model.sam, feats0, masks_t, valid, pool_feats[i % len(pool_feats)])
        out.loss.backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - t0)
    return _median(times), propagation


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="mini,tiny")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--structures", type=int, default=3, help="structures per template (1-4)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.precision}, "
          f"{args.structures} structures, median of {args.repeats} (min-max)")
    print(f"{'model':6s} {'size':>5s}  {'training step (cached features)':32s}  propagation per image")
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            step, prop = time_model(name, size, args.repeats, args.structures, args.precision)
            print(f"{name:6s} {size:5d}  {step:32s}  {prop}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
