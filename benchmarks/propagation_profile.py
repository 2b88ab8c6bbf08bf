"""Where propagation spends its time, in-process: per target and per model module.

    python benchmarks/propagation_profile.py [--model tiny|test] [--checkpoint PT] [--image-size 512]
        [--targets 4] [--precision auto|fp32|bf16] [--batch-size 1] [--threads 1] [--images DIR]
        [--trace-rss] [--agreement] [--no-confidence] [--flops]

The template and targets are those of ``run.py`` (the beetle photos when present, else
generated images). After one warm-up target, ``--targets`` targets are propagated (K
structures, palindrome confidence on) and the wall time per target is printed, with the
time each SAM2 module took per target (forward hooks: image encoder, memory attention and
its layers' attention modules, mask decoder, memory encoder) and what is left outside them.

``--trace-rss``: resident and peak memory after each target (does the process grow with N?).
``--no-confidence``: without the palindrome confidence, as ``sam2pal propagate`` and the
GUI segment by default.

``--flops``: the floating-point operations of one target, per SAM2 module
(``torch.utils.flop_counter``, counted, not timed), and the share of the image encoder in
them: the ceiling of ``propagate_vs_encoder_limit`` (run.py) for a propagation that
computes what SAM2 computes, if every operation ran at the encoder's speed.

``--agreement``: the same targets once in fp32 and once in bf16: mask IoU between the two,
present/absent disagreements and confidence differences (meaningful with trained weights,
e.g. ``--checkpoint descriptron_sam2pal/resources/checkpoints/sam2pal_beetle.pt``).
"""

from __future__ import annotations

import argparse
import collections
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import data as bdata  # noqa: E402

from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, iter_propagate  # noqa: E402
from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png  # noqa: E402
from descriptron_sam2pal.model.build import build_model  # noqa: E402

CONFIGS = {"tiny": "configs/sam2.1/sam2.1_hiera_t.yaml", "test": "sam2pal_mini"}
DEFAULT_IMAGES = BENCH.parent.parent / "shared" / "data" / "beetleflow-5class-train" / "images"
MODULES = ("image_encoder", "memory_attention", "sam_mask_decoder", "memory_encoder")


class ModuleTimer:
    """Wall time and calls of named modules' forwards (nested modules are timed separately)."""

    def __init__(self, sam) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter = collections.Counter()
        for name in MODULES:
            self._wrap(name, getattr(sam, name))
        for layer in sam.memory_attention.layers:
            self._wrap("memory_attention: attention modules", layer.self_attn)
            self._wrap("memory_attention: attention modules", layer.cross_attn_image)

    def _wrap(self, name: str, module: torch.nn.Module) -> None:
        forward = module.forward

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        module.forward = timed

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _run(model, memory, targets, batch_size, trace_rss=False, keep=False, confidence=True):
    """Propagate; the results are kept (full-resolution masks) only when ``keep``."""
    results = []
    propagation = iter_propagate(model, memory, targets, batch_size=batch_size, confidence=confidence)
    for i, r in enumerate(propagation):
        if keep:
            results.append(r)
        if trace_rss:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  target {i + 1:3d}: resident {_rss_mb():6.0f} MB, peak {peak:6.0f} MB", flush=True)
    return results


def flops_per_module(model, memory, target, confidence: bool) -> dict[str, float]:
    """GFLOP of one target's propagation per top-level SAM2 module (and in all: "total")."""
    from torch.utils.flop_counter import FlopCounterMode

    sam = model.sam
    flags = [p.requires_grad for p in sam.parameters()]
    sam.requires_grad_(False)  # the counter's module tracker needs no autograd hooks
    try:
        with FlopCounterMode(display=False) as counter:
            _run(model, memory, [target], 1, confidence=confidence)
    finally:
        for p, f in zip(sam.parameters(), flags):
            p.requires_grad_(f)
    counts = counter.get_flop_counts()
    out = {"total": sum(counts.get("Global", {}).values()) / 1e9}
    for name in MODULES:
        cls = type(getattr(sam, name)).__name__
        out[name] = sum(counts.get(cls, {}).values()) / 1e9
    return out


def agreement(a_results, b_results) -> str:
    ious, flips, dconf = [], 0, []
    for a, b in zip(a_results, b_results):
        for name, sa in a.structures.items():
            sb = b.structures[name]
            if sa.present != sb.present:
                flips += 1
            elif sa.present:
                ious.append((sa.mask & sb.mask).sum() / max((sa.mask | sb.mask).sum(), 1))
                if sa.score is not None and sb.score is not None:
                    dconf.append(abs(sa.score - sb.score))
    if not ious:
        return f"no structure present in both; present/absent disagreements {flips}"
    return (
        f"mask IoU fp32 vs bf16: mean {np.mean(ious):.4f} (min {np.min(ious):.4f}) over {len(ious)} "
        f"masks; present/absent disagreements {flips}; |confidence difference| mean "
        f"{np.mean(dconf) if dconf else float('nan'):.4f} "
        f"(max {np.max(dconf) if dconf else float('nan'):.4f})"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(CONFIGS), default="tiny", help="config when no --checkpoint")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: random weights (seed 0)")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--targets", type=int, default=4)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--batch-size", type=int, default=None, help="default: the engine's (1 on the CPU)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    p.add_argument("--trace-rss", action="store_true")
    p.add_argument("--agreement", action="store_true")
    p.add_argument("--no-confidence", action="store_true", help="without the palindrome confidence")
    p.add_argument("--flops", action="store_true", help="count one target's operations per module")
    args = p.parse_args(argv)
    confidence = not args.no_confidence
    torch.set_num_threads(args.threads)

    ds = bdata.load_dataset(args.images, args.targets + 1, BENCH / "cache")
    config = None if args.checkpoint else CONFIGS[args.model]
    model = build_model(config, args.checkpoint, image_size=args.image_size, seed=0)
    model.precision = args.precision
    [template] = load_templates([spec_from_color_png(ds.template_image, ds.template_mask, ds.colors)],
                                args.image_size)
    memory = TemplateMemory(model, [template])
    warm, targets = ds.targets[:1], ds.targets[1:]
    print(
        f"{model.describe()}, {args.image_size} px, {model.resolved_precision}, K={len(ds.colors)}, "
        f"{len(targets)} targets ({ds.source}), batch {args.batch_size or 'default'}, "
        f"{args.threads} thread(s), palindrome confidence {'on' if confidence else 'off'}"
    )

    timer = ModuleTimer(model.sam)
    _run(model, memory, warm, args.batch_size, confidence=confidence)
    timer.reset()
    t0 = time.perf_counter()
    _run(model, memory, targets, args.batch_size, args.trace_rss, confidence=confidence)
    total = (time.perf_counter() - t0) / len(targets)
    print(f"total per target {total:.3f} s")
    inside = sum(timer.seconds[m] for m in MODULES)
    for name in (*MODULES, "memory_attention: attention modules"):
        print(f"  {name:38s} {timer.seconds[name] / len(targets):.3f} s   "
              f"calls per target {timer.calls[name] / len(targets):.1f}")
    print(f"  {'outside these modules':38s} {total - inside / len(targets):.3f} s")

    if args.flops:
        flops = flops_per_module(model, memory, targets[0], confidence)
        print(f"operations per target: {flops['total']:.1f} GFLOP")
        for name in MODULES:
            print(f"  {name:38s} {flops[name]:7.1f} GFLOP  {100 * flops[name] / flops['total']:5.1f}%")
        print(f"flops: encoder_share={flops['image_encoder'] / flops['total']:.2f} "
              f"(the most propagate_vs_encoder_limit can be at equal speed per operation)")

    if args.agreement:
        by_precision = {}
        for precision in ("fp32", "bf16"):
            model.precision = precision
            by_precision[precision] = _run(model, TemplateMemory(model, [template]), targets, args.batch_size,
                                           keep=True, confidence=confidence)
        print(agreement(by_precision["fp32"], by_precision["bf16"]))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
