"""The explicit bf16 attention on the CPU: same results as torch's kernel, and sam2 uses it."""

import pytest
import torch
import torch.nn.functional as F

from descriptron_sam2pal.model import attention
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model


def _qkv(dtype, b=3, heads=2, lq=50, lk=61, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, heads, n, d, generator=g).to(dtype) for n in (lq, lk, lk)]


def test_fp32_and_other_cases_are_torch_itself():
    q, k, v = _qkv(torch.float32)
    assert torch.equal(attention.attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    qb, kb, vb = _qkv(torch.bfloat16)
    mask = torch.zeros(50, 61, dtype=torch.bool)
    mask[:, :30] = True
    # A mask and causal attention go to torch's kernel (which implements them).
    assert torch.equal(attention.attention(qb, kb, vb, attn_mask=mask),
                       F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask))
    assert torch.equal(attention.attention(qb, kb, kb, is_causal=True),
                       F.scaled_dot_product_attention(qb, kb, kb, is_causal=True))


@pytest.mark.parametrize("scale", [None, 0.5])
def test_bf16_matches_fp32_attention(scale):
    q, k, v = _qkv(torch.float32)
    exact = F.scaled_dot_product_attention(q, k, v, scale=scale)
    got = attention.attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), scale=scale)
    assert got.dtype == torch.bfloat16 and got.shape == exact.shape
    assert (got.float() - exact).abs().max() < 0.05
    torch_bf16 = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), scale=scale)
    assert (got.float() - exact).abs().mean() <= 2 * (torch_bf16.float() - exact).abs().mean() + 1e-3


def test_query_chunks_give_the_same_result(monkeypatch):
    q, k, v = (t.bfloat16() for t in _qkv(torch.float32, lq=97))
    whole = attention.attention(q, k, v)
    # A budget of 7 query rows per chunk: 14 chunks, the last one short.
    monkeypatch.setattr(attention, "SCORE_BUDGET_BYTES", 7 * 3 * 2 * 61 * 2)
    chunked = attention.attention(q, k, v)
    assert torch.equal(whole, chunked)


def test_gradients_flow_through_the_explicit_path():
    q, k, v = (t.bfloat16().requires_grad_() for t in _qkv(torch.float32))
    attention.attention(q, k, v).float().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


def test_dropout_drops_attention_weights_in_the_explicit_path():
    q, k, v = (t.bfloat16() for t in _qkv(torch.float32))
    torch.manual_seed(0)
    a = attention.attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(1)
    b = attention.attention(q, k, v, dropout_p=0.5)
    plain = attention.attention(q, k, v)
    assert not torch.equal(a, b) and not torch.equal(a, plain)
    # Inverted dropout keeps the expectation: the mean over many draws approaches the plain output.
    torch.manual_seed(2)
    mean = torch.stack([attention.attention(q, k, v, dropout_p=0.5).float() for _ in range(200)]).mean(0)
    assert (mean - plain.float()).abs().mean() < 0.05


def test_build_model_routes_sam2_attention_through_it(monkeypatch):
    build_model(MINI_CONFIG, image_size=64, seed=0)
    assert attention.installed()
    calls = []
    real = attention._explicit
    monkeypatch.setattr(attention, "_explicit", lambda *a: calls.append(1) or real(*a))
    model = build_model(MINI_CONFIG, image_size=64, seed=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.sam.image_encoder(torch.zeros(1, 3, 64, 64))
    assert calls, "the Hiera trunk's attention did not go through the explicit bf16 path"
