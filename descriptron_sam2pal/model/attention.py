"""Faster attention for bf16 on the CPU.

torch's CPU kernel of ``scaled_dot_product_attention`` does not use the CPU's
bf16 matrix units: with SAM2's memory-attention shapes (one head of 256
channels over 1024 tokens, 5 objects) it is no faster in bf16 than in fp32 and several
times slower than two bf16 matrix products and a softmax (measured: benchmarks/README.md,
"What the profile shows"). Memory attention is most of the cost
of propagation and training beyond the image encoder, so :func:`install`
routes the attention calls of ``sam2``'s transformer and Hiera modules through
:func:`attention`, which computes ``softmax(q k^T * scale) v`` explicitly for
bf16 tensors on the CPU (queries in chunks, so the score matrix stays below
:data:`SCORE_BUDGET_BYTES`; dropout on the attention weights, as torch's
math kernel does in training) and hands every other case to torch unchanged:
fp32 and CUDA results are bit-identical to plain ``sam2``.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as torch_functional

# sam2 modules that call F.scaled_dot_product_attention.
SAM2_ATTENTION_MODULES = ("sam2.modeling.sam.transformer", "sam2.modeling.backbones.hieradet")
SCORE_BUDGET_BYTES = 256 * 2**20  # per chunk of the (batch, heads, queries, keys) score matrix


def _explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None,
              dropout_p: float = 0.0) -> torch.Tensor:
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    kt = k.transpose(-2, -1)
    per_query = max(1, q[..., :1, :1].numel() * k.shape[-2] * q.element_size())
    rows = max(1, SCORE_BUDGET_BYTES // per_query)
    outs = []
    for start in range(0, q.shape[-2], rows):
        scores = torch.matmul(q[..., start:start + rows, :] * scale, kt)
        probs = scores.softmax(dim=-1)
        if dropout_p:
            probs = torch_functional.dropout(probs, p=dropout_p)
        outs.append(torch.matmul(probs, v))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask=None, dropout_p: float = 0.0,
              is_causal: bool = False, scale: float | None = None, **kwargs) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with an explicit bf16 path on the CPU."""
    explicit = (q.device.type == "cpu" and q.dtype == torch.bfloat16 and k.dtype == q.dtype
                and v.dtype == q.dtype and attn_mask is None and not is_causal and not kwargs)
    if explicit:
        return _explicit(q, k, v, scale, dropout_p)
    extra = dict(kwargs)
    if scale is not None:
        extra["scale"] = scale
    return torch_functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                                         is_causal=is_causal, **extra)


class _Functional:
    """``torch.nn.functional`` with :func:`attention` as its ``scaled_dot_product_attention``."""

    scaled_dot_product_attention = staticmethod(attention)

    def __getattr__(self, name: str):
        return getattr(torch_functional, name)


def install() -> None:
    """Route sam2's attention through :func:`attention` (idempotent)."""
    for name in SAM2_ATTENTION_MODULES:
        module = importlib.import_module(name)
        if not isinstance(getattr(module, "F", None), _Functional):
            module.F = _Functional()


def installed() -> bool:
    return all(isinstance(getattr(importlib.import_module(n), "F", None), _Functional)
               for n in SAM2_ATTENTION_MODULES)
