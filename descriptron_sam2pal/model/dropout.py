"""SAM2's dropout in memory attention, set for training.

SAM2.1 trains its memory attention with dropout 0.1: on the attention weights of every
self- and cross-attention and on the residual and feed-forward branches of each layer. It
acts only in train mode, so it changes fine-tuning and nothing at inference. On the CPU it
is also what keeps torch's fused attention kernel away: with ``dropout_p > 0``
``scaled_dot_product_attention`` takes its math path, which keeps the full score matrix and
draws a random mask of the same size (``benchmarks/README.md``, "Where the default job's
time goes"). :func:`set_memory_dropout` sets one probability on all of them; LoRA's own
dropout (``TrainConfig.lora_dropout``) is left alone.
"""

from __future__ import annotations

from torch import nn


def memory_dropout_modules(sam: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, attribute) of every dropout probability in ``sam.memory_attention``: each
    ``nn.Dropout``'s ``p`` and each attention's ``dropout_p``, LoRA's dropouts excepted."""
    found = []
    for name, module in sam.memory_attention.named_modules():
        if "lora_" in name:
            continue
        if isinstance(module, nn.Dropout):
            found.append((module, "p"))
        elif isinstance(getattr(module, "dropout_p", None), float):
            found.append((module, "dropout_p"))
    return found


def set_memory_dropout(sam: nn.Module, p: float) -> dict[str, float]:
    """Set every memory-attention dropout probability of ``sam`` to ``p``; returns what they
    were ({"min": .., "max": ..}, empty when the model has none)."""
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"dropout must be in [0, 1) (got {p})")
    found = memory_dropout_modules(sam)
    before = [float(getattr(m, attr)) for m, attr in found]
    for module, attr in found:
        setattr(module, attr, float(p))
    return {"min": min(before), "max": max(before)} if before else {}
