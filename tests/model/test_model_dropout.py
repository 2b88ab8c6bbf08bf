"""SAM2's memory-attention dropout set for training (model.dropout), on a real mini SAM2."""

import pytest
import torch
from torch import nn

from descriptron_sam2pal.model.build import MINI_CONFIG, build_model
from descriptron_sam2pal.model.dropout import memory_dropout_modules, set_memory_dropout
from descriptron_sam2pal.model.lora import apply_lora


@pytest.fixture
def sam(mini_checkpoint):
    return build_model(MINI_CONFIG, mini_checkpoint, image_size=128).sam


def _memory_attention_output(sam, seed=0):
    """One pass of memory attention in train mode over fixed random tokens."""
    gen = torch.Generator().manual_seed(seed)
    d = sam.memory_attention.d_model
    curr = torch.rand(64, 1, d, generator=gen)
    curr_pos = torch.rand(64, 1, d, generator=gen)
    mem_dim = sam.memory_attention.layers[0].cross_attn_image.kv_in_dim
    memory = torch.rand(64, 1, mem_dim, generator=gen)
    memory_pos = torch.rand(64, 1, mem_dim, generator=gen)
    return sam.memory_attention(curr=curr, curr_pos=curr_pos, memory=memory, memory_pos=memory_pos)


def test_it_finds_every_dropout_of_memory_attention_and_sets_it(sam):
    found = memory_dropout_modules(sam)
    layers = len(sam.memory_attention.layers)
    # per layer: 4 nn.Dropout (feed-forward, 3 residual branches) and 2 attentions
    assert len(found) == 6 * layers
    before = set_memory_dropout(sam, 0.0)
    assert before == {"min": 0.1, "max": 0.1}  # SAM2.1's configs
    assert all(getattr(m, attr) == 0.0 for m, attr in found)


def test_off_makes_train_mode_deterministic_and_equal_to_eval(sam):
    sam.train()
    torch.manual_seed(1)
    a = _memory_attention_output(sam)
    torch.manual_seed(2)
    b = _memory_attention_output(sam)
    assert not torch.allclose(a, b)  # SAM2's dropout draws a new mask each pass
    set_memory_dropout(sam, 0.0)
    torch.manual_seed(1)
    a = _memory_attention_output(sam)
    torch.manual_seed(2)
    b = _memory_attention_output(sam)
    sam.eval()
    c = _memory_attention_output(sam)
    assert torch.equal(a, b)
    assert torch.allclose(a, c, atol=1e-6)


def test_lora_dropout_is_left_alone_and_bad_values_refused(sam):
    apply_lora(sam, rank=4, alpha=8, dropout=0.3)
    set_memory_dropout(sam, 0.0)
    lora_drops = [m for n, m in sam.named_modules() if "lora_dropout" in n and isinstance(m, nn.Dropout)]
    assert lora_drops and all(m.p == 0.3 for m in lora_drops)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        set_memory_dropout(sam, 1.0)
