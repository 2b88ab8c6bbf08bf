"""How long training and segmenting take, before anything ran: the Train dialog's first guess.

The costs below were measured by ``benchmarks/training_cost.py`` (SAM2.1 hiera-tiny, fp32, one
thread, 512 px; figures and machine in benchmarks/README.md). A computer's own speed is found
by timing a small fp32 matrix product at torch's thread count (``machine_factor``; a few tens
of milliseconds, once per process) against the same product on the machine that measured the
costs, so the guess follows the computer it runs on. CPUs that do bf16 in hardware train under
bf16 autocast (``TrainConfig.use_bf16``) and segment in bf16: ``BF16_FACTOR``.

The Train dialog's estimate (``training_estimate``): what earlier runs on this computer measured
per step (a table the dialog keeps in its settings: ``step_table``, ``remember_step_seconds``),
else this first guess as a range; ``estimate_text`` says it in words.
"""

from __future__ import annotations

import json
import math
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

#: CPU seconds per structure at 512 px, SAM2.1 tiny, fp32, one thread, on the measuring machine:
#: a training step (forward and backward of one palindrome), a pseudo-label remake per unlabeled
#: photo, and segmenting a specimen (its encoder pass is ``ENCODER_SECONDS``). The step is 2.58 s
#: measured with SAM2's memory-attention dropout, times 10.01 / 11.10, what turning it off
#: (``TrainConfig.memory_dropout``) measured (a 2-core AMD EPYC with bf16 hidden from torch,
#: ``ONEDNN_MAX_CPU_ISA=AVX2``, one thread, otherwise idle).
STEP_SECONDS = 2.33
REMAKE_SECONDS = 0.82
DECODE_SECONDS = 0.34
ENCODER_SECONDS = 0.93
#: Starting a process: importing torch and SAM2, building the model and loading its weights.
SETUP_SECONDS = 2.5
#: The probe's seconds on the measuring machine (fp32, one thread, AVX2: ONEDNN_MAX_CPU_ISA=AVX2; CPU
#: seconds, like the costs above, since that machine was shared while they were measured).
REFERENCE_PROBE_SECONDS = 0.064
#: Time under bf16 over fp32 where the CPU has native bf16 (AVX512-BF16 / AMX) or on a GPU.
BF16_FACTOR = 0.45
#: Cost against 512 px: attention grows faster than the pixel count.
SIZE_FACTOR = {256: 0.23, 512: 1.0, 1024: 6.3}
#: Cost against SAM2.1 tiny.
MODEL_FACTOR = {"mini": 0.07, "beetle": 0.9, "tiny": 1.0, "small": 1.3, "base_plus": 2.2, "large": 5.0}
#: A GPU against one CPU thread (rough: an H100 figure, never measured here).
GPU_FACTOR = 0.01


def size_factor(size: int) -> float:
    """Cost at ``size`` px against 512 px (interpolated in the log between measured sizes)."""
    sizes = sorted(SIZE_FACTOR)
    if size <= sizes[0]:
        return SIZE_FACTOR[sizes[0]] * (size / sizes[0]) ** 2
    if size >= sizes[-1]:
        return SIZE_FACTOR[sizes[-1]] * (size / sizes[-1]) ** 2.6
    lo = max(s for s in sizes if s <= size)
    hi = min(s for s in sizes if s >= size)
    if lo == hi:
        return SIZE_FACTOR[lo]
    t = math.log(size / lo) / math.log(hi / lo)
    return math.exp((1 - t) * math.log(SIZE_FACTOR[lo]) + t * math.log(SIZE_FACTOR[hi]))


@lru_cache(maxsize=1)
def machine_factor() -> float:
    """This computer's time for the costs above over the measuring machine's (fp32, torch's
    thread count): the best of a few runs of a fixed matrix product."""
    import torch

    a, b = torch.randn(256, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)  # warm up
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(10):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return best / REFERENCE_PROBE_SECONDS


def _scale(size: int, model_size: str, gpu: bool, bf16: bool) -> float:
    factor = size_factor(size) * MODEL_FACTOR.get(model_size, 1.0)
    if gpu:
        return factor * GPU_FACTOR
    return factor * machine_factor() * (BF16_FACTOR if bf16 else 1.0)


def training_seconds(steps: int, size: int, gpu: bool, model_size: str = "tiny", structures: int = 5,
                     unlabeled: int = 100, pseudo: bool = True, bf16: bool = False) -> float:
    """Seconds for a training run with the default schedule (``engine.trainer.TrainConfig``):
    its steps, its pseudo-label remakes (``pseudo``) and its validations."""
    from descriptron_sam2pal.engine.pseudo_labels import MAX_IMAGES
    from descriptron_sam2pal.engine.trainer import TrainConfig

    config = TrainConfig(steps=steps)
    unit = _scale(size, model_size, gpu, bf16)
    scale = unit * max(1, structures)
    trained = len(config.step_structures(max(1, structures), 0))  # the structures a step trains
    seconds = steps * STEP_SECONDS * unit * trained
    validations = 1 + steps // max(1, config.validate_every)
    seconds += validations * config.val_images * DECODE_SECONDS * scale  # held-out photos segmented
    if pseudo:
        remakes = math.ceil(steps / config.pseudo_every)
        seconds += remakes * min(unlabeled, MAX_IMAGES) * REMAKE_SECONDS * scale
    encoder = ENCODER_SECONDS * unit
    return seconds + (unlabeled + 1) * encoder + SETUP_SECONDS * machine_factor()  # each image encoded once


def segmenting_seconds(images: int, size: int, gpu: bool, model_size: str = "tiny", structures: int = 5,
                       bf16: bool = False, confidence: bool = False) -> float:
    """Seconds to segment ``images`` specimens (one encoder pass each, then every structure)."""
    scale = _scale(size, model_size, gpu, bf16)
    per_image = ENCODER_SECONDS + DECODE_SECONDS * max(1, structures) * (2.2 if confidence else 1)
    return images * per_image * scale + SETUP_SECONDS * machine_factor()


# ------------------------------------------------------------------ the Train dialog's estimate


def model_size_name(choice: str | None) -> str:
    """The ``MODEL_FACTOR`` name of a checkpoint choice (``jobs.models``): the demo models by
    name, a SAM2 checkpoint by its config's size, ``tiny`` when unknown."""
    from descriptron_sam2pal.jobs.models import BEETLE_DEMO_CHOICE, DEMO_CHOICE

    if choice == DEMO_CHOICE:
        return "mini"
    if choice == BEETLE_DEMO_CHOICE:
        return "beetle"
    from descriptron_sam2pal.model.configs import config_from_file_name, config_info

    config = config_from_file_name(Path(choice).name) if choice else None
    info = config_info(config) if config else None
    return info.size if info else "tiny"


def estimate_seconds(steps: int, size: int, gpu: bool, model_size: str = "tiny", structures: int = 5,
                     unlabeled: int = 100, pseudo: bool = True) -> float:
    """A first guess for a training run on this computer (``training_seconds``, in bf16 where
    this CPU does bf16 in hardware)."""
    from descriptron_sam2pal.model.device import cpu_has_native_bf16

    return training_seconds(steps, size, gpu, model_size, structures=structures, unlabeled=unlabeled,
                            pseudo=pseudo, bf16=not gpu and cpu_has_native_bf16())


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2026"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


def step_key(model_size: str, gpu: bool, pseudo: bool) -> str:
    """Which runs' step times apply: ``<model>|<cpu|gpu>[+pseudo]``."""
    return f"{model_size}|{'gpu' if gpu else 'cpu'}{'+pseudo' if pseudo else ''}"


def step_table(text: str | None) -> dict:
    """The saved table ``{"<step_key>|<size>": median seconds per training step}`` (empty when
    unreadable)."""
    try:
        table = json.loads(text or "{}")
    except ValueError:
        return {}
    return table if isinstance(table, dict) else {}


def measured_step_seconds(table: dict, key: str) -> dict[int, float]:
    """{image size: seconds per training step} measured by earlier runs of this ``step_key``."""
    prefix = key + "|"
    return {int(k[len(prefix):]): float(v) for k, v in table.items() if k.startswith(prefix)}


def remember_step_seconds(table: dict, key: str, history: list[dict], size: int) -> bool:
    """Put a run's median step time, plus its pseudo-label remakes spread over its steps, into
    ``table`` (from the run's ``history``), so the next estimate is measured, not guessed.
    False (and ``table`` unchanged) when the run has too few steps to tell."""
    seconds = sorted(e["seconds"] for e in history if isinstance(e.get("seconds"), (int, float)))
    if len(seconds) < 3:
        return False
    remakes = sum(e["pseudo_seconds"] for e in history if isinstance(e.get("pseudo_seconds"), (int, float)))
    table[f"{key}|{size}"] = seconds[len(seconds) // 2] + remakes / len(seconds)
    return True


def training_estimate(steps: int, size: int, measured: dict[int, float],
                      first_guess: Callable[[], float]) -> tuple[float, float, str]:
    """(low, high, how it was found) seconds for ``steps`` at ``size`` px: what a run at this size
    measured here, else scaled from the nearest size measured here, else a range around
    ``first_guess()`` (``estimate_seconds``; called only then)."""
    if size in measured:
        s = steps * measured[size]
        return s, s, "measured on this computer"
    if measured:
        near = min(measured, key=lambda m: abs(m - size))
        s = steps * measured[near] * (size / near) ** 2
        return 0.8 * s, 1.5 * s, f"from a run at {near} px on this computer"
    s = first_guess()
    return 0.75 * s, 1.3 * s, "a first guess for this computer, until a run here measures it"


def estimate_text(steps: int, size: int, gpu: bool, estimate: tuple[float, float, str],
                  stops_early: bool = False) -> str:
    """The estimate in words, with the settings it is for (``stops_early``: the run may stop
    before its last step, ``TrainConfig.stop_after``, so the estimate is for all of them)."""
    low, high, how = estimate
    where = "with the GPU" if gpu else "on the CPU"
    when = (f"about {format_duration(low)}" if low == high
            else f"{format_duration(low)} to {format_duration(high)}")
    early = "; less if it stops early" if stops_early else ""
    return f"{steps} steps at {size} px {where}: {when} ({how}), plus reading the images{early}"
