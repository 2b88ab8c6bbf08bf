"""What is trained: LoRA adapters (peft) or full fine-tuning of the memory and
decoder modules; the image encoder always stays frozen.

LoRA (default) wraps every ``nn.Linear`` inside
- ``memory_attention`` (self / cross attention q,k,v,out projections (RoPEAttention)
  and the feed-forward linear1/linear2),
- ``memory_encoder`` (only the fuser's CXBlock pwconv1/pwconv2 are Linear; its
  mask downsampler and projections are convolutions and stay frozen),
- ``sam_mask_decoder`` (two-way transformer attention + MLPs, the output
  hypernetwork MLPs, the IoU head and the object-score head; conv_s0/conv_s1
  and the upscaling convolutions stay frozen).
Everything else is frozen; only the ``lora_A``/``lora_B`` weights train and are saved.

Full fine-tuning trains all parameters of those three modules (convolutions
and norms included) plus the small memory-path parameters of SAM2Base:
``obj_ptr_proj``, ``obj_ptr_tpos_proj`` (SAM2.1), ``maskmem_tpos_enc``,
``no_mem_embed``, ``no_mem_pos_enc``, ``no_obj_ptr``, ``no_obj_embed_spatial``.
The image encoder, prompt encoder and ``mask_downsample`` stay frozen (the
engine caches image features, which would go stale otherwise).
"""

from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import nn

from descriptron_sam2pal import UserError

LORA_MODULES = ("memory_attention", "memory_encoder", "sam_mask_decoder")
FULL_FINETUNE_MODULES = LORA_MODULES + ("obj_ptr_proj", "obj_ptr_tpos_proj")
FULL_FINETUNE_PARAMETERS = ("maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr",
                            "no_obj_embed_spatial")
ADAPTER_NAME = "default"
_STATE_ATTR = "_sam2pal_finetune"  # {"mode": "lora"|"full", "lora": {...}} set on the SAM2 module


def lora_target_names(sam: nn.Module) -> list[str]:
    """Full names of the nn.Linear layers LoRA wraps (see the module docstring);
    the same list before and after ``apply_lora``."""
    from peft.tuners.lora import LoraLayer

    names = []
    for module_name in LORA_MODULES:
        wrapped = ""  # inside a LoRA layer, its base_layer / lora_A / lora_B are not targets
        for sub_name, sub in getattr(sam, module_name).named_modules():
            if wrapped and sub_name.startswith(wrapped):
                continue
            if isinstance(sub, LoraLayer):
                wrapped = sub_name + "."
            if sub_name and isinstance(sub, (nn.Linear, LoraLayer)):
                names.append(f"{module_name}.{sub_name}")
    return names


def finetune_mode(sam: nn.Module) -> str | None:
    """"lora", "full", or None for a model prepared for neither."""
    return getattr(sam, _STATE_ATTR, {}).get("mode")


def lora_settings(sam: nn.Module) -> dict | None:
    """{"rank", "alpha", "dropout", "targets"} of the applied LoRA, else None."""
    state = getattr(sam, _STATE_ATTR, {})
    return dict(state["lora"]) if state.get("mode") == "lora" else None


def _refuse_if_prepared(sam: nn.Module, wanted: str) -> None:
    mode = finetune_mode(sam)
    if mode is not None:
        raise RuntimeError(f"this model is already prepared for {mode} fine-tuning; {wanted} needs "
                           "a freshly built model (applying it twice would wrap layers twice)")


def apply_lora(sam: nn.Module, rank: int = 8, alpha: float | None = None,
               dropout: float = 0.0) -> nn.Module:
    """Inject peft LoRA adapters (rank ``rank``, scale ``alpha / rank``; alpha
    defaults to ``rank``) in place and freeze everything else; returns ``sam``.
    A model can be prepared once: a second call raises RuntimeError."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    if int(rank) < 1:
        raise UserError(f"LoRA rank must be at least 1 (got {rank})")
    if not 0.0 <= float(dropout) < 1.0:
        raise UserError(f"LoRA dropout must be in [0, 1) (got {dropout})")
    _refuse_if_prepared(sam, "LoRA")
    if any(isinstance(m, LoraLayer) for m in sam.modules()):
        raise RuntimeError("this model already contains LoRA layers; build a fresh model")
    alpha = float(rank if alpha is None else alpha)
    targets = lora_target_names(sam)
    sam.requires_grad_(False)
    # A full-match regex of exact names: a list would be matched by suffix,
    # and peft shortens long lists to suffixes (which could reach other modules).
    pattern = "^(" + "|".join(re.escape(t) for t in targets) + ")$"
    config = LoraConfig(r=int(rank), lora_alpha=alpha, lora_dropout=float(dropout),
                        target_modules=pattern, bias="none")
    inject_adapter_in_model(config, sam, adapter_name=ADAPTER_NAME)
    wrapped = sorted(n for n, m in sam.named_modules() if isinstance(m, LoraLayer))
    if wrapped != sorted(targets):
        raise RuntimeError(f"peft wrapped {len(wrapped)} layers, expected {len(targets)}")
    for name, param in sam.named_parameters():
        param.requires_grad_("lora_" in name)
    setattr(sam, _STATE_ATTR, {"mode": "lora", "lora": {
        "rank": int(rank), "alpha": alpha, "dropout": float(dropout), "targets": targets}})
    return sam


def _full_parameter_names(sam: nn.Module) -> list[str]:
    prefixes = tuple(m + "." for m in FULL_FINETUNE_MODULES if hasattr(sam, m))
    return [n for n, _ in sam.named_parameters()
            if n.startswith(prefixes) or n in FULL_FINETUNE_PARAMETERS]


def enable_full_finetune(sam: nn.Module) -> nn.Module:
    """Make the memory / decoder modules and memory-path parameters trainable
    (see the module docstring), everything else frozen; returns ``sam``."""
    _refuse_if_prepared(sam, "full fine-tuning")
    sam.requires_grad_(False)
    names = set(_full_parameter_names(sam))
    for name, param in sam.named_parameters():
        param.requires_grad_(name in names)
    setattr(sam, _STATE_ATTR, {"mode": "full"})
    return sam


def trainable_parameters(sam: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should update."""
    return [p for p in sam.parameters() if p.requires_grad]


def trainable_state_dict(sam: nn.Module) -> dict[str, torch.Tensor]:
    """What a fine-tuned model adds to its base, as CPU tensors: the LoRA
    weights (peft's adapter-name-free keys) or, in full mode, the trained
    modules' parameters and buffers."""
    mode = finetune_mode(sam)
    if mode is None:
        raise RuntimeError("the model is prepared for neither LoRA nor full fine-tuning")
    return {k: v.detach().to("cpu", copy=True) for k, v in _trained_state(sam, mode).items()}


def _trained_state(sam: nn.Module, mode: str) -> dict[str, torch.Tensor]:
    """The live tensors that fine-tuning in ``mode`` changes (keys as saved)."""
    if mode == "lora":
        from peft import get_peft_model_state_dict
        return get_peft_model_state_dict(sam, adapter_name=ADAPTER_NAME)
    own = sam.state_dict()
    return {k: own[k] for k in _full_state_keys(sam)}


def _full_state_keys(sam: nn.Module) -> list[str]:
    prefixes = tuple(m + "." for m in FULL_FINETUNE_MODULES if hasattr(sam, m))
    return [k for k in sam.state_dict() if k.startswith(prefixes) or k in FULL_FINETUNE_PARAMETERS]


def load_trainable_state(sam: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Put a ``trainable_state_dict`` back; every key must fit exactly (UserError)."""
    mode = finetune_mode(sam)
    if mode is None:
        raise RuntimeError("apply_lora or enable_full_finetune before loading trained weights")
    _check_state(_trained_state(sam, mode), state, mode)
    with torch.no_grad():
        if mode == "lora":
            from peft import set_peft_model_state_dict
            set_peft_model_state_dict(sam, dict(state), adapter_name=ADAPTER_NAME)
        else:
            sam.load_state_dict(dict(state), strict=False)


def _check_state(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], mode: str) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(v)} {what} (e.g. {', '.join(v[:2])})" for v, what in
                 ((missing, "missing"), (unexpected, "unexpected"), (wrong, "of the wrong shape")) if v]
        raise UserError(f"the saved {mode} weights do not fit this model: {'; '.join(parts)} entries; "
                        "the adapter was made for another model or version")
