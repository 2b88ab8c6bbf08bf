"""Build SAM2 / SAM2.1 models from a config (packaged or a file) and a checkpoint.

The config is chosen from the checkpoint's weights when not given; a given
config that disagrees with the weights is refused with a message saying what
to pass instead (see configs.detect_config).
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import torch

from descriptron_sam2pal import UserError

from descriptron_sam2pal.model.configs import (KNOWN_CONFIGS, MINI_CONFIG, PACKAGED_CONFIGS,
                                               canonical_config_name, config_info, describe_config,
                                               detect_config)
from descriptron_sam2pal.model.device import resolve_device

__all__ = ["MINI_CONFIG", "LoadedModel", "build_model", "load_checkpoint_state",
           "packaged_config_path", "resolve_config", "config_path"]


def packaged_config_path(name: str) -> Path:
    """Path of a config shipped in descriptron_sam2pal/resources/configs."""
    return Path(str(resources.files("descriptron_sam2pal") / "resources" / "configs" / f"{name}.yaml"))


def config_path(config: str) -> Path:
    """The yaml file for ``config``: a packaged name (``sam2pal_mini``), a name in
    the sam2 package (``configs/sam2.1/sam2.1_hiera_t.yaml``, ``sam2.1_hiera_t``)
    or a yaml path of one's own."""
    name = canonical_config_name(config)
    if name in PACKAGED_CONFIGS:
        return packaged_config_path(name)
    if name.startswith("configs/") and config_info(name) is not None:
        import sam2
        return Path(sam2.__file__).parent / name
    path = Path(config).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise UserError(f"unknown SAM2 config {config!r}: not a yaml file and not one of "
                    f"{', '.join(KNOWN_CONFIGS)}")


@dataclass
class LoadedModel:
    sam: "torch.nn.Module"  # sam2.modeling.sam2_base.SAM2Base
    config_name: str  # canonical (configs.KNOWN_CONFIGS key) or the yaml path given
    checkpoint_hash: str | None  # sha256 of the checkpoint file, None for random weights
    device: torch.device
    checkpoint_path: Path | None = None
    # Inference arithmetic (encoder, propagation, clicks): "fp32", "bf16" or "auto" (bf16 on
    # CUDA and on CPUs with native bf16, fp32 elsewhere: device.resolve_precision).
    precision: str = "auto"

    @property
    def image_size(self) -> int:
        return int(self.sam.image_size)

    @property
    def resolved_precision(self) -> str:
        """``precision`` with ``auto`` resolved for this device: "fp32" or "bf16"."""
        from descriptron_sam2pal.model.device import resolve_precision

        return resolve_precision(self.device, self.precision)

    def autocast(self):
        """The autocast context for inference (encoder, propagation, clicks) at ``precision``."""
        from descriptron_sam2pal.model.device import autocast_context

        return autocast_context(self.device, self.resolved_precision == "bf16")

    def describe(self) -> str:
        """"SAM2.1 hiera-tiny (configs/...) with checkpoint sha256 1a2b3c4d5e6f (file.pt)"."""
        base = describe_base(self.checkpoint_hash, self.checkpoint_path)
        return f"{describe_config(self.config_name)} with {base}"


def describe_base(checkpoint_hash: str | None, checkpoint_name: str | Path | None) -> str:
    if checkpoint_hash is None:
        return "random weights (no checkpoint)"
    name = f" ({Path(checkpoint_name).name})" if checkpoint_name else ""
    return f"checkpoint sha256 {checkpoint_hash[:12]}{name}"


def load_torch_file(path: Path, name: str, kind: str, advice: str = "") -> object:
    """``torch.load`` (CPU, weights only) of a file we were given; a missing or unreadable
    file is a UserError saying which ``name`` (checkpoint, adapter file) and why."""
    if not path.is_file():
        raise UserError(f"{name} {path} does not exist")
    if path.stat().st_size == 0:
        raise UserError(f"{name} {path} is an empty file (an interrupted download or copy?){advice}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError,
            KeyError, IndexError, TypeError, AttributeError) as exc:
        # A text or foreign file fails deep inside pickle (a KeyError for a text file); say what it is.
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        why = ("it holds Python objects, not only weights: not a file this program or Meta wrote"
               if "Weights only load failed" in first else
               f"it is not a PyTorch file ({type(exc).__name__}: {first[:120]})")
        raise UserError(f"{path} is not a readable {kind}: {why}{advice}") from exc


def load_checkpoint_state(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a SAM2 checkpoint file (``{"model": state_dict}``), on CPU.

    UserError for a missing file, a file that is not a PyTorch checkpoint, or
    one without a ``"model"`` entry (e.g. an adapter file passed by mistake)."""
    path = Path(checkpoint).expanduser()
    data = load_torch_file(path, "checkpoint", "PyTorch checkpoint",
                           "; it may be incomplete or corrupt: download it again")
    if isinstance(data, dict) and data.get("format") == "sam2pal-adapter":
        raise UserError(f"{path} is a SAM2-PAL adapter, not a SAM2 checkpoint; give it as the "
                        "adapter and the SAM2 checkpoint it was trained on as the checkpoint")
    if not isinstance(data, dict) or not isinstance(data.get("model"), Mapping):
        keys = ", ".join(map(str, list(data)[:5])) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path} is a PyTorch file but not a SAM2 checkpoint: it has no 'model' "
                        f"entry (found: {keys}); use one of Meta's SAM2 / SAM2.1 checkpoints")
    return dict(data["model"])


def resolve_config(state_dict: Mapping[str, torch.Tensor], config: str | None = None,
                   checkpoint_name: str | Path = "the checkpoint") -> str:
    """The config to build for these weights: the detected one, or ``config``
    after checking it agrees with the weights (UserError otherwise)."""
    detected = detect_config(state_dict)
    name = Path(str(checkpoint_name)).name
    if config is None:
        if detected is None:
            raise UserError(f"{name} holds a SAM2 model of an architecture this plugin does not "
                            "know; pass its config yaml with --config")
        return detected
    given = canonical_config_name(config)
    if detected is not None and config_info(given) is not None and given != detected:
        raise UserError(f"checkpoint {name} is a {describe_config(detected)} model but config "
                        f"{config} ({config_info(given).label}) was given; drop --config (it is chosen "
                        f"from the checkpoint) or pass --config {detected}")
    return given


def _check_keys(sam: torch.nn.Module, state: Mapping[str, torch.Tensor], config: str, name: str) -> None:
    """Strict-load check with a message a user can act on (not torch's key dump)."""
    own = sam.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(v)} {what} (e.g. {', '.join(v[:3])})"
                 for v, what in ((missing, "missing keys"), (unexpected, "unexpected keys"),
                                 (wrong, "shape mismatches")) if v]
        raise UserError(f"checkpoint {name} does not fit config {config}: {'; '.join(parts)}; "
                        "use the config that matches the checkpoint (leave --config out to "
                        "choose it from the checkpoint)")


def build_model(config: str | None = None, checkpoint: str | Path | None = None,
                device: str | torch.device = "cpu", image_size: int | None = None,
                seed: int | None = None) -> LoadedModel:
    """Instantiate SAM2 and load ``checkpoint`` strictly.

    ``config``: a packaged name (``sam2pal_mini``), a sam2 config name
    (``configs/sam2.1/sam2.1_hiera_t.yaml`` or ``sam2.1_hiera_t``), a yaml path,
    or None to choose it from the checkpoint. ``device``: as resolve_device
    (``auto``/``cuda``/``mps``/``cpu``). ``image_size``: a multiple of 32 to
    override the config's input size. ``seed`` seeds the random init (only
    meaningful without a checkpoint). The model is returned in eval mode.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from descriptron_sam2pal.model.attention import install as install_attention

    install_attention()
    state = None
    ckpt_path = None
    if checkpoint is not None:
        ckpt_path = Path(checkpoint).expanduser()
        state = load_checkpoint_state(ckpt_path)
        config = resolve_config(state, config, ckpt_path)
    elif config is None:
        raise UserError("no SAM2 checkpoint and no config given; pass --checkpoint "
                        "(or a config for a randomly initialised model)")
    if image_size is not None and (int(image_size) % 32 or int(image_size) < 64):
        raise UserError(f"image size {image_size} is not supported: SAM2 needs a multiple of 32 "
                        "(e.g. 256, 512, 1024)")
    torch_device = resolve_device(device)
    yaml_path = config_path(config)
    try:
        cfg = OmegaConf.load(yaml_path)
        if not isinstance(cfg.get("model"), Mapping) or "_target_" not in cfg.model:
            raise ValueError("it has no model: section with a _target_")
        if image_size is not None:
            # Must be set before instantiation: the prompt encoder sizes itself from it.
            cfg.model.image_size = int(image_size)
        if seed is not None:
            torch.manual_seed(seed)
        sam = instantiate(cfg.model, _recursive_=True)
    except Exception as exc:  # noqa: BLE001 - yaml, OmegaConf and hydra each raise their own kinds
        if isinstance(exc, UserError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"the SAM2 config {yaml_path} cannot be used ({type(exc).__name__}: {first}); "
                        "leave --config out to choose it from the checkpoint, or give one of SAM2's "
                        "configs") from exc
    name = canonical_config_name(config)
    ckpt_hash = None
    if state is not None:
        from descriptron_sam2pal.model.checkpoints import checkpoint_sha256
        _check_keys(sam, state, name, ckpt_path.name)
        sam.load_state_dict(state, strict=True)
        ckpt_hash = checkpoint_sha256(ckpt_path)
    sam.to(torch_device).eval()
    return LoadedModel(sam=sam, config_name=name, checkpoint_hash=ckpt_hash,
                       device=torch_device, checkpoint_path=ckpt_path)
