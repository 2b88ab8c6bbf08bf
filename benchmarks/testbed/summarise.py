"""Summarise quality.json files (benchmarks/quality.py --out DIR) as the tables in README.md.

    python benchmarks/testbed/summarise.py benchmarks/out/q_k1 benchmarks/out/q_k5 ...
"""

import json
import sys
from pathlib import Path

import numpy as np


def main(folders):
    for folder in folders:
        data = json.loads((Path(folder) / "quality.json").read_text())
        args, novel, runs = data["args"], data["novel"], data["runs"]
        print(f"\n{folder}: steps {args.get('steps')}, lr {args.get('lr')}, loss '{args.get('loss')}', "
              f"full {args.get('full')}, quick {args.get('quick')}, max_targets {args.get('max_targets')}")
        for k in sorted({r["k"] for r in runs}):
            rows = [r for r in runs if r["k"] == k]
            for method in ("zero_shot", "pal", "supervised"):
                if method not in rows[0]:
                    continue
                seen = [r[method]["seen_miou"] for r in rows]
                nov = [r[method]["novel_iou"] or 0.0 for r in rows]
                per = {n: np.mean([r[method]["structures"][n] or 0.0 for r in rows])
                       for n in rows[0][method]["structures"]}
                print(f"| {k} | {method} | {np.mean(seen):.1f} ({', '.join(f'{v:.1f}' for v in seen)}) "
                      f"| {np.mean(nov):.1f} ({', '.join(f'{v:.1f}' for v in nov)}) | "
                      + " / ".join(f"{v:.1f}" for n, v in per.items() if n != novel) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
