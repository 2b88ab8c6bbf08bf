"""Scale run of ``propagate_run`` on a Ray cluster (``PropagateRequest.cluster``): N targets on a
local Ray cluster of 1 and of 2 single-core workers, against the single-process run
(benchmarks/README.md, "Scale").

    nice .venv/bin/python benchmarks/ray_scale.py                    # N = 200, 256 px, tiny
    nice .venv/bin/python benchmarks/ray_scale.py --n 20 --image-size 128 --model test   # quick check

Every configuration runs in a fresh subprocess (so each peak RSS is its own): ``local``
(one process, 1 torch thread), ``ray W`` (``ray.init(num_cpus=W)``, W workers of one core
each). Each prints one JSON line: wall time of the propagation (model build and cluster
start included: what a user waits for), images/s, peak RSS of the driver and of each worker
(``ru_maxrss``), and the SHA-256 of the predictions file (the same for every configuration:
the cluster writes what one process writes). ``--memory-n`` adds a Ray run at a smaller N
to show that the peaks do not grow with N. Writes ``results-ray.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def one(args) -> dict:
    """One configuration, in this process."""
    import torch

    from data import load_dataset
    from descriptron_sam2pal.jobs.cluster import ClusterSettings, peak_rss_bytes
    from descriptron_sam2pal.jobs.models import ModelRequest
    from descriptron_sam2pal.jobs.propagation import PropagateRequest, propagate_run
    from descriptron_sam2pal.jobs.templates import spec_from_color_png

    torch.set_num_threads(1)
    ds = load_dataset(Path(args.images), args.n, Path(args.out) / "cache")
    spec = spec_from_color_png(ds.template_image, ds.template_mask, ds.colors)
    out = Path(args.out) / f"{args.config}-{args.n}" / "pred.json"
    request = PropagateRequest(
        ModelRequest(choice=args.checkpoint, device=args.device, image_size=args.image_size),
        [spec],
        ds.targets[: args.n],
        out=out,
        batch_size=args.batch_size,
    )
    if args.config != "local":
        import ray

        workers = int(args.config.split("-")[1])
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        request.cluster = ClusterSettings(workers=workers, measure_memory=True)
    marks: list[tuple[float, int]] = []  # (time, targets done) at each progress report
    import resource

    def cpu_s() -> float:
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime

    cpu0 = cpu_s()
    t0 = time.perf_counter()
    outcome = propagate_run(request, progress=lambda p: marks.append((time.perf_counter(), p.done)))
    wall = time.perf_counter() - t0
    stats = outcome.cluster_stats
    driver_cpu = cpu_s() - cpu0  # local: all the work; ray: the driver's share (receive, order, write)
    (t1, d1), (t2, d2) = marks[0], marks[-1]  # from the first result on: no start-up
    steady = (d2 - d1) / (t2 - t1) if t2 > t1 else float("nan")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    return {
        "config": args.config,
        "n": args.n,
        "wall_s": round(wall, 2),
        "images_per_s": round(args.n / wall, 3),
        "steady_images_per_s": round(steady, 3),
        "startup_s": round(t1 - t0, 1),
        "driver_cpu_ms_per_image": round(1000 * driver_cpu / args.n, 1),
        "failed": len(outcome.failed),
        "driver_peak_mb": round(peak_rss_bytes() / 2**20),
        "worker_peak_mb": [round(b / 2**20) for b in stats.get("worker_peak_rss", [])],
        "predictions_sha256": digest,
    }


def driver_cost(args) -> dict:
    """The driver's own work per result, without Ray: results of ``args.n`` targets (segmented
    here first) go through what the driver does with each (JSON as it arrives, back to a
    TargetResult, the predictions builder, a journal line with fsync)."""
    import tempfile

    import torch

    from data import load_dataset
    from descriptron_sam2pal.engine.predictions import PredictionsBuilder
    from descriptron_sam2pal.engine.results import ResultJournal, TargetResult
    from descriptron_sam2pal.jobs.models import ModelRequest
    from descriptron_sam2pal.jobs.propagation import PropagateRequest, propagate_run
    from descriptron_sam2pal.jobs.templates import spec_from_color_png

    torch.set_num_threads(1)
    ds = load_dataset(Path(args.images), args.n, Path(args.out) / "cache")
    spec = spec_from_color_png(ds.template_image, ds.template_mask, ds.colors)
    request = PropagateRequest(ModelRequest(choice=args.checkpoint, device="cpu", image_size=args.image_size),
                               [spec], ds.targets[:args.n], batch_size=1)
    results = propagate_run(request, keep_results=True).results
    wire = [r.to_json() for r in results]
    pixels = sum(r.height * r.width for r in results) / len(results)
    with tempfile.TemporaryDirectory() as tmp:
        builder = PredictionsBuilder(spool_dir=tmp)
        journal = ResultJournal(Path(tmp) / "j.jsonl")
        t0 = time.perf_counter()
        for i, j in enumerate(wire):
            r = TargetResult.from_json(j)
            builder.add(r)
            journal.append("run", [(str(i), r)])
        per = (time.perf_counter() - t0) / len(wire)
        builder.close()
    return {"n": len(wire), "mean_megapixels": round(pixels / 1e6, 2), "structures": len(ds.colors),
            "driver_ms_per_result": round(1000 * per, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--memory-n", type=int, default=50, help="also run 2 workers at this N (0: no)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--model", choices=["tiny", "test"], default="tiny")
    p.add_argument("--images", default=str(HERE.parent.parent / "shared" / "data" / "beetleflow-5class-train"
                                           / "images"))
    p.add_argument("--out", default=str(HERE / "out" / time.strftime("ray-%Y%m%d-%H%M%S")))
    p.add_argument("--configs", default="local,ray-1,ray-2")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: on a GPU node, one worker per GPU")
    p.add_argument(
        "--batch-size", type=int, default=None, help="default: the engine's (1 on a CPU, 4 on a GPU)"
    )
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    p.add_argument("--driver-cost", action="store_true",
                   help="only measure the driver's own work per result (no Ray), on --n targets")
    args = p.parse_args()
    if args.driver_cost:
        if not args.checkpoint:
            args.checkpoint = str(HERE / "cache" / "tiny_random_seed0.pt")
        print(json.dumps(driver_cost(args)))
        return 0
    if args.config:
        print(json.dumps(one(args)))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model == "tiny":
        checkpoint = HERE / "cache" / "tiny_random_seed0.pt"
        if not checkpoint.exists():
            subprocess.run([sys.executable, str(HERE / "make_checkpoint.py"), "--config", TINY_CONFIG,
                            "--out", str(checkpoint)], check=True)
    else:
        checkpoint = out / "mini.pt"
        subprocess.run([sys.executable, "-c", "import torch; from descriptron_sam2pal.model.build import "
                        "MINI_CONFIG, build_model; torch.save({'model': build_model(MINI_CONFIG, seed=0)"
                        f".sam.state_dict()}}, {str(checkpoint)!r})"], check=True)
    runs = [(c, args.n) for c in args.configs.split(",")]
    if args.memory_n:
        runs.append(("ray-2", args.memory_n))
    rows = []
    load = os.getloadavg()
    for config, n in runs:
        cmd = (
            [
                sys.executable,
                __file__,
                "--config",
                config,
                "--n",
                str(n),
                "--image-size",
                str(args.image_size),
                "--device",
                args.device,
            ]
            + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
            + ["--images", args.images, "--out", str(out), "--checkpoint", str(checkpoint)]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    load = f"{load[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    lines = [
        f"# Ray scale run ({time.strftime('%d %b %Y %H:%M UTC', time.gmtime())})",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), load average {load}; "
        f"SAM2 {args.model} (random weights) at {args.image_size} px, batch 1, confidence on, precision auto",
        "",
        "| run | N | wall (s) | images/s (wall) | images/s after the first result "
        "| until the first result (s) | driver CPU per image | driver peak RSS | worker peak RSS "
        "| predictions (SHA-256) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        workers = ", ".join(f"{m} MB" for m in r["worker_peak_mb"]) or "(in the driver)"
        lines.append(
            f"| {r['config']} | {r['n']} | {r['wall_s']} | {r['images_per_s']} | "
            f"{r['steady_images_per_s']} | {r['startup_s']} | {r.get('driver_cpu_ms_per_image', '')} ms "
            f"| {r['driver_peak_mb']} MB "
            f"| {workers} | `{r['predictions_sha256']}` |"
        )
    (out / "results-ray.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'results-ray.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
