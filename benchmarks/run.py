#!/usr/bin/env python3
"""Speed and memory of sam2pal, side by side with the reference SAM2-PAL and the encoder-only limit.

    python benchmarks/run.py [--quick] [--model tiny|test] [--image-size PX] [--images DIR]

One process session, one machine, the same images, the same SAM2 checkpoint and
config, the same model input size, for:
1. the reference: ``tools/sam2_pal_batch_v21.py`` from PyPI ``descriptron-vision``
   2.8.2, fetched here with ``pip download --no-deps`` and run as a subprocess on
   the same ``sam2`` package and torch (through benchmarks/reference_runner.py:
   see there for the two things it adds: the input size and a torchvision shim);
2. ours: ``python -m descriptron_sam2pal.cli`` (the ``sam2pal`` command);
3. the limit: benchmarks/encoder_limit.py, the image encoder alone over the same images.

Every run is a fresh subprocess; wall time is measured around it and peak RSS
comes from the kernel (``wait4`` rusage ``ru_maxrss`` of that child). Figures
are the median of ``--repeats`` runs with min-max. The last line printed is
``ratios: propagate_vs_reference=.. train_vs_reference=.. propagate_vs_encoder_limit=.. memory_200_vs_10=..``
(reference or limit time divided by ours: above 1 means we are faster; memory is
our peak RSS at the largest N over the smallest).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import data as bdata  # noqa: E402

CACHE = BENCH / "cache"
REFERENCE_SPEC = "descriptron-vision==2.8.2"
REFERENCE_MEMBER = "descriptron_vision/tools/sam2_pal_batch_v21.py"
MODELS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",  # SAM2.1 hiera-tiny, 38.96M parameters
    "test": "sam2pal_mini",  # our 2.2M-parameter test architecture (same code paths)
}
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "beetleflow-5class-train" / "images"
LORA_RANK = 16  # both sides train LoRA adapters of this rank


# --------------------------------------------------------------------------- settings
@dataclass
class Settings:
    quick: bool
    model: str
    image_size: int
    images: Path
    repeats: int
    n_propagate: int  # targets in workload (a)
    train_images: int  # unlabeled images in workload (b) (= one epoch)
    train_epochs: int  # reference epochs; ours gets the same number of steps
    memory_n: list[int]  # workload (c)
    reference_memory_n: list[int]
    timeout: int
    out: Path
    reference: bool = True
    device: str = "cpu"
    threads: int | None = None
    workloads: str = "abc"
    train_bf16: bool = False  # also time our training with --precision bf16 (opt-in on the CPU)

    @property
    def train_steps(self) -> int:
        return self.train_images * self.train_epochs

    @property
    def config(self) -> str:
        return MODELS[self.model]


def parse_args(argv=None) -> Settings:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small N, small image size, 3 repeats: a few minutes on a 2-core CPU",
    )
    p.add_argument("--model", choices=sorted(MODELS), default="tiny")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size in px (multiple of 32); default 512, --quick 128",
    )
    p.add_argument(
        "--images",
        type=Path,
        default=DEFAULT_IMAGES,
        help="folder of specimen photos (masks in ../masks or ./masks); "
        "default the shared BeetleFlow photos, else generated images",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=None, help="targets for the propagation workload")
    p.add_argument("--train-images", type=int, default=None, help="unlabeled images (one epoch)")
    p.add_argument("--train-epochs", type=int, default=None)
    p.add_argument("--memory-n", default=None, help="comma list of N for peak RSS (default 10,50,200)")
    p.add_argument(
        "--reference-memory-n",
        default=None,
        help="comma list of N to also measure the reference's peak RSS at (default 10,50; "
        "--quick none; '' for none)",
    )
    p.add_argument("--no-reference", action="store_true", help="skip the reference (ours and the limit only)")
    p.add_argument("--device", default="cpu", help="device for all three (cpu or cuda)")
    p.add_argument(
        "--workloads",
        default="abc",
        help="which workloads to run: any of a (propagation), b (training), c (memory); default abc",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP/MKL threads for every subprocess (default: torch's own choice); "
        "--threads 1 gives steadier figures on a busy machine",
    )
    p.add_argument(
        "--train-bf16",
        action="store_true",
        help="(b): also time ours with --precision bf16 (training steps in bf16; opt-in on "
        "the CPU, whose training default is fp32); reported on its own row, not in the ratios",
    )
    p.add_argument("--timeout", type=int, default=None, help="seconds per subprocess")
    p.add_argument(
        "--out", type=Path, default=None, help="work/result folder (default benchmarks/out/<time>)"
    )
    a = p.parse_args(argv)
    q = a.quick
    size = a.image_size or (128 if q else 512)
    if size % 32 or size < 64:
        p.error("--image-size must be a multiple of 32, at least 64")

    def ints(text, default):
        if text is None:
            return default
        return [int(x) for x in text.split(",") if x.strip()]

    out = a.out or (BENCH / "out" / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return Settings(
        quick=q,
        model=a.model,
        image_size=size,
        images=a.images,
        repeats=max(1, a.repeats),
        n_propagate=a.n or (3 if q else 20),
        train_images=a.train_images or (2 if q else 5),
        train_epochs=a.train_epochs or (2 if q else 3),
        memory_n=ints(a.memory_n, [10, 50, 200] if not q else [10, 200]),
        reference_memory_n=ints(a.reference_memory_n, [] if q else [10, 50]),
        timeout=a.timeout or (300 if q else 3600),
        out=out,
        reference=not a.no_reference,
        device=a.device,
        threads=a.threads,
        workloads=a.workloads,
        train_bf16=a.train_bf16,
    )


# --------------------------------------------------------------------------- running
@dataclass
class Run:
    cmd: list[str]
    wall: float
    rc: int
    peak_rss_mb: float
    log: Path
    timed_out: bool = False
    cpu_s: float = 0.0  # user + system CPU seconds of the process and its children
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def run_measured(cmd: list[str], log: Path, timeout: int, env: dict | None = None) -> Run:
    """Run ``cmd`` in a fresh process; wall time around it, peak RSS from wait4."""
    log.parent.mkdir(parents=True, exist_ok=True)
    timed_out = threading.Event()
    with open(log, "wb") as fh:
        fh.write(("$ " + shlex.join(cmd) + "\n").encode())
        fh.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )

        def kill():
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            kill()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        cmd,
        wall,
        proc.returncode,
        usage.ru_maxrss / 1024.0,
        log,
        timed_out.is_set(),
        usage.ru_utime + usage.ru_stime,
    )


THREADS: int | None = None


def child_env() -> dict:
    env = dict(os.environ)
    if THREADS:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(THREADS)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["TQDM_MININTERVAL"] = "5"
    return env


def reference_train_env() -> dict:
    """The reference reloads its own training checkpoint with a bare ``torch.load``; since
    torch 2.6 that defaults to ``weights_only=True``, which refuses the numpy scalar it
    stores as the loss, so the run dies right after training. Restore the pre-2.6
    default for that process only (this changes what is unpickled, not what is computed)."""
    env = child_env()
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    return env


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- reference
@dataclass
class Reference:
    script: Path | None
    sha256: str | None
    why_missing: str | None = None


def fetch_reference() -> Reference:
    """``pip download --no-deps descriptron-vision==2.8.2`` into benchmarks/cache/reference,
    then extract the script from the wheel (nothing is installed)."""
    folder = CACHE / "reference"
    script = folder / Path(REFERENCE_MEMBER).name
    if not script.exists():
        folder.mkdir(parents=True, exist_ok=True)
        wheels = sorted(folder.glob("descriptron_vision-2.8.2-*.whl"))
        if not wheels:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-q",
                REFERENCE_SPEC,
                "-d",
                str(folder),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(folder.glob("descriptron_vision-2.8.2-*.whl"))
            if res.returncode != 0 or not wheels:
                why = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no wheel"]
                return Reference(None, None, f"`{shlex.join(cmd)}` failed: {why[0]}")
        try:
            with zipfile.ZipFile(wheels[0]) as zf:
                script.write_bytes(zf.read(REFERENCE_MEMBER))
        except (KeyError, zipfile.BadZipFile) as exc:
            return Reference(None, None, f"{wheels[0].name} has no {REFERENCE_MEMBER} ({exc})")
    return Reference(script, hashlib.sha256(script.read_bytes()).hexdigest())


def reference_cmd(ref: Reference, s: Settings, args: list[str], probe: Path) -> list[str]:
    cmd = [
        sys.executable,
        str(BENCH / "reference_runner.py"),
        "--script",
        str(ref.script),
        "--image-size",
        str(s.image_size),
        "--probe",
        str(probe),
    ]
    if s.model == "test":
        cmd += ["--config-dir", str(hydra_config_dir())]
    return cmd + ["--"] + args


def reference_config(s: Settings) -> str:
    return MODELS["tiny"] if s.model == "tiny" else "sam2pal_mini.yaml"


def hydra_config_dir() -> Path:
    """Our mini config where the reference's hydra can find it (--model test only)."""
    from importlib import resources

    folder = CACHE / "hydra_configs"
    folder.mkdir(parents=True, exist_ok=True)
    src = Path(str(resources.files("descriptron_sam2pal") / "resources" / "configs" / "sam2pal_mini.yaml"))
    (folder / "sam2pal_mini.yaml").write_text(src.read_text())
    return folder


def reference_args(
    s, ds: bdata.Dataset, template_json: Path, ckpt: Path, targets: Path, out: Path
) -> list[str]:
    """The reference's flags common to all its runs (README "Exactly how the reference is run"):
    the template, the N targets, the same checkpoint and config, no rembg (it would download a
    model), its canonical canvas at the model input size, no per-structure PNGs. ``s`` has
    ``model``, ``device`` and ``image_size``."""
    return [
        "--template_json",
        str(template_json),
        "--template_image",
        str(ds.template_image),
        "--image_dir",
        str(targets),
        "--output_dir",
        str(out),
        "--sam2_checkpoint",
        str(ckpt),
        "--sam2_config",
        reference_config(s),
        "--device",
        s.device,
        "--fg_mask",
        "none",
        "--canvas_side",
        str(s.image_size),
        "--no_save_masks",
    ]


def reference_training_check(run: Run, probe: dict, steps: int) -> str | None:
    """Count the reference's training steps (started: palindrome forwards seen by the probe;
    done: the ``Images: n`` of its epoch lines) into ``run.extra``; a problem line when they
    are not all ``steps`` (it logs a failed step and carries on, exit code 0)."""
    calls = probe.get("occcl_calls") or []
    run.extra["steps_started"] = len(calls)
    run.extra["steps_failed"] = probe.get("occcl_failed")
    text = run.log.read_text(errors="replace")
    done = [int(x) for x in re.findall(r"Epoch \d+/\d+ - Loss: [-\d.naif]+, Images: (\d+)", text)]
    run.extra["steps_done"] = sum(done)
    if probe.get("occcl_failed") or len(calls) != steps or sum(done) != steps:
        return (
            f"reference training ({run.log}): {len(calls)} steps started, {sum(done)} completed, "
            f"{probe.get('occcl_failed')} failed; {steps} expected "
            "(the reference logs failed steps and carries on, exit code 0)"
        )
    return None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- ours
OURS = [sys.executable, "-m", "descriptron_sam2pal.cli"]


def cli_help(sub: str) -> str | None:
    res = subprocess.run(OURS + [sub, "--help"], capture_output=True, text=True, cwd=REPO)
    return res.stdout if res.returncode == 0 else None


def our_template_args(ds: bdata.Dataset) -> list[str]:
    return [
        "--template-image",
        str(ds.template_image),
        "--template-mask",
        str(ds.template_mask),
        "--colors",
        ds.colors_arg(),
    ]


# --------------------------------------------------------------------------- workloads
def checkpoint_for(s: Settings) -> Path:
    ckpt = CACHE / f"{s.model}_random_seed0.pt"
    if not ckpt.exists():
        say(f"creating a randomly initialised {s.model} checkpoint once: {ckpt}")
        res = subprocess.run(
            [
                sys.executable,
                str(BENCH / "make_checkpoint.py"),
                "--config",
                s.config,
                "--out",
                str(ckpt),
                "--seed",
                "0",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise SystemExit(f"could not create the checkpoint:\n{res.stdout}\n{res.stderr}")
        say("  " + res.stdout.strip())
    return ckpt


def median_range(values: list[float]) -> tuple[float, float, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(mr, unit="s", digits=2) -> str:
    if mr is None:
        return "n/a"
    med, lo, hi = mr
    if lo == hi:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} [{lo:.{digits}f}-{hi:.{digits}f}]"


def ratio(num, den) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


class Bench:
    def __init__(self, s: Settings):
        self.s = s
        self.results: dict = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in s.__dict__.items()}
        }
        self.problems: list[str] = []
        self.notes: list[str] = []

    # -- setup -----------------------------------------------------------------
    def setup(self) -> None:
        s = self.s
        s.out.mkdir(parents=True, exist_ok=True)
        self.work = s.out / "work"
        need = max(
            [s.n_propagate, s.train_images]
            + (s.memory_n + s.reference_memory_n if "c" in s.workloads else [])
        )
        self.ds = bdata.load_dataset(s.images, need, CACHE)
        if len(self.ds.targets) < need:
            self.problems.append(
                f"only {len(self.ds.targets)} target images available, {need} wanted; "
                "Ns above that are capped"
            )
        self.ckpt = checkpoint_for(s)
        self.ref = fetch_reference() if s.reference else Reference(None, None, "--no-reference given")
        if self.ref.script is None:
            self.problems.append(f"reference not run: {self.ref.why_missing}")
        self.ref_template = bdata.write_reference_template(self.ds, self.work / "template_coco.json")
        self.help = {sub: cli_help(sub) for sub in ("propagate", "train")}
        for sub, text in self.help.items():
            if text is None:
                self.problems.append(f"ours: `sam2pal {sub}` is not available in descriptron_sam2pal.cli yet")

    def targets_dir(self, n: int) -> Path:
        n = min(n, len(self.ds.targets))
        return bdata.link_targets(self.ds.targets[:n], self.work / f"targets_{n}")

    # -- commands ----------------------------------------------------------------
    def ref_propagate_args(self, targets: Path, out: Path) -> list[str]:
        return reference_args(self.s, self.ds, self.ref_template, self.ckpt, targets, out) + [
            "--cycle_consistency"
        ]

    def ref_train_args(self, targets: Path, out: Path) -> list[str]:
        s = self.s
        return reference_args(s, self.ds, self.ref_template, self.ckpt, targets, out) + [
            "--pal_finetuning",
            "--use_lora",
            "--lora_rank",
            str(LORA_RANK),
            "--num_epochs",
            str(s.train_epochs),
            "--max_images_per_epoch",
            str(s.train_images),
        ]

    def our_cmd(self, command: str, targets: Path, out: Path, *extra: str) -> list[str]:
        """``sam2pal COMMAND`` on ``targets`` with this run's template, checkpoint, size and device."""
        s = self.s
        return (
            OURS
            + [command]
            + our_template_args(self.ds)
            + ["--images", str(targets), "--checkpoint", str(self.ckpt), "--config", s.config]
            + ["--out", str(out)]
            + list(extra)
            + ["--device", s.device, "--image-size", str(s.image_size)]
        )

    def our_propagate_cmd(self, targets: Path, out: Path) -> list[str]:
        # Like for like with the reference's --cycle_consistency: ours has its palindrome
        # confidence off by default since ffb9033, so (a) asks for it.
        return self.our_cmd("propagate", targets, out / "pred.json", "--confidence")

    def our_train_cmd(self, targets: Path, out: Path, steps: int) -> list[str]:
        return self.our_cmd("train", targets, out, "--steps", str(steps), "--lora-rank", str(LORA_RANK),
                            "--seed", "0")

    def limit_cmd(self, n: int, out: Path) -> list[str]:
        s = self.s
        images = [str(self.ds.template_image)] + [str(p) for p in self.ds.targets[:n]]
        return [
            sys.executable,
            str(BENCH / "encoder_limit.py"),
            "--config",
            s.config,
            "--checkpoint",
            str(self.ckpt),
            "--image-size",
            str(s.image_size),
            "--device",
            s.device,
            "--out",
            str(out),
            "--images",
        ] + images

    # -- checks ------------------------------------------------------------------
    def check_reference_propagation(self, run: Run, out: Path, n: int) -> None:
        pred = read_json(out / "pal_predictions.json")
        imgs = pred.get("images", [])
        scored = sum(1 for im in imgs if "cycle_iou" in im)
        run.extra["images_out"] = len(imgs)
        run.extra["scored"] = scored
        if run.ok and (len(imgs) != n or scored != n):
            self.problems.append(
                f"reference propagation ({run.log}): {len(imgs)} images written, "
                f"{scored} with a cycle score, {n} expected"
            )
        shim = run.extra.get("shim_calls")
        if shim:
            self.problems.append(f"reference used the torchvision shim in its compute path ({shim} calls)")

    def check_ours_propagation(self, run: Run, out: Path, n: int) -> None:
        pred = read_json(out / "pred.json")
        if not pred:
            if run.ok:
                self.problems.append(
                    f"ours: {out / 'pred.json'} missing or unreadable after a run that exited 0"
                )
            return
        imgs = pred.get("images", [])
        run.extra["images_out"] = len(imgs)
        anns = pred.get("annotations", [])
        run.extra["annotations"] = len(anns)
        m = re.search(r"encoder[ _]passes\D{0,20}(\d+)", run.log.read_text(errors="replace"), re.I)
        if m:
            run.extra["encoder_images"] = int(m.group(1))

    # -- workload (a) --------------------------------------------------------------
    def propagate(self) -> None:
        s = self.s
        n = min(s.n_propagate, len(self.ds.targets))
        targets = self.targets_dir(n)
        say(
            f"\n(a) propagation: K={len(self.ds.structures)} structures, 1 template -> N={n} targets, "
            f"{s.image_size} px, {s.repeats} repeats, confidence scoring on"
        )
        runs = {"reference": [], "ours": [], "limit": []}
        order = ["reference", "ours", "limit"]
        for r in range(s.repeats):
            for who in order[r % 3 :] + order[: r % 3]:  # rotate who goes first
                out = self.work / f"a_{who}_{r}"
                if who == "reference":
                    if self.ref.script is None:
                        continue
                    probe = out / "probe.json"
                    out.mkdir(parents=True, exist_ok=True)
                    env = child_env()
                    env["SAM2PAL_BENCH_SHIM_COUNT"] = str(out / "shim_calls.txt")
                    run = run_measured(
                        reference_cmd(self.ref, s, self.ref_propagate_args(targets, out / "o"), probe),
                        out / "log.txt",
                        s.timeout,
                        env,
                    )
                    pr = read_json(probe)
                    run.extra["probe"] = pr
                    run.extra["encoder_images"] = pr.get("encoder_images")
                    calls = out / "shim_calls.txt"
                    run.extra["shim_calls"] = len(calls.read_text().split()) if calls.exists() else 0
                    if pr.get("t_propagate_start") and pr.get("t_propagate_end"):
                        run.extra["phase_s"] = pr["t_propagate_end"][-1] - pr["t_propagate_start"][0]
                    self.check_reference_propagation(run, out / "o", n)
                elif who == "ours":
                    if self.help["propagate"] is None:
                        continue
                    out.mkdir(parents=True, exist_ok=True)
                    run = run_measured(
                        self.our_propagate_cmd(targets, out), out / "log.txt", s.timeout, child_env()
                    )
                    self.check_ours_propagation(run, out, n)
                else:
                    out.mkdir(parents=True, exist_ok=True)
                    run = run_measured(
                        self.limit_cmd(n, out / "limit.json"), out / "log.txt", s.timeout, child_env()
                    )
                    lj = read_json(out / "limit.json")
                    run.extra.update(lj)
                    run.extra["encoder_images"] = lj.get("images")
                    run.extra["phase_s"] = lj.get("encode_s")
                runs[who].append(run)
                state = (
                    "ok" if run.ok else (f"TIMEOUT after {s.timeout}s" if run.timed_out else f"rc={run.rc}")
                )
                say(
                    f"  [{r + 1}/{s.repeats}] {who:9s} {run.wall:7.2f}s  "
                    f"peak RSS {run.peak_rss_mb:7.0f} MB  {state}"
                )
                if not run.ok:
                    self.problems.append(
                        f"(a) {who} repeat {r + 1} failed ({state}); log {run.log}:\n" + tail(run.log)
                    )
        self.results["propagate"] = {"n": n, "runs": runs}

    # -- workload (b) --------------------------------------------------------------
    def train(self) -> None:
        s = self.s
        m = min(s.train_images, len(self.ds.targets))
        targets = self.targets_dir(m)
        steps = m * s.train_epochs
        say(
            f"\n(b) palindrome training: {m} unlabeled images x {s.train_epochs} epochs = {steps} steps, "
            f"LoRA rank {LORA_RANK}, {s.image_size} px, {s.repeats} repeats"
        )
        runs = {"reference": [], "ours": [], "ours_bf16": []}
        sides = ["reference", "ours"] + (["ours_bf16"] if s.train_bf16 else [])
        for r in range(s.repeats):
            for who in sides[r % len(sides) :] + sides[: r % len(sides)]:
                out = self.work / f"b_{who}_{r}"
                out.mkdir(parents=True, exist_ok=True)
                if who == "reference":
                    if self.ref.script is None:
                        continue
                    probe = out / "probe.json"
                    run = run_measured(
                        reference_cmd(self.ref, s, self.ref_train_args(targets, out / "o"), probe),
                        out / "log.txt",
                        s.timeout,
                        reference_train_env(),
                    )
                    self._reference_steps(run, read_json(probe), m, steps)
                else:
                    if self.help["train"] is None:
                        continue
                    cmd = self.our_train_cmd(targets, out / "run", steps)
                    if who == "ours_bf16":
                        cmd += ["--precision", "bf16"]
                    run = run_measured(cmd, out / "log.txt", s.timeout, child_env())
                    self._our_steps(run, out / "run", m, steps)
                runs[who].append(run)
                per = run.extra.get("step_s")
                state = (
                    "ok" if run.ok else (f"TIMEOUT after {s.timeout}s" if run.timed_out else f"rc={run.rc}")
                )
                say(
                    f"  [{r + 1}/{s.repeats}] {who:9s} {run.wall:7.2f}s  per step after epoch 1: "
                    f"{'n/a' if per is None else f'{per:.3f}s'}  peak RSS {run.peak_rss_mb:7.0f} MB  {state}"
                )
                if not run.ok:
                    self.problems.append(
                        f"(b) {who} repeat {r + 1} failed ({state}); log {run.log}:\n" + tail(run.log)
                    )
        self.results["train"] = {"images": m, "steps": steps, "runs": runs}

    def _reference_steps(self, run: Run, pr: dict, m: int, steps: int) -> None:
        """Per-step time from the probe: palindrome forwards of epochs 2.. up to the end of training."""
        calls = pr.get("occcl_calls") or []
        problem = reference_training_check(run, pr, steps)
        if problem:
            self.problems.append(problem)
        end = (pr.get("t_train_end") or [None])[-1]
        if end and len(calls) > m:
            run.extra["step_s"] = (end - calls[m]) / (len(calls) - m)
        if end and calls:
            run.extra["train_phase_s"] = end - calls[0]

    def _our_steps(self, run: Run, run_dir: Path, m: int, steps: int) -> None:
        """Per-step time once the feature cache holds the step's images, from RUN_DIR/log.jsonl
        (one line per optimizer step with its duration ``seconds`` and the ``pairs`` it used)."""
        rows = [r for r in read_jsonl(run_dir / "log.jsonl") if isinstance(r.get("step"), int)]
        rows.sort(key=lambda r: r["step"])
        result = read_json(run_dir / "result.json")
        run.extra["steps_done"] = result.get("steps_done", len(rows))
        run.extra["status"] = result.get("status")
        seen: set = set()
        warm, cold = [], []
        for r in rows:
            used = {str(v) for pair in r.get("pairs", []) for v in pair.values()}
            fresh = bool(used - seen) or not used
            seen |= used
            if isinstance(r.get("seconds"), (int, float)):
                (cold if fresh else warm).append(float(r["seconds"]))
        if not used_pairs(rows):  # no pair information: count the first epoch's steps as cold
            secs = [float(r["seconds"]) for r in rows if isinstance(r.get("seconds"), (int, float))]
            warm, cold = secs[m:], secs[:m]
        run.extra["warm_steps"], run.extra["cold_steps"] = len(warm), len(cold)
        if warm:
            run.extra["step_s"] = sum(warm) / len(warm)
        if cold:
            run.extra["cold_step_s"] = sum(cold) / len(cold)
        if run.ok and (result.get("status") != "finished" or run.extra["steps_done"] != steps):
            self.problems.append(
                f"ours training ({run_dir}): status {result.get('status')!r}, "
                f"{run.extra['steps_done']} of {steps} steps"
            )
        if run.ok and not warm:
            self.problems.append(
                f"ours: no per-step durations after the cache filled in {run_dir / 'log.jsonl'}"
            )

    # -- workload (c) --------------------------------------------------------------
    def memory(self) -> None:
        s = self.s
        say(
            f"\n(c) propagation memory as N grows: ours at N={s.memory_n}"
            + (f", reference at N={s.reference_memory_n}" if s.reference_memory_n and self.ref.script else "")
        )
        res = {"ours": {}, "reference": {}}
        for n in s.memory_n:
            if self.help["propagate"] is None:
                break
            n_eff = min(n, len(self.ds.targets))
            out = self.work / f"c_ours_{n_eff}"
            out.mkdir(parents=True, exist_ok=True)
            run = run_measured(
                self.our_propagate_cmd(self.targets_dir(n_eff), out), out / "log.txt", s.timeout, child_env()
            )
            self.check_ours_propagation(run, out, n_eff)
            res["ours"][n] = run
            say(
                f"  ours      N={n_eff:4d} {run.wall:7.2f}s  peak RSS {run.peak_rss_mb:7.0f} MB  "
                f"{'ok' if run.ok else 'FAILED'}"
            )
            if not run.ok:
                self.problems.append(f"(c) ours N={n_eff} failed; log {run.log}:\n" + tail(run.log))
        for n in s.reference_memory_n if self.ref.script else []:
            n_eff = min(n, len(self.ds.targets))
            out = self.work / f"c_reference_{n_eff}"
            out.mkdir(parents=True, exist_ok=True)
            run = run_measured(
                reference_cmd(
                    self.ref,
                    s,
                    self.ref_propagate_args(self.targets_dir(n_eff), out / "o"),
                    out / "probe.json",
                ),
                out / "log.txt",
                s.timeout,
                child_env(),
            )
            self.check_reference_propagation(run, out / "o", n_eff)
            res["reference"][n] = run
            say(
                f"  reference N={n_eff:4d} {run.wall:7.2f}s  peak RSS {run.peak_rss_mb:7.0f} MB  "
                f"{'ok' if run.ok else 'FAILED'}"
            )
        self.results["memory"] = res

    # -- report ----------------------------------------------------------------------
    def report(self) -> str:
        s = self.s
        P = self.results.get("propagate", {"runs": {}, "n": 0})
        T = self.results.get("train", {"runs": {}, "steps": 0, "images": 0})
        M = self.results.get("memory", {"ours": {}, "reference": {}})

        def ok_runs(who, block):
            return [r for r in block["runs"].get(who, []) if r.ok]

        def col(who, block, key=None, attr="wall"):
            runs = ok_runs(who, block)
            if key is None:
                return median_range([getattr(r, attr) for r in runs])
            return median_range([r.extra.get(key) for r in runs])

        n = P["n"]
        wall = {w: col(w, P) for w in ("reference", "ours", "limit")}
        rss = {w: col(w, P, attr="peak_rss_mb") for w in ("reference", "ours", "limit")}
        enc = {w: col(w, P, key="encoder_images") for w in ("reference", "ours", "limit")}
        step = {w: col(w, T, key="step_s") for w in ("reference", "ours", "ours_bf16")}
        twall = {w: col(w, T) for w in ("reference", "ours")}
        trss = {w: col(w, T, attr="peak_rss_mb") for w in ("reference", "ours")}

        def med(x):
            return None if x is None else x[0]

        r_prop = ratio(med(wall["reference"]), med(wall["ours"]))
        r_limit = ratio(med(wall["limit"]), med(wall["ours"]))
        # A reference palindrome step trains ONE structure (it cycles through the template's masks);
        # ours trains all K in one step. The ratio compares the cost of training every structure once:
        # K reference steps (K single-structure palindromes) vs one of ours (one K-structure palindrome).
        k = len(self.ds.structures)
        r_train_raw = ratio(med(step["reference"]), med(step["ours"]))
        r_train = ratio(
            None if med(step["reference"]) is None else med(step["reference"]) * k, med(step["ours"])
        )
        mem_ours = {k: v for k, v in M["ours"].items() if v.ok}
        r_mem = None
        if len(mem_ours) >= 2:
            lo, hi = min(mem_ours), max(mem_ours)
            r_mem = mem_ours[hi].peak_rss_mb / mem_ours[lo].peak_rss_mb

        lines = []
        w = lines.append
        w(f"# sam2pal benchmark: {'quick' if s.quick else 'full'} run, {_dt.datetime.now():%Y-%m-%d %H:%M}")
        w("")
        w(
            f"- machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} logical CPUs, "
            f"load average at start {self.results.get('load_start', 'n/a')}, at end {load()}"
        )
        w(f"- software: Python {platform.python_version()}, {versions()}")
        w(
            f"- model: {s.model} ({s.config}), random weights saved once ({self.ckpt.name}), "
            f"input {s.image_size} px, device {s.device}"
        )
        w(
            f"- precision: reference fp32 (as written); ours `--precision auto` = {our_precision(s.device)} "
            f"inference (encoder, propagation), training steps "
            f"{'bf16' if s.device.startswith('cuda') else 'fp32'}; encoder limit as ours"
        )
        w(
            f"- images: {self.ds.source} ({self.ds.images_dir}); template {self.ds.template_image.name} with "
            f"K={len(self.ds.structures)} structures ({', '.join(self.ds.structures)}); targets are the next "
            f"images in name order"
        )
        if self.ref.script:
            w(
                f"- reference: {REFERENCE_SPEC} {REFERENCE_MEMBER} (sha256 {self.ref.sha256[:16]}), via "
                f"benchmarks/reference_runner.py (input-size override; torchvision: "
                f"{self._ref_torchvision()})"
            )
        else:
            w(f"- reference: NOT RUN ({self.ref.why_missing})")
        w(
            f"- each figure: median of {s.repeats} fresh-process runs [min-max]; wall time includes "
            f"interpreter start, model build and checkpoint load on every side; threads: "
            f"{s.threads or 'torch default'}"
        )
        w("")
        w("| workload | reference | ours | encoder limit | reference/ours | limit/ours |")
        w("|---|---|---|---|---|---|")
        w(
            f"| (a) propagate K={len(self.ds.structures)}, N={n}, confidence on: wall | "
            f"{fmt(wall['reference'])} | {fmt(wall['ours'])} | {fmt(wall['limit'])} | "
            f"{_r(r_prop)} | {_r(r_limit)} |"
        )
        per_target = {k: (None if v is None else tuple(x / max(n, 1) for x in v)) for k, v in wall.items()}
        w(
            f"| (a) wall per target | {fmt(per_target['reference'], digits=3)} | "
            f"{fmt(per_target['ours'], digits=3)} | "
            f"{fmt(per_target['limit'], digits=3)} | | |"
        )
        ph = {k: col(k, P, key="phase_s") for k in ("reference", "limit")}
        w(
            f"| (a) propagation phase only (reference: process_batch; limit: encoder calls) | "
            f"{fmt(ph['reference'])} | | {fmt(ph['limit'])} | | |"
        )
        w(
            f"| (a) images through the image encoder | {fmt(enc['reference'], '', 0)} | "
            f"{fmt(enc['ours'], '', 0)} | {fmt(enc['limit'], '', 0)} | | |"
        )
        cpu = {w_: col(w_, P, attr="cpu_s") for w_ in ("reference", "ours", "limit")}
        w(
            f"| (a) CPU time (user+sys) | {fmt(cpu['reference'])} | {fmt(cpu['ours'])} | "
            f"{fmt(cpu['limit'])} | "
            f"{_r(ratio(med(cpu['reference']), med(cpu['ours'])))} | "
            f"{_r(ratio(med(cpu['limit']), med(cpu['ours'])))} |"
        )
        w(
            f"| (a) peak RSS | {fmt(rss['reference'], ' MB', 0)} | {fmt(rss['ours'], ' MB', 0)} | "
            f"{fmt(rss['limit'], ' MB', 0)} | | |"
        )
        w(
            f"| (b) train, per step after epoch 1, raw ({T['images']} images, {T['steps']} steps; "
            f"a reference step trains 1 structure, ours all {k}) | {fmt(step['reference'], digits=3)} | "
            f"{fmt(step['ours'], digits=3)} "
            f"| | {_r(r_train_raw)} | |"
        )
        ref_k = None if step["reference"] is None else tuple(x * k for x in step["reference"])
        w(
            f"| (b) train, every structure trained once (reference: {k} steps = step x {k}; ours: 1 step) "
            f"**[ratios line]** | {fmt(ref_k, digits=3)} | {fmt(step['ours'], digits=3)} | | "
            f"{_r(r_train)} | |"
        )
        per_struct = None if step["ours"] is None else tuple(x / k for x in step["ours"])
        w(
            f"| (b) train, per structure trained (reference: 1 step; ours: step / {k}) | "
            f"{fmt(step['reference'], digits=3)} | {fmt(per_struct, digits=3)} | | "
            f"{_r(ratio(med(step['reference']), med(per_struct)))} | |"
        )
        if ok_runs("ours_bf16", T):
            b16 = step["ours_bf16"]
            w(
                f"| (b) train, every structure trained once, ours with `--precision bf16` (opt-in; "
                f"not in the "
                f"ratios line) | {fmt(ref_k, digits=3)} | {fmt(b16, digits=3)} | | "
                f"{_r(ratio(None if ref_k is None else ref_k[0], med(b16)))} | |"
            )
        w(
            f"| (b) train: wall of the whole command | {fmt(twall['reference'])} | "
            f"{fmt(twall['ours'])} | | | |"
        )
        w(
            f"| (b) train: peak RSS | {fmt(trss['reference'], ' MB', 0)} | "
            f"{fmt(trss['ours'], ' MB', 0)} | | | |"
        )

        def cell(r):
            return "n/a" if r is None or not r.ok else f"{r.peak_rss_mb:.0f} MB ({r.wall:.1f}s)"

        for nn in sorted(set(M["ours"]) | set(M["reference"])):
            ro, rr = M["ours"].get(nn), M["reference"].get(nn)
            w(f"| (c) propagate N={nn}: peak RSS (wall) | {cell(rr)} | {cell(ro)} | | | |")
        w("")
        if len(mem_ours) >= 2:
            lo, hi = min(mem_ours), max(mem_ours)
            slope = (mem_ours[hi].wall - mem_ours[lo].wall) / max(1, hi - lo)
            lim = col("limit", P, key="per_image_encode_s")
            w(
                f"Ours, marginal time per target from the (c) runs (N={lo} -> {hi}): {slope:.3f}s; "
                f"the encoder alone: {fmt(lim, digits=3)} per image."
            )
        if ok_runs("reference", T):
            failed = sum((r.extra.get("steps_failed") or 0) for r in ok_runs("reference", T))
            w(
                f"Reference training steps that failed (logged and skipped by the reference): {failed}. "
                f"A reference step trains one structure (it cycles through the K template masks); "
                f"ours trains all K together in every step."
            )
        if ok_runs("ours", T):
            cold = col("ours", T, key="cold_step_s")
            w(
                f"Ours, steps that first encoded an image (cache filling): {fmt(cold, digits=3)} per step; "
                "ours also validates (before step 1, every 25 steps and at the end), "
                "not counted in the per-step figure."
            )
        w("")
        w("Commands (first repeat):")
        w("")
        for block, who in (
            (P, "reference"),
            (P, "ours"),
            (P, "limit"),
            (T, "reference"),
            (T, "ours"),
            (T, "ours_bf16"),
        ):
            runs = block["runs"].get(who) or []
            if runs:
                label = "(a)" if block is P else "(b)"
                w(f"- {label} {who}: `{shlex.join(short_command(runs[0].cmd))}`")
        for problem_line in problems_section(self.problems):
            w(problem_line)
        w("")
        w(
            "ratios: "
            + " ".join(
                [
                    f"propagate_vs_reference={_r(r_prop)}",
                    f"train_vs_reference={_r(r_train)}",
                    f"propagate_vs_encoder_limit={_r(r_limit)}",
                    f"memory_200_vs_10={_r(r_mem)}",
                ]
            )
        )
        return "\n".join(lines)

    def _ref_torchvision(self) -> str:
        for r in self.results.get("propagate", {}).get("runs", {}).get("reference", []):
            tv = r.extra.get("probe", {}).get("torchvision")
            if tv:
                return tv.split(" (")[0]
        return "n/a"


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                rows.append(rec)
    except OSError:
        pass
    return rows


def used_pairs(rows: list[dict]) -> bool:
    return any(r.get("pairs") for r in rows)


def problems_section(problems: list[str]) -> list[str]:
    """The report's "Problems:" lines (none when there were none)."""
    if not problems:
        return []
    return ["", "Problems:", ""] + ["- " + p.replace("\n", "\n  ") for p in problems]


def short_command(cmd: list[str]) -> list[str]:
    """A command for the report: long target lists shortened, paths relative to the repo."""
    out = []
    for c in cmd:
        c = c.replace(str(REPO) + "/", "")
        if c == sys.executable:
            c = "python"
        out.append(c)
    if "--images" in out and out[0] == "python" and out[1].endswith("encoder_limit.py"):
        i = out.index("--images")
        out = out[: i + 2] + [f"... ({len(out) - i - 1} images)"]
    return out


def _r(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def our_precision(device: str) -> str:
    """What sam2pal's ``--precision auto`` resolves to for inference on ``device`` here."""
    try:
        from descriptron_sam2pal.model.device import resolve_precision

        return resolve_precision(device, "auto")
    except Exception as exc:  # noqa: BLE001 - a report line, never a crash
        return f"unknown ({exc})"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def versions() -> str:
    code = (
        "import torch, importlib.metadata as m\n"
        "def v(n):\n"
        "    try:\n        return m.version(n)\n"
        "    except Exception:\n        return 'not installed (on the path)'\n"
        "cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA'\n"
        "print('torch', torch.__version__, '(threads', str(torch.get_num_threads()) + ',', cuda + ')', "
        "'sam2', v('sam2'), 'descriptron-sam2pal', v('descriptron-sam2pal'))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    return res.stdout.strip() or "unknown"


def main(argv=None) -> int:
    global THREADS
    s = parse_args(argv)
    THREADS = s.threads
    b = Bench(s)
    b.results["load_start"] = load()
    t0 = time.time()
    say(f"benchmark output in {s.out}")
    b.setup()
    for p in b.problems:
        say("NOTE: " + p)
    if "a" in s.workloads:
        b.propagate()
    if "b" in s.workloads:
        b.train()
    if "c" in s.workloads:
        b.memory()
    text = b.report()
    (s.out / "results.md").write_text(text + "\n")
    say(f"\n(took {time.time() - t0:.0f}s; logs and results.md in {s.out})\n")
    say(text)  # its last line is the ratios line, the last line printed
    return 0


if __name__ == "__main__":
    sys.exit(main())
