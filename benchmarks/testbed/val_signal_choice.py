"""Which checkpoint would each validation signal keep? From ``val_signals.py``'s saved masks.

    python benchmarks/testbed/val_signal_choice.py DIR [DIR ...] [--json OUT]

Each DIR is a ``val_signals.py --out`` folder (one or more seeds): its ``val_signals.json``
(the checkpoint) and ``masks_seedN.npz`` (every validated checkpoint's masks, IoU against the
labels, SAM2's predicted IoU and stability, per target photo and structure). Nothing is
trained or predicted again, so new signals can be compared on the same runs in seconds.

Signals, each on the validation photos the trainer holds out (``val``) and on the whole pool
(``pool``), higher is better, step 0 (the untrained model) included and kept on a tie:

- ``score``: the mean one-pass review score (``engine.review_score.combine`` with the
  checkpoint's fit; a structure not found counts 0), the plain held-out review score;
- ``anchored``: ``engine.checkpoint_choice.anchored_review_score``, the same anchored to the
  untrained masks (s0 x overlap with the untrained mask + (1 - s0) x the mask's own score);
- ``anchored_most``: ``anchored``, a step kept only if it also improves most masks over the
  untrained model's (``engine.checkpoint_choice.mostly_better``): the trainer's choice since
  session 11;
- ``predicted_iou``: SAM2's IoU head alone; ``drift``: the mean overlap with the untrained
  masks (always keeps step 0: the "never train" reference).

For each seed and signal: the step it keeps, that step's all-structure mIoU minus the
untrained model's (its gain) and, with ``stop_after = 4`` (not the trainer's default, which is off), where the
run would have stopped. The last line:

    val_signal_choice: SIGNAL worse=W/N mean_gain=G ...   (on the val photos)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

SIGNALS = ("score", "anchored", "anchored_most", "predicted_iou", "drift")
VALIDATE_EVERY = 25


def one_pass_scores(d, fit: str) -> np.ndarray:
    from descriptron_sam2pal.engine.review_score import combine

    return np.array([combine({"stability": s, "predicted_iou": p}, fit) if present else 0.0
                     for s, p, present in zip(d["stability"], d["predicted_iou"], d["present"])])


def signal_rows(d, fit: str, photos: set[str] | None) -> dict[int, dict[str, float]]:
    """{step: {"miou": all-structure mIoU of every target, signal: value on ``photos``}}."""
    from descriptron_sam2pal.engine.checkpoint_choice import (HeldOutMasks, anchored_review_score,
                                                               mostly_better, packed_iou)

    keys = zip(d["step"], d["target"], d["structure"])
    index = {(int(s), str(t), str(n)): i for i, (s, t, n) in enumerate(keys)}
    score = one_pass_scores(d, fit)
    base = [k for k in index if k[0] == 0 and (photos is None or k[1] in photos)]
    i0 = np.array([index[k] for k in base])
    rows = {}
    for step in sorted({k[0] for k in index}):
        per: dict[str, list[float]] = {}
        for k, i in index.items():
            if k[0] == step and not np.isnan(d["iou"][i]):
                per.setdefault(k[2], []).append(float(d["iou"][i]))
        it = np.array([index[(step, k[1], k[2])] for k in base])
        untrained = HeldOutMasks(score[i0], d["mask"][i0])
        current = HeldOutMasks(score[it], d["mask"][it])
        rows[step] = {
            "miou": 100 * float(np.mean([np.mean(v) for v in per.values()])),
            "score": float(current.scores.mean()),
            "anchored": anchored_review_score(current, untrained),
            "anchored_most": anchored_review_score(current, untrained),
            "mostly_better": bool(step == 0 or mostly_better(current, untrained)),
            "predicted_iou": float(d["predicted_iou"][it].mean()),
            "drift": float(packed_iou(current.masks, untrained.masks).mean()),
        }
    return rows


def keeps(rows: dict[int, dict[str, float]], signal: str, stop_after: int = 0) -> tuple[int, int]:
    """(the step the trainer would keep, the step it would stop at) with ``signal``."""
    best, value = 0, rows[0][signal]
    for step in sorted(rows):
        if step and rows[step][signal] > value and (signal != "anchored_most" or rows[step]["mostly_better"]):
            best, value = step, rows[step][signal]
        if stop_after and step - best >= stop_after * VALIDATE_EVERY and step < max(rows):
            return best, step
    return best, max(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--json", type=Path, default=None, help="write every seed's rows and choices here")
    args = p.parse_args(argv)
    from descriptron_sam2pal.engine.review_score import fit_for
    from descriptron_sam2pal.model.checkpoints import file_sha256

    report, gains = [], {(where, s): [] for where in ("val", "pool") for s in SIGNALS}
    for folder in args.dirs:
        checkpoint = json.loads((folder / "val_signals.json").read_text())["args"]["checkpoint"]
        fit = fit_for(file_sha256(checkpoint))
        for npz in sorted(folder.glob("masks_seed*.npz")):
            d = np.load(npz)
            seed = int(npz.stem.removeprefix("masks_seed"))
            for where, photos in (("val", set(d["val"].tolist())), ("pool", None)):
                rows = signal_rows(d, fit, photos)
                trail = " ".join(f"{s}:{r['miou']:.1f}" for s, r in rows.items())
                print(f"{Path(checkpoint).name} seed {seed} {where:4s} mIoU by step {trail}")
                entry = {"checkpoint": Path(checkpoint).name, "seed": seed, "photos": where, "rows": rows,
                         "keeps": {}}
                for s in SIGNALS:
                    kept, stop = keeps(rows, s, stop_after=4)
                    gain = rows[kept]["miou"] - rows[0]["miou"]
                    gains[(where, s)].append(gain)
                    entry["keeps"][s] = {"step": kept, "gain": gain, "stops_at": stop}
                    print(f"    {s:<14} keeps step {kept:3d} ({gain:+5.1f}), stops at {stop:3d}   "
                          + " ".join(f"{r[s]:.3f}" for r in rows.values()))
                report.append(entry)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print("val_signal_choice: " + "  ".join(
        f"{s} worse={sum(g < 0 for g in gains[('val', s)])}/{len(gains[('val', s)])} "
        f"mean_gain={np.mean(gains[('val', s)]):+.2f}" for s in SIGNALS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
