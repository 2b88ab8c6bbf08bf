#!/usr/bin/env python3
"""Time to result: the whole job a user runs, ours and the reference SAM2-PAL side by side.

    python benchmarks/time_to_result.py [--quick] [--model tiny|test] [--image-size PX] [--n N]
                                        [--steps S] [--threads T] [--no-reference] [--out DIR]

The job: one template with its five outlined structures (the first BeetleFlow photo
whose mask has all five, as benchmarks/run.py picks it) and N unlabeled specimens (the
next photos in name order, linked, never copied); train on them with the settings a
user gets by default, then segment all N with the trained model. Both sides use the
same photos, the same SAM2 checkpoint (benchmarks/make_checkpoint.py's random weights)
and the same model input size, one run each, in fresh subprocesses timed by the wall
clock, peak memory from the kernel (``wait4`` ``ru_maxrss``):

- ours, as the Train dialog runs it with its default preset ("Balanced": the steps, and
  the CPU or GPU image size, of ``gui.train_dialog.PRESETS``; LoRA rank, seed,
  pseudo-labels, precision and device left at their defaults, which are the GUI's):
  ``sam2pal train`` and then ``sam2pal propagate --adapter RUN`` of all N specimens
  (the dialog's "Segment specimens": batch size, confidence (off) and orientation
  search at their defaults);
- the reference (``descriptron-vision==2.8.2``'s ``sam2_pal_batch_v21.py``, fetched and
  run unchanged through benchmarks/reference_runner.py exactly as run.py does):
  ``--pal_finetuning --use_lora`` with its own default ``--num_epochs`` and
  ``--max_images_per_epoch`` (read from its argparse), then the propagation of all N
  specimens that it always runs after training, in the same process.

The last line printed is
``time_to_result: ours_s=A reference_s=B ratio=C ours_peak_gb=D reference_peak_gb=E estimate_ratio=F``
(ratio = reference / ours; estimate_ratio = the GUI's estimate for the same job / ours measured).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import data as bdata  # noqa: E402
import run as bench  # noqa: E402

QUICK = {"image_size": 128, "n": 4, "steps": 6}  # --quick: a few minutes on 2 cores
FULL_N = 100
GIB = 1024.0  # ru_maxrss MB (KiB / 1024) -> GB (GiB)


# --------------------------------------------------------------------------- the defaults
def default_job(gpu: bool) -> tuple[str, int, int]:
    """(preset name, steps, image size) of the Train dialog's default preset on this device."""
    from descriptron_sam2pal.gui.train_dialog import DEFAULT_PRESET, PRESETS

    preset = next(p for p in PRESETS if p.name == DEFAULT_PRESET)
    return preset.name, preset.steps, preset.gpu_size if gpu else preset.cpu_size


def gui_estimate(
    steps: int,
    image_size: int,
    gpu: bool,
    model_size: str,
    n_specimens: int,
    structures: int,
    threads: int | None = None,
    pseudo_labels: bool = True,
) -> tuple[float, str]:
    """The GUI's time estimate for the job (seconds, and what it covers): training with its
    remakes and validations, then segmenting every specimen as the dialog does (no
    confidence), from ``descriptron_sam2pal.jobs.estimate``, the one call of it here. Its
    machine probe runs at the job's thread count (``--threads``), as the job does; bf16 where
    ours resolves ``--precision auto`` to bf16."""
    import torch

    from descriptron_sam2pal.jobs.estimate import segmenting_seconds, training_seconds
    from descriptron_sam2pal.model.device import resolve_precision

    if threads:
        torch.set_num_threads(threads)
    bf16 = resolve_precision("cuda" if gpu else "cpu", "auto") == "bf16"
    train = training_seconds(
        steps,
        image_size,
        gpu,
        model_size,
        structures=structures,
        unlabeled=n_specimens,
        pseudo=pseudo_labels,
        bf16=bf16,
    )
    segment = segmenting_seconds(n_specimens, image_size, gpu, model_size, structures=structures, bf16=bf16)
    return train + segment, (
        f"jobs.estimate: training {train:.1f}s (steps, pseudo-label remakes, validations, "
        f"encoder passes) + segmenting {segment:.1f}s; {'bf16' if bf16 else 'fp32'}, "
        f"{torch.get_num_threads()} thread(s)"
    )


def reference_defaults(script: Path) -> dict[str, int]:
    """``--num_epochs`` and ``--max_images_per_epoch`` as the reference's argparse defines them."""
    text = script.read_text(errors="replace")
    out = {}
    for flag in ("num_epochs", "max_images_per_epoch"):
        m = re.search(r"add_argument\(\s*['\"]--" + flag + r"['\"][^)]*?default\s*=\s*(\d+)", text, re.S)
        if not m:
            raise SystemExit(f"could not read the default of --{flag} from {script}")
        out[flag] = int(m.group(1))
    return out


# --------------------------------------------------------------------------- settings
@dataclass
class Settings:
    quick: bool
    model: str
    image_size: int
    n: int
    steps: int
    default_steps: int
    preset: str
    gpu: bool
    device: str  # the reference's --device (ours keeps the GUI's "auto")
    images: Path
    out: Path
    timeout: int
    threads: int | None = None
    reference: bool = True
    reference_epochs: int | None = None  # None: the reference's own default
    reference_confidence: bool = False  # add --cycle_consistency (its score; off by default)
    deviations: list[str] = field(default_factory=list)

    @property
    def config(self) -> str:
        return bench.MODELS[self.model]

    @property
    def model_size(self) -> str:
        return "mini" if self.model == "test" else "tiny"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['image_size']} px, N = {QUICK['n']}, {QUICK['steps']} training steps: "
        "a check that it works, a few minutes on 2 cores",
    )
    p.add_argument(
        "--model",
        choices=sorted(bench.MODELS),
        default="tiny",
        help="SAM2.1 hiera-tiny (default) or our 2.2M-parameter test architecture",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size (default: the preset's for this device, 512 on a CPU)",
    )
    p.add_argument("--n", type=int, default=None, help=f"unlabeled specimens (default {FULL_N})")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="our training steps instead of the preset's; the reference's epochs are scaled "
        "by the same fraction of its default",
    )
    p.add_argument(
        "--reference-epochs",
        type=int,
        default=None,
        help="the reference's --num_epochs (default: its own, or scaled with --steps)",
    )
    p.add_argument(
        "--reference-confidence",
        action="store_true",
        help="the reference with --cycle_consistency, its palindrome score (off by default there, "
        "as our --confidence is here)",
    )
    p.add_argument("--threads", type=int, default=None, help="OMP/MKL threads for every subprocess")
    p.add_argument("--no-reference", action="store_true", help="ours only")
    p.add_argument("--images", type=Path, default=bench.DEFAULT_IMAGES, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=int, default=None, help="seconds per subprocess")
    p.add_argument("--out", type=Path, default=None, help="result folder (default benchmarks/out/<time>/)")
    return p


def parse_args(argv=None, gpu: bool | None = None) -> Settings:
    p = build_parser()
    a = p.parse_args(argv)
    if gpu is None:
        from descriptron_sam2pal.model.device import accelerator_available

        gpu = accelerator_available("auto")  # the GUI's default device
    preset, default_steps, default_size = default_job(gpu)
    q = a.quick
    size = a.image_size or (QUICK["image_size"] if q else default_size)
    if size % 32 or size < 64:
        p.error("--image-size must be a multiple of 32, at least 64")
    steps = a.steps or (QUICK["steps"] if q else default_steps)
    n = a.n or (QUICK["n"] if q else FULL_N)
    if steps < 1 or n < 1:
        p.error("--steps and --n must be at least 1")
    deviations = []
    if size != default_size:
        deviations.append(f"image size {size} px instead of the {preset} preset's {default_size} px")
    if steps != default_steps:
        deviations.append(f"{steps} training steps instead of the {preset} preset's {default_steps}")
    if a.reference_epochs is not None:
        deviations.append(f"the reference's --num_epochs set to {a.reference_epochs}")
    if a.reference_confidence:
        deviations.append("the reference with --cycle_consistency (its confidence score)")
    out = a.out or (BENCH / "out" / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return Settings(
        quick=q,
        model=a.model,
        image_size=size,
        n=n,
        steps=steps,
        default_steps=default_steps,
        preset=preset,
        gpu=gpu,
        device="cuda" if gpu else "cpu",
        images=a.images,
        out=out,
        timeout=a.timeout or (1800 if q else 24 * 3600),
        threads=a.threads,
        reference=not a.no_reference,
        reference_epochs=a.reference_epochs,
        reference_confidence=a.reference_confidence,
        deviations=deviations,
    )


# --------------------------------------------------------------------------- the machine
def cpu_report() -> dict:
    """The CPU as the hardware reports it and as torch sees it (ONEDNN_MAX_CPU_ISA can hide bf16)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    from descriptron_sam2pal.model.device import cpu_has_native_bf16, resolve_precision

    hw = sorted(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags)
    native = cpu_has_native_bf16()
    return {
        "name": bench.cpu_name(),
        "logical_cpus": os.cpu_count(),
        "hardware_flags": hw,
        "torch_native_bf16": native,
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "kind": "AVX512-BF16/AMX (bf16 in hardware, as torch sees it)"
        if native
        else "AVX2 only (no native bf16, as torch sees it)",
        "ours_precision_auto": resolve_precision("cpu", "auto"),
    }


# --------------------------------------------------------------------------- one side's result
@dataclass
class Side:
    name: str
    runs: list = field(default_factory=list)  # bench.Run of each subprocess, in order
    train_s: float | None = None
    segment_s: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def wall_s(self) -> float | None:
        return sum(r.wall for r in self.runs) if self.ok else None

    @property
    def cpu_s(self) -> float | None:
        return sum(r.cpu_s for r in self.runs) if self.ok else None

    @property
    def peak_gb(self) -> float | None:
        return max(r.peak_rss_mb for r in self.runs) / GIB if self.ok else None

    def as_dict(self) -> dict:
        return {
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "train_s": self.train_s,
            "segment_s": self.segment_s,
            "peak_gb": self.peak_gb,
            "ok": self.ok,
            "details": self.details,
            "runs": [
                {
                    "cmd": bench.short_command(r.cmd),
                    "wall_s": r.wall,
                    "rc": r.rc,
                    "timed_out": r.timed_out,
                    "peak_rss_mb": r.peak_rss_mb,
                    "cpu_s": r.cpu_s,
                    "log": str(r.log),
                }
                for r in self.runs
            ],
        }


def _num(x, digits: int) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def last_line(ours_s, reference_s, ours_peak_gb, reference_peak_gb, estimate_s) -> str:
    """The contract line; ``n/a`` for what could not be measured."""
    ratio = bench.ratio(reference_s, ours_s)
    est = bench.ratio(estimate_s, ours_s)
    return (
        f"time_to_result: ours_s={_num(ours_s, 1)} reference_s={_num(reference_s, 1)} "
        f"ratio={_num(ratio, 2)} ours_peak_gb={_num(ours_peak_gb, 2)} "
        f"reference_peak_gb={_num(reference_peak_gb, 2)} estimate_ratio={_num(est, 2)}"
    )


# --------------------------------------------------------------------------- the benchmark
class TimeToResult:
    def __init__(self, s: Settings):
        self.s = s
        self.problems: list[str] = []
        self.results: dict = {}

    def setup(self) -> None:
        s = self.s
        self.work = s.out / "work"
        if self.work.exists():  # a run folder of an earlier run would mix into this one's figures
            raise SystemExit(f"{self.work} exists: give a new --out")
        s.out.mkdir(parents=True, exist_ok=True)
        self.ds = bdata.load_dataset(s.images, s.n, bench.CACHE)
        if len(self.ds.targets) < s.n:
            self.problems.append(f"only {len(self.ds.targets)} specimens available, {s.n} asked for")
        self.n = len(self.ds.targets[: s.n])
        self.specimens = bdata.link_targets(self.ds.targets[: self.n], self.work / "specimens")
        self.ckpt = bench.checkpoint_for(s)
        self.ref = (
            bench.fetch_reference() if s.reference else bench.Reference(None, None, "--no-reference given")
        )
        if self.ref.script is None:
            self.problems.append(f"reference not run: {self.ref.why_missing}")
            self.ref_job = None
        else:
            defaults = reference_defaults(self.ref.script)
            epochs = s.reference_epochs or defaults["num_epochs"]
            if s.reference_epochs is None and s.steps != s.default_steps:  # the same fraction of its default
                epochs = max(1, round(defaults["num_epochs"] * s.steps / s.default_steps))
                s.deviations.append(
                    f"the reference's --num_epochs {epochs} instead of its default "
                    f"{defaults['num_epochs']} (scaled like our steps)"
                )
            per_epoch = min(defaults["max_images_per_epoch"], self.n)
            self.ref_job = {
                "defaults": defaults,
                "num_epochs": epochs,
                "images_per_epoch": per_epoch,
                "steps": epochs * per_epoch,
            }
            self.ref_template = bdata.write_reference_template(self.ds, self.work / "template_coco.json")

    # -- ours ---------------------------------------------------------------------
    def our_commands(self) -> tuple[list[str], list[str]]:
        s = self.s
        run_dir = self.work / "ours" / "run"
        model = ["--checkpoint", str(self.ckpt), "--config", s.config]
        train = (
            bench.OURS
            + ["train"]
            + bench.our_template_args(self.ds)
            + ["--images", str(self.specimens), "--out", str(run_dir)]
            + model
            + ["--image-size", str(s.image_size), "--steps", str(s.steps)]
        )
        segment = (
            bench.OURS
            + ["propagate"]
            + bench.our_template_args(self.ds)
            + [
                "--images",
                str(self.specimens),
                "--out",
                str(self.work / "ours" / "predictions.json"),
                "--adapter",
                str(run_dir),
            ]
            + model
        )
        return train, segment

    def ours(self) -> Side:
        side = Side("ours")
        train, segment = self.our_commands()
        folder = self.work / "ours"
        bench.say(
            f"\nours: sam2pal train ({self.s.steps} steps, {self.s.image_size} px, {self.n} specimens), "
            "then sam2pal propagate of all of them"
        )
        run = bench.run_measured(train, folder / "train.log", self.s.timeout, bench.child_env())
        side.runs.append(run)
        side.train_s = run.wall
        self._say_run("ours train", run)
        self._our_training_details(side, folder / "run")
        if not run.ok:
            self.problems.append(
                f"ours: training failed ({self._state(run)}); log {run.log}:\n" + bench.tail(run.log)
            )
            return side
        run = bench.run_measured(segment, folder / "propagate.log", self.s.timeout, bench.child_env())
        side.runs.append(run)
        side.segment_s = run.wall
        self._say_run("ours propagate", run)
        pred = bench.read_json(folder / "predictions.json")
        side.details["images_segmented"] = len(pred.get("images", []))
        side.details["annotations"] = len(pred.get("annotations", []))
        if not run.ok:
            self.problems.append(
                f"ours: propagation failed ({self._state(run)}); log {run.log}:\n" + bench.tail(run.log)
            )
        elif side.details["images_segmented"] != self.n:
            self.problems.append(
                f"ours: {side.details['images_segmented']} of {self.n} specimens in "
                f"{folder / 'predictions.json'}"
            )
        return side

    def _our_training_details(self, side: Side, run_dir: Path) -> None:
        rows = [r for r in bench.read_jsonl(run_dir / "log.jsonl") if isinstance(r.get("step"), int)]
        result = bench.read_json(run_dir / "result.json")
        steps_s = sum(float(r["seconds"]) for r in rows if isinstance(r.get("seconds"), (int, float)))
        remakes = [
            float(r["pseudo_seconds"]) for r in rows if isinstance(r.get("pseudo_seconds"), (int, float))
        ]
        side.details.update(
            {
                "status": result.get("status"),
                "steps_done": result.get("steps_done", len(rows)),
                "steps_s": steps_s,
                "remakes": len(remakes),
                "remakes_s": sum(remakes),
            }
        )
        if side.runs[-1].ok and (
            result.get("status") != "finished" or side.details["steps_done"] != self.s.steps
        ):
            self.problems.append(
                f"ours: training status {result.get('status')!r}, "
                f"{side.details['steps_done']} of {self.s.steps} steps ({run_dir})"
            )

    # -- the reference ------------------------------------------------------------
    def reference_command(self) -> list[str]:
        s = self.s
        out = self.work / "reference"
        args = bench.reference_args(s, self.ds, self.ref_template, self.ckpt, self.specimens, out / "o")
        args += ["--pal_finetuning", "--use_lora"] + (
            ["--cycle_consistency"] if s.reference_confidence else []
        )
        if self.ref_job["num_epochs"] != self.ref_job["defaults"]["num_epochs"]:
            args += ["--num_epochs", str(self.ref_job["num_epochs"])]
        return bench.reference_cmd(self.ref, s, args, out / "probe.json")

    def reference(self) -> Side:
        side = Side("reference")
        if self.ref.script is None:
            return side
        job = self.ref_job
        bench.say(
            f"\nreference: --pal_finetuning --use_lora, {job['num_epochs']} epochs x "
            f"{job['images_per_epoch']} "
            f"images = {job['steps']} steps (one structure each), then its propagation of {self.n} specimens"
        )
        folder = self.work / "reference"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.time()  # the probe's marks are wall-clock times
        env = bench.reference_train_env()
        shim_calls = folder / "shim_calls.txt"
        env["SAM2PAL_BENCH_SHIM_COUNT"] = str(shim_calls)
        run = bench.run_measured(self.reference_command(), folder / "log.txt", self.s.timeout, env)
        side.runs.append(run)
        self._say_run("reference", run)
        probe = bench.read_json(folder / "probe.json")
        problem = bench.reference_training_check(run, probe, job["steps"])
        if problem and run.ok:
            self.problems.append(problem)
        side.details.update({k: run.extra.get(k) for k in ("steps_started", "steps_done", "steps_failed")})
        end = (probe.get("t_train_end") or [None])[-1]
        if end:
            side.train_s = min(run.wall, end - started)  # start-up + model build + training
            side.segment_s = run.wall - side.train_s  # the rest: its propagation and exit
        p0, p1 = probe.get("t_propagate_start"), probe.get("t_propagate_end")
        if p0 and p1:
            side.details["propagation_phase_s"] = p1[-1] - p0[0]
        t0 = probe.get("t_train_start")
        if t0 and end:
            side.details["training_phase_s"] = end - t0[0]
        pred = bench.read_json(folder / "o" / "pal_predictions.json")
        side.details["images_segmented"] = len(pred.get("images", []))
        side.details["annotations"] = len(pred.get("annotations", []))
        side.details["encoder_images"] = probe.get("encoder_images")
        log = run.log.read_text(errors="replace")
        side.details["fallbacks"] = len(re.findall(r"tracker empty; used fallback|No result for image", log))
        side.details["shim_calls"] = len(shim_calls.read_text().split()) if shim_calls.exists() else 0
        if side.details["fallbacks"]:
            self.problems.append(
                f"reference: {side.details['fallbacks']} of {self.n} specimens went through its single-image "
                "fallback (the tracker returned no mask: random weights), an extra encoder and decoder pass "
                "each that a trained SAM2 would mostly not need; the torchvision shim computed in it "
                f"({side.details['shim_calls']} calls)"
            )
        if not run.ok:
            self.problems.append(
                f"reference failed ({self._state(run)}); log {run.log}:\n" + bench.tail(run.log)
            )
        elif side.details["images_segmented"] != self.n:
            self.problems.append(
                f"reference: {side.details['images_segmented']} of {self.n} specimens in "
                f"{folder / 'o' / 'pal_predictions.json'}"
            )
        return side

    # -- output --------------------------------------------------------------------
    def _state(self, run) -> str:
        return "ok" if run.ok else (f"TIMEOUT after {self.s.timeout}s" if run.timed_out else f"rc={run.rc}")

    def _say_run(self, label: str, run) -> None:
        bench.say(f"  {label:15s} {run.wall:8.1f}s  peak RSS {run.peak_rss_mb:7.0f} MB  {self._state(run)}")

    def report(self, cpu: dict, ours: Side, ref: Side, estimate: tuple[float, str]) -> tuple[str, dict]:
        s = self.s
        est_s, est_what = estimate
        line = last_line(ours.wall_s, ref.wall_s, ours.peak_gb, ref.peak_gb, est_s)
        figures = {
            "settings": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
                "n_used": self.n,
            },
            "cpu": cpu,
            "ours": ours.as_dict(),
            "reference": ref.as_dict(),
            "reference_job": self.ref_job,
            "estimate": {"seconds": est_s, "covers": est_what},
            "load_average": {"start": self.results.get("load_start"), "end": bench.load()},
            "problems": self.problems,
            "last_line": line,
        }
        lines = []
        w = lines.append
        w(f"# time to result: {'quick' if s.quick else 'full'} run, {_dt.datetime.now():%Y-%m-%d %H:%M}")
        w("")
        w(
            f"- CPU: {cpu['name']}, {cpu['logical_cpus']} logical CPUs; hardware flags: "
            f"{', '.join(cpu['hardware_flags']) or 'none found'}; as torch sees it: **{cpu['kind']}** "
            f"(ONEDNN_MAX_CPU_ISA={cpu['ONEDNN_MAX_CPU_ISA'] or 'not set'}); ours `--precision auto` "
            f"resolves to {cpu['ours_precision_auto']} on the CPU"
        )
        w(
            f"- device: {'GPU' if s.gpu else 'CPU'} (ours: the GUI's default `auto`; the reference: "
            f"`--device {s.device}`); threads: {s.threads or 'torch default'}; load average at start "
            f"{figures['load_average']['start']}, at end {figures['load_average']['end']}"
        )
        w(f"- software: Python {platform.python_version()}, {bench.versions()}")
        w(
            f"- model: {s.model} ({s.config}), random weights ({self.ckpt.name}), input "
            f"{s.image_size} px on both sides"
        )
        w(
            f"- job: template {self.ds.template_image.name} with K={len(self.ds.structures)} structures "
            f"({', '.join(self.ds.structures)}), N={self.n} unlabeled specimens ({self.ds.source}, "
            f"{self.ds.images_dir}), trained on, then all segmented"
        )
        w(
            f'- ours: the Train dialog\'s default preset "{s.preset}" ({s.default_steps} steps at '
            f"{'GPU' if s.gpu else 'CPU'} size), pseudo-labels on, LoRA rank 8, then `sam2pal "
            f"propagate --adapter` "
            f"with its defaults, as the dialog's Segment (no palindrome confidence, no orientation search)"
        )
        if self.ref_job:
            rj = self.ref_job
            w(
                f"- reference: {bench.REFERENCE_SPEC} {bench.REFERENCE_MEMBER} (sha256 "
                f"{self.ref.sha256[:16]}), "
                f"`--pal_finetuning --use_lora`, its defaults --num_epochs "
                f"{rj['defaults']['num_epochs']} and "
                f"--max_images_per_epoch {rj['defaults']['max_images_per_epoch']}; this run: "
                f"{rj['num_epochs']} "
                f"epochs x {rj['images_per_epoch']} images = {rj['steps']} steps (one structure "
                f"each), then its "
                f"propagation "
                + ("(with `--cycle_consistency`)" if s.reference_confidence
                   else "(no `--cycle_consistency`: off by default)")
            )
        w("- deviations from the defaults: " + ("; ".join(s.deviations) if s.deviations else "none"))
        w("")
        w("| | ours | reference | reference / ours |")
        w("|---|---|---|---|")

        def row(label, a, b, digits=1, unit="s"):
            r = bench.ratio(b, a)
            w(
                f"| {label} | {_num(a, digits)}{unit if a is not None else ''} | "
                f"{_num(b, digits)}{unit if b is not None else ''} | {_num(r, 2)} |"
            )

        row("**wall time, whole job**", ours.wall_s, ref.wall_s)
        row(
            "training (ours: the `train` process; reference: its process until training ends)",
            ours.train_s,
            ref.train_s,
        )
        row(
            f"segmentation of {self.n} specimens (ours: the `propagate` process; reference: the "
            f"rest of its process)",
            ours.segment_s,
            ref.segment_s,
        )
        row(
            "CPU time, whole job (user + system, all threads; less sensitive to other load than wall time)",
            ours.cpu_s,
            ref.cpu_s,
        )
        row("peak memory (max RSS of the side's processes)", ours.peak_gb, ref.peak_gb, 2, " GB")
        w("")
        od, rd = ours.details, ref.details
        if od.get("steps_done") is not None:
            w(
                f"Ours, inside training: {od.get('steps_done')} steps took {od['steps_s']:.1f}s "
                f"(first encodes "
                f"included), {od['remakes']} pseudo-label remake(s) {od['remakes_s']:.1f}s, the rest of the "
                f"process (start-up, model build, validation, saving) "
                + _num(None if ours.train_s is None else ours.train_s - od["steps_s"] - od["remakes_s"], 1)
                + "s."
            )
        if rd.get("training_phase_s") is not None:
            w(
                f"Reference, inside its process: training {rd['training_phase_s']:.1f}s "
                f"({rd.get('steps_done')} of {self.ref_job['steps']} steps done), propagation "
                f"{_num(rd.get('propagation_phase_s'), 1)}s; {rd.get('encoder_images')} images through the "
                f"image encoder in all."
            )
        w(
            f"Masks written: ours {od.get('annotations', 'n/a')}, the reference "
            f"{rd.get('annotations', 'n/a')} "
            f"(K={len(self.ds.structures)} structures x N={self.n}; random weights: what they look "
            f"like does not "
            f"matter here)."
        )
        w(f"GUI estimate for the job: {_num(est_s, 1)}s ({est_what}); measured ours {_num(ours.wall_s, 1)}s.")
        w("")
        w("Commands:")
        w("")
        for side in (ours, ref):
            for r in side.runs:
                w(f"- {side.name}: `{shlex.join(bench.short_command(r.cmd))}`")
        for problem_line in bench.problems_section(self.problems):
            w(problem_line)
        w("")
        w(line)
        return "\n".join(lines), figures


def main(argv=None) -> int:
    s = parse_args(argv)
    bench.THREADS = s.threads
    b = TimeToResult(s)
    b.results["load_start"] = bench.load()
    t0 = time.time()
    bench.say(f"time to result: output in {s.out}")
    cpu = cpu_report()
    bench.say(
        f"CPU: {cpu['name']}: {cpu['kind']} (hardware: {', '.join(cpu['hardware_flags'])}; "
        f"ONEDNN_MAX_CPU_ISA={cpu['ONEDNN_MAX_CPU_ISA'] or 'not set'})"
    )
    b.setup()
    for d in s.deviations:
        bench.say("DEVIATION: " + d)
    for p in b.problems:
        bench.say("NOTE: " + p)
    ours = b.ours()
    ref = b.reference()
    estimate = gui_estimate(s.steps, s.image_size, s.gpu, s.model_size, b.n, len(b.ds.structures), s.threads)
    text, figures = b.report(cpu, ours, ref, estimate)
    (s.out / "results.md").write_text(text + "\n")
    (s.out / "results.json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
    bench.say(f"\n(took {time.time() - t0:.0f}s; logs, results.md and results.json in {s.out})\n")
    bench.say(text)  # its last line is the time_to_result line, the last line printed
    return 0


if __name__ == "__main__":
    sys.exit(main())
