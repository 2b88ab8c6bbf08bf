"""Which signal finds the bad masks within a structure? (issue 13, the review score)

    python benchmarks/review_signals.py [--checkpoint PT] [--seeds 3] [--fit] [--out DIR]

For each seed a template is drawn (as ``quality.py`` draws it for K = 1) and every
structure is propagated to the targets with the engine (``propagate.predict_prepared``,
which computes the review signals of ``engine.review_score``), plus a few signals that
cost more (agreement with the prediction on the horizontally flipped target). Each mask
gets its IoU against the ground truth on the model's grid.

Two image sets: ``fit`` (template and targets among the 200 pretraining-split photos of
``benchmarks/testbed/split.json``) and ``eval`` (among the 72 evaluation photos, as
``quality.py``). ``--fit`` fits a logistic combination of the signals on the fit set only
("good" = IoU at or above the structure's median in that run) and prints the coefficients
to paste into ``engine/review_score.py``; both sets are then scored:

- within-structure AUROC of each signal (and of the combinations) for "IoU below the
  structure's median" and for "IoU < 0.5" (mean over seed x structure, higher = better;
  a structure predicted absent has IoU 0 and every signal 0);
- the share of IoU < 0.5 masks found in the first 20% of the review order (all
  structures of a run sorted by the signal, lowest first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402
from descriptron_sam2pal.engine.collection_score import THUMBNAIL, consensus  # noqa: E402

EXTRA = ("flip_iou",)
GRID = THUMBNAIL  # masks are kept at GRID x GRID (letterboxed frame) for the collection signals


def mask_shape(logits: np.ndarray, valid: np.ndarray) -> dict:
    """Cheap per-mask descriptors from the logits alone (no extra model pass)."""
    import cv2

    pred = (logits > 0) & valid
    hi2, lo2 = (logits > 2) & valid, (logits > -2) & valid
    inside = logits[pred]
    n, lab, stats, _ = cv2.connectedComponentsWithStats(pred.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA] if n > 1 else np.zeros(0)
    small = cv2.resize(pred.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA) >= 0.5
    ys, xs = np.nonzero(pred)
    return {"stability2": float(hi2.sum() / lo2.sum()) if lo2.any() else 0.0,
            "inside_logit": float(np.clip(inside, -10, 10).mean()) if inside.size else 0.0,
            "components": int(len(areas)),
            "largest_share": float(areas.max() / areas.sum()) if len(areas) else 0.0,
            "log_area": float(np.log(pred.sum() / max(1, valid.sum()) + 1e-4)),
            "cy": float(ys.mean() / pred.shape[0]) if len(ys) else 0.5,
            "cx": float(xs.mean() / pred.shape[1]) if len(xs) else 0.5,
            "mask64": np.packbits(small.ravel()).tobytes().hex()}


def add_collection_signals(rows: list[dict]) -> None:
    """Signals against the rest of the run's masks of the same structure (what a review of a
    collection has: every target's prediction). Only the other targets' *predictions* are
    used, never a ground truth."""
    keys = {(r["seed"], r["structure"]) for r in rows}
    for key in keys:
        idx = [i for i, r in enumerate(rows) if (r["seed"], r["structure"]) == key and "mask64" in r]
        if len(idx) < 3:
            continue
        packed = [np.frombuffer(bytes.fromhex(rows[i]["mask64"]), np.uint8) for i in idx]
        m = np.stack([np.unpackbits(p)[: GRID * GRID] for p in packed]).astype(np.float32)
        inter = m @ m.T
        area = m.sum(1)
        union = area[:, None] + area[None] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        np.fill_diagonal(iou, np.nan)
        agreement = consensus(packed)  # the product's signal (engine.collection_score)
        la = np.array([rows[i]["log_area"] for i in idx])
        med, mad = np.median(la), np.median(np.abs(la - np.median(la))) + 1e-3
        cy = np.array([rows[i]["cy"] for i in idx])
        cx = np.array([rows[i]["cx"] for i in idx])
        cd = np.hypot(cy - np.median(cy), cx - np.median(cx))
        total = m.sum(0)
        for j, i in enumerate(idx):
            mean_other = (total - m[j]) / (len(idx) - 1)
            soft = np.minimum(m[j], mean_other).sum() / max(np.maximum(m[j], mean_other).sum(), 1e-6)
            rows[i]["consensus_iou"] = float(agreement[j])
            rows[i]["consensus_median_iou"] = float(np.nanmedian(iou[j]))
            rows[i]["consensus_soft"] = float(soft)
            rows[i]["area_typical"] = float(-abs(la[j] - med) / mad)
            rows[i]["centre_typical"] = float(-cd[j])


def auroc(bad: np.ndarray, score: np.ndarray) -> float | None:
    """P(a random bad mask scores lower than a random good one); ties count half."""
    bad = bad.astype(bool)
    if bad.all() or not bad.any():
        return None
    s_bad, s_good = score[bad], score[~bad]
    less = (s_bad[:, None] < s_good[None]).mean()
    ties = (s_bad[:, None] == s_good[None]).mean()
    return float(less + 0.5 * ties)


def collect(args, pairs, colors, seed: int, max_targets: int) -> list[dict]:
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, predict_prepared
    from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png
    from descriptron_sam2pal.imaging.io import load_image
    from descriptron_sam2pal.imaging.mask_png import masks_from_color_png
    from descriptron_sam2pal.model.build import build_model

    rng = random.Random(1000 * seed + 1)
    complete = [p for p in pairs if all(m.any() for m in masks_from_color_png(p[1], colors).values())]
    tpair = complete[sorted(rng.sample(range(len(complete)), 1))[0]]
    targets = [p for p in pairs if p[0] != tpair[0]]
    if max_targets and len(targets) > max_targets:
        targets = sorted(rng.sample(targets, max_targets))
    model = build_model(checkpoint=args.checkpoint, device="cpu")
    size = model.image_size
    [template] = load_templates(
        [spec_from_color_png(tpair[0], tpair[1], colors, image_id=tpair[0].stem)], size
    )
    memory = TemplateMemory(model, [template])
    encoder = FeatureEncoder(model)
    rows = []
    for img_path, mask_path in targets:
        image = load_image(img_path)
        prep = prepare_image(image, size, source=str(img_path))
        flip = prepare_image(np.ascontiguousarray(image[:, ::-1]), size)
        raw, raw_f = predict_prepared(memory, [prep, flip], encoder.encode([prep, flip], cache=False))
        truth = masks_from_color_png(mask_path, colors)
        lb, lbf = prep.letterbox, flip.letterbox
        valid = prep.valid_mask()
        for name in memory.structures:
            r = raw[name]
            gt = lb.apply_mask(truth[name]) >= 0.5
            pred = (r.logits > 0) & valid if r.visible else np.zeros_like(valid)
            union = (pred | gt).sum()
            iou = float((pred & gt).sum() / union) if union else 1.0
            if not gt.any():
                continue  # structure not on this target: nothing to rank
            rf = raw_f[name]
            if rf.visible:
                back = lbf.unapply(rf.logits)[:, ::-1]
                pf = (lb.apply_mask(np.ascontiguousarray(back) > 0) >= 0.5) & valid
                u = (pf | pred).sum()
                flip_iou = float((pf & pred).sum() / u) if u else 0.0
            else:
                flip_iou = 0.0
            sig = dict(r.signals) if r.visible else {}
            shape = mask_shape(r.logits, valid) if r.visible else {}
            rows.append({"seed": seed, "target": img_path.name, "structure": name, "iou": iou,
                         "present": bool(r.visible), "flip_iou": flip_iou,
                         **{k: (v if v is not None else 0.0) for k, v in sig.items()}, **shape})
    return rows


SIGNALS = ("palindrome", "palindrome_soft", "predicted_iou", "object_score", "stability",
           "neg_abs_log_area_ratio", "flip_iou", "stability2", "inside_logit", "largest_share",
           "neg_components", "consensus_iou", "consensus_median_iou", "consensus_soft", "area_typical",
           "centre_typical")


def matrix(rows, names) -> np.ndarray:
    cols = []
    for n in names:
        if n == "neg_abs_log_area_ratio":
            cols.append([-r.get("abs_log_area_ratio", 0.0) if r["present"] else -10.0 for r in rows])
        elif n == "neg_components":
            cols.append([-r.get("components", 0) if r["present"] else -50.0 for r in rows])
        elif n in ("area_typical", "centre_typical"):
            cols.append([r.get(n, 0.0) if r["present"] else -10.0 for r in rows])
        else:
            cols.append([r.get(n, 0.0) if r["present"] else 0.0 for r in rows])
    return np.array(cols, float).T


def good_labels(rows) -> np.ndarray:
    """1 = IoU at or above its structure's median in its run."""
    y = np.zeros(len(rows))
    for key in {(r["seed"], r["structure"]) for r in rows}:
        idx = [i for i, r in enumerate(rows) if (r["seed"], r["structure"]) == key]
        med = np.median([rows[i]["iou"] for i in idx])
        for i in idx:
            y[i] = rows[i]["iou"] >= med
    return y


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """IRLS logistic regression with a small ridge; returns [bias, w...] on raw inputs."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        g = xb.T @ (p - y) + l2 * np.r_[0, w[1:]]
        h = (xb * (p * (1 - p))[:, None]).T @ xb + l2 * np.diag(np.r_[0, np.ones(len(w) - 1)])
        w -= np.linalg.solve(h, g)
    return w


def report(rows, scores: dict[str, np.ndarray]) -> dict[str, dict]:
    out = {}
    keys = sorted({(r["seed"], r["structure"]) for r in rows})
    for name, s in scores.items():
        med_auc, low_auc, found = [], [], []
        for key in keys:
            idx = np.array([i for i, r in enumerate(rows) if (r["seed"], r["structure"]) == key])
            iou = np.array([rows[i]["iou"] for i in idx])
            a = auroc(iou < np.median(iou), s[idx])
            b = auroc(iou < 0.5, s[idx])
            if a is not None:
                med_auc.append(a)
            if b is not None:
                low_auc.append(b)
        for seed in sorted({r["seed"] for r in rows}):
            idx = np.array([i for i, r in enumerate(rows) if r["seed"] == seed])
            iou = np.array([rows[i]["iou"] for i in idx])
            order = idx[np.argsort(s[idx], kind="stable")]
            first = set(order[: int(round(0.2 * len(order)))].tolist())
            bad = [i for i in idx if rows[i]["iou"] < 0.5]
            if bad:
                found.append(sum(i in first for i in bad) / len(bad))
        out[name] = {
            "auroc_median": float(np.mean(med_auc)),
            "auroc_iou50": float(np.mean(low_auc)) if low_auc else None,
            "found_in_first_20pct": float(np.mean(found)) if found else None,
        }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--images", type=Path, default=REPO.parent / "shared" / "data" / "beetleflow-5class-train" / "images"
    )
    p.add_argument(
        "--masks", type=Path, default=REPO.parent / "shared" / "data" / "beetleflow-5class-train" / "masks"
    )
    p.add_argument("--colors", default=quality.BEETLE_COLORS)
    p.add_argument("--checkpoint", type=quality.checkpoint_path, default=quality.PACKAGED,
                   help=quality.CHECKPOINT_HELP)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--fit-targets", type=int, default=70, help="targets per seed in the fit set")
    p.add_argument("--fit", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "review")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from descriptron_sam2pal.imaging.mask_png import parse_colors

    colors = parse_colors(args.colors)
    split = json.loads((REPO / "benchmarks" / "testbed" / "split.json").read_text())
    pairs = quality.pair_images(args.images, args.masks)
    sets = {"fit": [q for q in pairs if q[0].name in set(split["pretrain"])],
            "eval": [q for q in pairs if q[0].name in set(split["eval"])]}
    args.out.mkdir(parents=True, exist_ok=True)
    data = {}
    for which, subset in sets.items():
        digest = hashlib.sha256(args.checkpoint.read_bytes()).hexdigest()[:8]
        cache = args.out / f"{which}_{args.checkpoint.stem}_{digest}.json"
        if cache.exists():
            data[which] = json.loads(cache.read_text())
            continue
        rows = []
        for seed in range(args.seeds):
            rows += collect(args, subset, colors, seed, args.fit_targets if which == "fit" else 0)
            print(f"{which} seed {seed}: {len(rows)} masks", flush=True)
        cache.write_text(json.dumps(rows))
        data[which] = rows
    for rows in data.values():
        add_collection_signals(rows)
    combos = {"pal+piou": ["palindrome", "predicted_iou"],
              "no_backward": ["predicted_iou", "object_score", "stability", "neg_abs_log_area_ratio"],
              "all_engine": ["palindrome", "palindrome_soft", "predicted_iou", "object_score", "stability",
                             "neg_abs_log_area_ratio"],
              "all+flip": list(SIGNALS)}
    combos.update(
        {
            "stability+piou": ["stability", "predicted_iou"],
            "stability+flip": ["stability", "flip_iou"],
            "stability+piou+consensus": ["stability", "predicted_iou", "consensus_iou"],
            "stability+piou+collection": [
                "stability",
                "predicted_iou",
                "consensus_iou",
                "consensus_soft",
                "area_typical",
                "centre_typical",
            ],
            "one_pass": [
                "stability",
                "stability2",
                "predicted_iou",
                "inside_logit",
                "largest_share",
                "neg_components",
            ],
            "one_pass+collection": [
                "stability",
                "stability2",
                "predicted_iou",
                "inside_logit",
                "largest_share",
                "neg_components",
                "consensus_iou",
                "consensus_soft",
                "area_typical",
                "centre_typical",
            ],
        }
    )
    fits = {}
    xf = data["fit"]
    yf = good_labels(xf)
    iou_f = np.array([r["iou"] for r in xf])
    for cname, feats in combos.items():
        # (1) logistic for "at or above the structure's median" on features centred within each
        # (seed, structure): only the within-structure direction is learnt, no structure offsets.
        x = matrix(xf, feats)
        xc = x.copy()
        for key in {(r["seed"], r["structure"]) for r in xf}:
            idx = [i for i, r in enumerate(xf) if (r["seed"], r["structure"]) == key]
            xc[idx] -= x[idx].mean(0)
        sd = xc.std(0) + 1e-9
        w = fit_logistic(xc / sd, yf)[1:] / sd
        fits[cname + " (logistic, within)"] = {
            "features": feats,
            "bias": 0.0,
            "weights": dict(zip(feats, w.tolist())),
        }
        # (2) least-squares estimate of the IoU itself (also ranks across structures): the engine's form
        beta = np.linalg.lstsq(np.hstack([np.ones((len(x), 1)), x]), iou_f, rcond=None)[0]
        fits[cname + " (IoU regression)"] = {"features": feats, "bias": float(beta[0]),
                                             "weights": dict(zip(feats, beta[1:].tolist()))}
    result = {}
    for which, rows in data.items():
        scores = {n: matrix(rows, [n])[:, 0] for n in SIGNALS}
        for cname, f in fits.items():
            scores[cname] = f["bias"] + matrix(rows, f["features"]) @ np.array(list(f["weights"].values()))
        result[which] = report(rows, scores)
        print(f"\n{which} set ({len(rows)} masks, mean IoU {100 * np.mean([r['iou'] for r in rows]):.1f}):"
              f" within-structure AUROC (below median | IoU < 0.5), share of IoU<0.5 in the first 20%")
        for n, v in result[which].items():
            iou50, first = v["auroc_iou50"], v["found_in_first_20pct"]
            print(
                f"  {n:<24} {v['auroc_median']:.3f} | {iou50 if iou50 is None else round(iou50, 3)}"
                f" | {first if first is None else round(first, 3)}"
            )
    print("\nfits (raw inputs; abs_log_area_ratio enters with the sign of neg_abs_log_area_ratio flipped):")
    print(json.dumps(fits, indent=1))
    (args.out / f"review_{args.checkpoint.stem}.json").write_text(
        json.dumps({"fits": fits, "result": result}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
