"""Where do the predicted structures go? Runs ``benchmarks/quality.py`` (same arguments) and
prints, per method and seed, for each predicted structure A: the fraction of A's predicted
pixels lying on each true structure (or on background), and A's predicted / true area.

    python benchmarks/testbed/confusion.py --images ... --masks ... --quick --methods zero_shot,pal

A structure that swallows its neighbour (e.g. the pronotum prediction covering the head) shows
as a large off-diagonal fraction; one that shrinks or grows as an area ratio far from 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import quality

_score = quality.score


def score(results, truth, colors, structures=None):
    from descriptron_sam2pal.engine.evaluate import images_from_results
    from descriptron_sam2pal.imaging.masks import resize_mask

    preds = images_from_results(results)
    names = list(colors)
    frac = {a: {b: [] for b in names + ["background"]} for a in names}
    area = {a: [] for a in names}
    for key, gt in truth.items():
        pr = preds.get(key)
        if pr is None:
            continue
        for a in names:
            m = pr.masks.get(a)
            t = gt.masks.get(a)
            if m is None or t is None or not t.any():
                continue
            m = resize_mask(m, gt.height, gt.width)
            n = max(1, int(m.sum()))
            union = np.zeros_like(m)
            for b in names:
                tb = gt.masks.get(b)
                if tb is None:
                    continue
                frac[a][b].append(float((m & tb).sum()) / n)
                union |= tb
            frac[a]["background"].append(float((m & ~union).sum()) / n)
            area[a].append(float(m.sum()) / max(1, int(t.sum())))
    print("    predicted -> on truth of: " + " ".join(f"{b[:6]:>7}" for b in names + ["background"])
          + "   area pred/true")
    for a in names:
        print(f"    {a:<24}" + " ".join(f"{100 * np.mean(frac[a][b]) if frac[a][b] else float('nan'):7.1f}"
                                     for b in names + ["background"])
              + f"   {np.median(area[a]) if area[a] else float('nan'):.2f}", flush=True)
    return _score(results, truth, colors, structures)


quality.score = score

if __name__ == "__main__":
    raise SystemExit(quality.main())
