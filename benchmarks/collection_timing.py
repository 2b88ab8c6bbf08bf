"""What the review score's collection step costs at the end of a run (engine.collection_score).

    python benchmarks/collection_timing.py [--photo 3000x4000] [--masks 1000,5000,20000]

Prints the time to letterbox one full-resolution mask into its 64 x 64 thumbnail (done for
each present structure as results stream by) and the time of the consensus of one
structure over N masks (done once per structure when the run ends). Random masks: the cost
depends on their number, not their shapes. State the CPU with the figures.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from descriptron_sam2pal.engine.collection_score import consensus, mask_thumbnail


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photo", default="3000x4000", help="HxW of the photo a mask is on")
    p.add_argument("--masks", default="1000,5000,20000", help="masks of one structure in a run")
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.photo.lower().split("x"))
    mask = np.zeros((h, w), bool)
    mask[h // 3: 2 * h // 3, w // 3: 2 * w // 3] = True
    mask_thumbnail(mask)
    t0 = time.perf_counter()
    for _ in range(20):
        mask_thumbnail(mask)
    print(f"{platform.processor() or platform.machine()}: thumbnail of a {h}x{w} mask "
          f"{(time.perf_counter() - t0) / 20 * 1e3:.2f} ms")
    rng = np.random.default_rng(0)
    for n in [int(v) for v in args.masks.split(",") if v.strip()]:
        thumbs = [np.packbits(rng.random(64 * 64) < 0.2) for _ in range(n)]
        t0 = time.perf_counter()
        consensus(thumbs)
        print(f"consensus of one structure over {n} masks: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
