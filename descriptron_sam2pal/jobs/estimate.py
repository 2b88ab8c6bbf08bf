"""How long training and segmenting take, before anything ran: the Train dialog's first guess.

The costs below were measured by ``benchmarks/training_cost.py`` (SAM2.1 hiera-tiny, fp32, one
thread, 512 px; figures and machine in benchmarks/README.md). A computer's own speed is found
by timing a small fp32 matrix product at torch's thread count (``machine_factor``; a few tens
of milliseconds, once per process) against the same product on the machine that measured the
costs, so the guess follows the computer it runs on. CPUs that do bf16 in hardware train under
bf16 autocast (``TrainConfig.use_bf16``) and segment in bf16: ``BF16_FACTOR``. After a run, the
dialog uses what that run measured instead (``gui.train_dialog``).
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

#: CPU seconds per structure at 512 px, SAM2.1 tiny, fp32, one thread, on the measuring machine:
#: a training step (forward and backward of one palindrome), a pseudo-label remake per unlabeled
#: photo, and segmenting a specimen (its encoder pass is ``ENCODER_SECONDS``).
STEP_SECONDS = 2.58
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
    scale = _scale(size, model_size, gpu, bf16) * max(1, structures)
    seconds = steps * STEP_SECONDS * scale
    validations = 1 + steps // max(1, config.validate_every)
    seconds += validations * config.val_images * DECODE_SECONDS * scale  # held-out photos segmented
    if pseudo:
        remakes = math.ceil(steps / config.pseudo_every)
        seconds += remakes * min(unlabeled, MAX_IMAGES) * REMAKE_SECONDS * scale
    scale1 = _scale(size, model_size, gpu, bf16)
    encoder = ENCODER_SECONDS * scale1
    return seconds + (unlabeled + 1) * encoder + SETUP_SECONDS * machine_factor()  # each image encoded once


def segmenting_seconds(images: int, size: int, gpu: bool, model_size: str = "tiny", structures: int = 5,
                       bf16: bool = False, confidence: bool = False) -> float:
    """Seconds to segment ``images`` specimens (one encoder pass each, then every structure)."""
    scale = _scale(size, model_size, gpu, bf16)
    per_image = ENCODER_SECONDS + DECODE_SECONDS * max(1, structures) * (2.2 if confidence else 1)
    return images * per_image * scale + SETUP_SECONDS * machine_factor()
