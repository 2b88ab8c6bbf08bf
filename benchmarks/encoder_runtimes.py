#!/usr/bin/env python3
"""The frozen image encoder (Hiera trunk + FPN neck) on the CPU: eager fp32 against torch.compile,
int8 dynamic quantization, ONNX Runtime and OpenVINO, for speed and for agreement with eager fp32.

    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/encoder_runtimes.py [--models tiny,demo]
        [--runtimes eager,compile,int8,int8-mlp,onnxruntime,openvino] [--threads 1] [--repeats 5] [--photos 6]
        [--image-size 512] [--avx2] [--images DIR]

Models: ``tiny`` is SAM2.1 hiera-tiny with random weights (seed 0) at ``--image-size`` (default
512, the CPU "Balanced" preset); ``demo`` is the packaged beetle demo model
(resources/checkpoints/sam2pal_beetle.pt, trained weights) at its own 256 px. Photos: the first
BeetleFlow photo with all five structures is the template, the next ``--photos`` the targets
(benchmarks/data.py; read in place, never copied).

Each (model, runtime) runs in its own fresh process, one after the other, with ``--threads``
threads (default 1). It builds the model in fp32, prepares the runtime (export, compilation or
quantization: ``setup_s``), runs the encoder twice to warm up and then ``--repeats`` times on the
targets: ``s/image`` is the median over the repeats of the CPU seconds per image of one pass over
every target (``process_time``, robust to the other sessions sharing this CPU; the median wall time
is printed beside it). ``peak GB`` is the process's peak resident memory after those passes (model
and runtime). Then the same process puts
the runtime in place of ``sam.image_encoder`` and propagates the template's structures to every
target through the real path (``TemplateMemory`` + ``iter_propagate``, confidence on), so the
template and each target are encoded by the runtime. The parent compares each runtime's encoder
features (min cosine, max absolute difference, over levels and photos) and masks (IoU of each
structure present in both; present/absent disagreements) with eager fp32's.

A runtime is **adopted** only when it is at least 1.3x faster than eager fp32 on the first model
(SAM2.1 tiny at 512 px: the real model at the CPU preset; the demo's encoder is a few hundredths of
a second at 256 px), not slower on the others, and its masks agree with eager fp32's (mean IoU >=
0.99, no present/absent disagreement) on every model. The last line:

    encoder_runtimes: eager_s=A best=NAME best_s=B best_iou=C

(``A``/``B``: s/image of the first model, ``C``: the lowest mean mask IoU over the models; ``best``
is the fastest adopted runtime, ``eager`` when none qualifies).

``--avx2``: also limit MKL, ATen and FBGEMM to AVX2 in the children (``ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2``);
``ONEDNN_MAX_CPU_ISA=AVX2`` alone limits only oneDNN (convolutions, some other ops), while torch's fp32 matrix
products (MKL) and int8 ones (FBGEMM) would use AVX-512 on a CPU that has it. ONNX Runtime's and
OpenVINO's kernels cannot be limited this way: they use whatever the CPU has.

Runtimes: ``eager`` (fp32, the baseline), ``compile`` (``torch.compile``, inductor), ``int8`` (torch's
dynamic quantization of every ``nn.Linear``), ``int8-mlp`` (only the blocks' MLPs), ``int8-pc`` /
``int8-mlp-pc`` (the same with per-channel weight scales; not in the default list),
``onnxruntime`` (CPU execution provider) and ``openvino`` (CPU, fp32 precision hint), the last two
on the encoder exported with ``torch.onnx.export`` (opset 17).
ONNX Runtime and OpenVINO are measured when importable (``pip install onnxruntime openvino``);
neither is a dependency of sam2pal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

RUNTIMES = ("eager", "compile", "int8", "int8-pc", "int8-mlp", "int8-mlp-pc", "onnxruntime", "openvino")
DEFAULT_RUNTIMES = ("eager", "compile", "int8", "int8-mlp", "onnxruntime", "openvino")
MODELS = ("tiny", "demo")
DEFAULT_IMAGES = BENCH.parent.parent / "shared" / "data" / "beetleflow-5class-train" / "images"
AVX2_ENV = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}
SPEEDUP_TO_ADOPT = 1.3
IOU_TO_ADOPT = 0.99


# -- the child: one model, one runtime ---------------------------------------------------------
def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _levels_module(encoder):
    """The image encoder as a module returning its ``backbone_fpn`` levels as a tuple."""
    import torch

    class Levels(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return tuple(self.inner(x)["backbone_fpn"])

    return Levels(encoder).eval()


def _export_onnx(levels, size: int, folder: str) -> str:
    import torch

    path = os.path.join(folder, "encoder.onnx")
    with torch.no_grad():
        torch.onnx.export(
            levels,
            (torch.zeros(1, 3, size, size),),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["image"],
        )
    return path


def _quantized(levels, name: str):
    """int8 dynamic quantization of linear layers: ``int8`` all of them, ``int8-mlp`` only the blocks'
    MLPs (2/3 of the linear arithmetic; attention stays fp32); ``-pc``: per-channel weight scales."""
    import copy

    import torch

    qconfig = (
        torch.ao.quantization.per_channel_dynamic_qconfig
        if name.endswith("-pc")
        else torch.ao.quantization.default_dynamic_qconfig
    )
    mlp_only = name.startswith("int8-mlp")
    spec = {
        n: qconfig
        for n, m in levels.named_modules()
        if isinstance(m, torch.nn.Linear) and (".mlp." in n or not mlp_only)
    }
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(levels), spec, dtype=torch.qint8)


def make_runtime(name: str, encoder, size: int, threads: int, folder: str):
    """A function (1, 3, S, S) fp32 tensor -> tuple of fp32 level tensors, for runtime ``name``."""

    import torch

    levels = _levels_module(encoder)
    if name == "eager":
        return levels
    if name == "compile":
        return torch.compile(levels)
    if name.startswith("int8"):
        return _quantized(levels, name)
    if name == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            _export_onnx(levels, size, folder), options, providers=["CPUExecutionProvider"]
        )
        return lambda x: tuple(torch.from_numpy(a) for a in session.run(None, {"image": x.numpy()}))
    if name == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(
            _export_onnx(levels, size, folder),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "INFERENCE_PRECISION_HINT": "f32",
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
                "ENABLE_CPU_PINNING": False,
            },
        )
        request = compiled.create_infer_request()

        def run(x):
            request.infer({0: x.numpy()})
            return tuple(
                torch.from_numpy(request.get_output_tensor(i).data.copy())
                for i in range(len(compiled.outputs))
            )

        return run
    raise ValueError(f"unknown runtime {name!r}")


def swapped_encoder(encoder, run):
    """A stand-in for ``sam.image_encoder`` that computes the levels with ``run`` (one image at a
    time) and the position encodings with the original neck, as ``ImageEncoder.forward`` does."""
    import torch

    class RuntimeImageEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.neck = encoder.neck
            self.trunk = encoder.trunk

        def forward(self, sample):
            outs = [run(sample[i : i + 1].float().contiguous()) for i in range(sample.shape[0])]
            feats = [torch.cat([o[level] for o in outs]) for level in range(len(outs[0]))]
            pos = [self.neck.position_encoding(f).to(f.dtype) for f in feats]
            return {"vision_features": feats[-1], "vision_pos_enc": pos, "backbone_fpn": feats}

    return RuntimeImageEncoder()


def build(model_name: str, image_size: int):
    from descriptron_sam2pal.model.build import build_model

    if model_name == "tiny":
        model = build_model("configs/sam2.1/sam2.1_hiera_t.yaml", None, image_size=image_size, seed=0)
    else:
        from descriptron_sam2pal.jobs.models import BEETLE_DEMO_SIZE, beetle_checkpoint_path

        model = build_model(None, beetle_checkpoint_path(), image_size=BEETLE_DEMO_SIZE)
    model.precision = "fp32"
    return model


def child(args) -> int:
    import torch

    import data as bdata
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.engine.memory_propagation import TemplateMemory, iter_propagate
    from descriptron_sam2pal.jobs.templates import load_templates, spec_from_color_png

    torch.set_num_threads(args.threads)
    model = build(args.child_model, args.image_size)
    sam, size = model.sam, model.image_size
    sam.eval()
    ds = bdata.load_dataset(args.images, args.photos, BENCH / "cache")
    tensors = [prepare_image(str(p), size).tensor()[None] for p in ds.targets]
    result = {
        "model": args.child_model,
        "runtime": args.child_runtime,
        "image_size": size,
        "threads": torch.get_num_threads(),
        "photos": len(ds.targets),
        "source": ds.source,
    }
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        t0 = time.perf_counter()
        run = make_runtime(args.child_runtime, sam.image_encoder, size, args.threads, folder)
        run(tensors[0])  # torch.compile compiles here
        result["setup_s"] = time.perf_counter() - t0
        run(tensors[1 % len(tensors)])
        cpu, wall = [], []
        for _ in range(args.repeats):  # a sample: one pass over every target, per image
            c0, w0 = time.process_time(), time.perf_counter()
            for x in tensors:
                run(x)
            cpu.append((time.process_time() - c0) / len(tensors))
            wall.append((time.perf_counter() - w0) / len(tensors))
        result.update(cpu_s=statistics.median(cpu), wall_s=statistics.median(wall), peak_gb=_peak_gb())
        arrays = {
            f"feat_{i}_{lv}": t.float().numpy() for i, x in enumerate(tensors) for lv, t in enumerate(run(x))
        }
        sam.image_encoder = swapped_encoder(sam.image_encoder, run)
        [template] = load_templates(
            [spec_from_color_png(ds.template_image, ds.template_mask, ds.colors)], size
        )
        memory = TemplateMemory(model, [template])
        for i, res in enumerate(iter_propagate(model, memory, ds.targets)):
            for name, s in res.structures.items():
                if s.present and s.mask is not None:
                    arrays[f"mask_{i}_{name}"] = np.packbits(s.mask)
                    arrays[f"shape_{i}_{name}"] = np.array(s.mask.shape)
        result["structures"] = list(ds.colors)
    np.savez(args.result + ".npz", **arrays)
    Path(args.result).write_text(json.dumps(result))
    return 0


# -- the parent: runs the children, compares, prints ------------------------------------------------
def _masks(arrays, photos: int, structures) -> dict:
    out = {}
    for i in range(photos):
        for name in structures:
            if f"mask_{i}_{name}" in arrays:
                shape = tuple(arrays[f"shape_{i}_{name}"])
                out[(i, name)] = np.unpackbits(arrays[f"mask_{i}_{name}"])[: np.prod(shape)].reshape(shape)
            else:
                out[(i, name)] = None
    return out


def agreement(ref_npz: str, npz: str, photos: int, structures) -> dict:
    """Feature cosine / max |difference| and mask IoU of a runtime against eager fp32."""
    ref, got = np.load(ref_npz), np.load(npz)
    cosines, diffs = [], []
    for key in (k for k in ref.files if k.startswith("feat_")):
        a, b = ref[key].astype(np.float64).ravel(), got[key].astype(np.float64).ravel()
        cosines.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)))
        diffs.append(float(np.abs(a - b).max()))
    ma, mb = _masks(ref, photos, structures), _masks(got, photos, structures)
    ious, flips, by_structure = [], 0, {}
    for key, a in ma.items():
        b = mb[key]
        if (a is None) != (b is None):
            flips += 1
        elif a is not None:
            ious.append(float((a & b).sum() / max((a | b).sum(), 1)))
            by_structure.setdefault(key[1], []).append(ious[-1])
    return {
        "cosine_min": min(cosines),
        "max_abs_diff": max(diffs),
        "iou_mean": float(np.mean(ious)) if ious else float("nan"),
        "iou_min": float(np.min(ious)) if ious else float("nan"),
        "masks": len(ious),
        "flips": flips,
        "iou_by_structure": {k: float(np.mean(v)) for k, v in by_structure.items()},
    }


def run_child(args, model: str, runtime: str, folder: Path, env: dict) -> dict:
    out = folder / f"{model}-{runtime}.json"
    cmd = [
        sys.executable,
        __file__,
        "--child-model",
        model,
        "--child-runtime",
        runtime,
        "--result",
        str(out),
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--photos",
        str(args.photos),
        "--image-size",
        str(args.image_size),
        "--images",
        str(args.images),
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"model": model, "runtime": runtime, "error": f"did not finish in {args.timeout} s"}
    if proc.returncode != 0 or not out.exists():
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {
            "model": model,
            "runtime": runtime,
            "error": (lines[-1] if lines else f"exit {proc.returncode}")[:160],
        }
    result = json.loads(out.read_text())
    result["npz"] = str(out) + ".npz"
    return result


def _fmt(r: dict, eager_s: float | None) -> str:
    if "error" in r:
        return f"| {r['model']} | {r['runtime']} | not measured: {r['error']} | | | | | | |"
    speed = f"{eager_s / r['cpu_s']:.2f}x" if eager_s else ""
    agree = r.get("agreement") or {}
    feats = f"{agree['cosine_min']:.6f} / {agree['max_abs_diff']:.2g}" if agree else "(reference)"
    masks = (
        f"{agree['iou_mean']:.4f} (min {agree['iou_min']:.4f}), {agree['flips']} flips"
        if agree
        else f"{r.get('masks', '')}"
    )
    return (
        f"| {r['model']} {r['image_size']} px | {r['runtime']} | {r['setup_s']:.1f} | {r['cpu_s']:.3f} "
        f"({r['wall_s']:.3f}) | {speed} | {r['peak_gb']:.2f} | {feats} | {masks} |"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES), help=f"any of {', '.join(RUNTIMES)}")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--photos", type=int, default=6)
    p.add_argument("--image-size", type=int, default=512, help="tiny's input size (demo: its own 256)")
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    p.add_argument("--avx2", action="store_true", help="limit MKL, ATen and FBGEMM to AVX2 too (see above)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per child (torch.compile compiles)")
    p.add_argument("--child-model", help=argparse.SUPPRESS)
    p.add_argument("--child-runtime", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_model:
        return child(args)

    from run import cpu_name

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), **(AVX2_ENV if args.avx2 else {}))
    limits = " ".join(f"{k}={env[k]}" for k in AVX2_ENV if k in env) or "none"
    models = [m for m in args.models.split(",") if m]
    runtimes = ["eager"] + [r for r in args.runtimes.split(",") if r and r != "eager"]
    print(
        f"{cpu_name()}; ISA limits: {limits}; {args.threads} thread(s); {args.photos} photos; "
        f"s/image: median of {args.repeats} passes over the photos after 2 warm-ups, CPU s "
        "(median wall in brackets)",
        flush=True,
    )
    rows, summary = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            eager = None
            for runtime in runtimes:
                r = run_child(args, model, runtime, Path(tmp), env)
                if "error" not in r:
                    if runtime == "eager":
                        eager = r
                    elif eager is not None:
                        r["agreement"] = agreement(eager["npz"], r["npz"], r["photos"], r["structures"])
                print(_fmt(r, eager["cpu_s"] if eager and runtime != "eager" else None), flush=True)
                rows.append(r)
                summary.setdefault(runtime, {})[model] = r
    print()
    print(
        "| model | runtime | setup s | s/image CPU (wall) | vs eager | peak GB "
        "| feature cosine min / max abs diff | mask IoU vs eager mean (min), present/absent flips |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        eager = summary["eager"].get(r["model"])
        print(_fmt(r, eager["cpu_s"] if eager and "error" not in eager and r["runtime"] != "eager" else None))
    return summarize(summary, models)


def summarize(summary: dict, models: list[str]) -> int:
    first = summary["eager"][models[0]]
    eager_s = first.get("cpu_s", float("nan"))
    best, best_s, best_iou = "eager", eager_s, 1.0
    for runtime, by_model in summary.items():
        if runtime == "eager":
            continue
        ok, why, ious = True, [], []
        for model in models:
            r, e = by_model.get(model, {}), summary["eager"].get(model, {})
            if "error" in r or "error" in e or not r:
                ok = False
                why.append(f"{model}: not measured")
                continue
            speed, agree = e["cpu_s"] / r["cpu_s"], r["agreement"]
            ious.append(agree["iou_mean"])
            needed = SPEEDUP_TO_ADOPT if model == models[0] else 1.0
            if speed < needed:
                ok = False
                why.append(f"{model}: {speed:.2f}x < {needed}x")
            if not agree["iou_mean"] >= IOU_TO_ADOPT or agree["flips"]:
                ok = False
                worst = ", ".join(
                    f"{k} {v:.3f}" for k, v in sorted(agree["iou_by_structure"].items(), key=lambda kv: kv[1])
                )
                why.append(f"{model}: mask IoU {agree['iou_mean']:.4f} ({worst}), {agree['flips']} flips")
        print(f"{runtime}: {'ADOPT' if ok else 'not adopted'}" + (f" ({'; '.join(why)})" if why else ""))
        s = by_model[models[0]].get("cpu_s", float("inf")) if ok else float("inf")
        if ok and s < best_s:
            best, best_s, best_iou = runtime, s, min(ious)
    print(f"encoder_runtimes: eager_s={eager_s:.3f} best={best} best_s={best_s:.3f} best_iou={best_iou:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
