"""Build SAM2 / SAM2.1 models from a config (packaged or a file) and a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

MINI_CONFIG = "sam2pal_mini"  # our tiny test/demo architecture (resources/configs)


def packaged_config_path(name: str) -> Path:
    """Path of a config shipped in descriptron_sam2pal/resources/configs."""
    return Path(str(resources.files("descriptron_sam2pal") / "resources" / "configs" / f"{name}.yaml"))


@dataclass
class LoadedModel:
    sam: "torch.nn.Module"  # sam2.modeling.sam2_base.SAM2Base
    config_name: str
    checkpoint_hash: str | None  # sha256 of the checkpoint file, None for random weights
    device: torch.device

    @property
    def image_size(self) -> int:
        return int(self.sam.image_size)


def build_model(config: str, checkpoint: str | Path | None = None, device: str = "cpu",
                image_size: int | None = None, seed: int | None = None) -> LoadedModel:
    """Instantiate SAM2 from ``config`` (packaged name like ``sam2pal_mini`` or
    ``configs/sam2.1/sam2.1_hiera_t.yaml``, or a yaml path) and load ``checkpoint``."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = Path(config)
    if not path.suffix:
        path = packaged_config_path(config)
    if not path.exists():
        import sam2
        path = Path(sam2.__file__).parent / config
    cfg = OmegaConf.load(path)
    if image_size is not None:
        # Must be set before instantiation: the prompt encoder sizes itself from it.
        cfg.model.image_size = int(image_size)
    if seed is not None:
        torch.manual_seed(seed)
    sam = instantiate(cfg.model, _recursive_=True)
    ckpt_hash = None
    if checkpoint is not None:
        from .checkpoints import file_sha256
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        sam.load_state_dict(state["model"], strict=True)
        ckpt_hash = file_sha256(checkpoint)
    sam.to(device).eval()
    return LoadedModel(sam=sam, config_name=str(config), checkpoint_hash=ckpt_hash, device=torch.device(device))
