"""Adapter files: the trained weights of a fine-tuned model plus what is needed
to use them safely (which base model, which structures, how trained).

The file is a ``torch.save`` dict of plain values and tensors (loadable with
``weights_only=True``); it is refused on a base model other than the one it
was trained on (config and checkpoint sha256 must both match).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from descriptron_sam2pal import UserError, __version__
from descriptron_sam2pal.atomic import atomic_write

from descriptron_sam2pal.model.build import LoadedModel, describe_base, load_torch_file
from descriptron_sam2pal.model.configs import config_info, describe_config
from descriptron_sam2pal.model.lora import (apply_lora, enable_full_finetune, finetune_mode, lora_settings,
                                            lora_target_names, load_trainable_state, trainable_state_dict)

ADAPTER_FORMAT = "sam2pal-adapter"
ADAPTER_FORMAT_VERSION = 1


@dataclass
class AdapterInfo:
    """Everything an adapter file records besides the weights."""

    config_name: str
    base_checkpoint_sha256: str | None  # None: trained on a random-weight base
    base_checkpoint_name: str | None  # file name of the base checkpoint, for messages
    mode: str  # "lora" or "full"
    lora: dict | None  # {"rank", "alpha", "dropout", "targets"} in LoRA mode
    image_size: int
    structures: list[str] = field(default_factory=list)
    template_ids: list = field(default_factory=list)
    hyperparameters: dict = field(default_factory=dict)
    package_version: str = __version__
    format_version: int = ADAPTER_FORMAT_VERSION
    created: str = ""

    def describe_base(self) -> str:
        return (f"{describe_config(self.config_name)} with "
                f"{describe_base(self.base_checkpoint_sha256, self.base_checkpoint_name)}")


def save_adapter(path: str | Path, model: LoadedModel, structures: list[str] | None = None,
                 template_ids: list | None = None, hyperparameters: dict | None = None) -> AdapterInfo:
    """Write ``model``'s trained weights (``trainable_state_dict``) and their
    provenance to ``path`` atomically (temporary file + rename)."""
    mode = finetune_mode(model.sam)
    if mode is None:
        raise RuntimeError("the model is prepared for neither LoRA nor full fine-tuning; nothing to save")
    try:  # plain JSON values only, so the file loads with weights_only=True
        structures, template_ids, hyperparameters = json.loads(json.dumps(
            [list(structures or []), list(template_ids or []), dict(hyperparameters or {})]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"adapter metadata must be plain JSON values: {exc}") from exc
    info = AdapterInfo(
        config_name=model.config_name, base_checkpoint_sha256=model.checkpoint_hash,
        base_checkpoint_name=model.checkpoint_path.name if model.checkpoint_path else None,
        mode=mode, lora=lora_settings(model.sam), image_size=model.image_size,
        structures=structures, template_ids=template_ids, hyperparameters=hyperparameters,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    payload = {"format": ADAPTER_FORMAT, **info.__dict__, "state": trainable_state_dict(model.sam)}
    atomic_write(path, lambda f: torch.save(payload, f))
    return info


def read_adapter(path: str | Path) -> tuple[AdapterInfo, dict[str, torch.Tensor]]:
    """(info, weights) of an adapter file, without touching any model.
    UserError when the file is not an adapter or is from a newer format."""
    path = Path(path).expanduser()
    data = load_torch_file(path, "adapter file", "SAM2-PAL adapter file")
    if not isinstance(data, dict) or data.get("format") != ADAPTER_FORMAT:
        hint = " (it looks like a SAM2 checkpoint: pass it as the checkpoint)" if (
            isinstance(data, dict) and "model" in data) else ""
        raise UserError(f"{path} is not a SAM2-PAL adapter file{hint}")
    version = data.get("format_version")
    if not isinstance(version, int) or version > ADAPTER_FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer descriptron-sam2pal "
                        f"({data.get('package_version')}, format {version}); upgrade this one "
                        f"({__version__}) to use it")
    known = AdapterInfo.__dataclass_fields__
    info = AdapterInfo(**{k: v for k, v in data.items() if k in known})
    return info, data["state"]


def check_adapter_base(info: AdapterInfo, model: LoadedModel) -> None:
    """UserError unless ``model`` is the base (config and checkpoint) ``info`` was trained on."""
    if info.config_name == model.config_name and info.base_checkpoint_sha256 == model.checkpoint_hash:
        return
    advice = []
    if info.base_checkpoint_sha256 != model.checkpoint_hash:
        advice.append(f"--checkpoint {info.base_checkpoint_name}" if info.base_checkpoint_name
                      else "no --checkpoint (the same randomly initialised test model)")
    # A known config follows from the checkpoint; name it when it does not.
    if info.config_name != model.config_name and (
            not advice or config_info(info.config_name) is None):
        advice.append(f"--config {info.config_name}")
    raise UserError(f"this adapter was trained on {info.describe_base()}; you loaded "
                    f"{model.describe()}; use {' and '.join(advice)}")


def load_adapter(path: str | Path, model: LoadedModel) -> AdapterInfo:
    """Check ``model`` is the adapter's base, prepare it (LoRA with the recorded
    settings, or full fine-tuning) and load the weights; returns the info.

    A model already prepared with the same LoRA settings is reused (the layers
    are not wrapped again); one prepared differently is refused."""
    info, state = read_adapter(path)
    check_adapter_base(info, model)
    sam = model.sam
    current = finetune_mode(sam)
    if info.mode == "lora":
        settings = info.lora or {}
        targets = list(settings.get("targets") or [])
        if targets != lora_target_names(sam):
            raise UserError(f"{path} adapts other layers than this version of the plugin "
                            "(it was probably made by another version); retrain the adapter")
        if current is None:
            apply_lora(sam, rank=settings["rank"], alpha=settings["alpha"], dropout=settings["dropout"])
        elif current != "lora" or lora_settings(sam) != settings:
            raise RuntimeError(f"the model is already prepared differently ({current}); load the "
                               "adapter onto a freshly built model")
    elif info.mode == "full":
        if current is None:
            enable_full_finetune(sam)
        elif current != "full":
            raise RuntimeError("the model has LoRA layers; load a full fine-tune onto a freshly built model")
    else:
        raise UserError(f"{path} has an unknown training mode {info.mode!r}")
    load_trainable_state(sam, state)
    sam.to(model.device)
    return info

