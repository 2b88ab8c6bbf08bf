"""The SAM2 architectures we know, Meta's public checkpoints, and recognising
an architecture from a checkpoint's state dict.

A checkpoint file name is only a hint (a fast path for listing files); the
state dict is the proof: ``detect_config`` reads facts that differ between
architectures (checked by instantiating every config once and comparing state
dicts):

- SAM2.1 adds ``no_obj_embed_spatial`` and ``obj_ptr_tpos_proj.{weight,bias}``
  to SAM2 (all other keys and shapes are identical between the two families).
- The Hiera trunk's embed dim (``image_encoder.trunk.patch_embed.proj.weight``
  dim 0) and number of blocks tell the size apart: tiny 96/12, small 96/16,
  base_plus 112/24, large 144/48; our mini test model 32/5; our beetle
  test-bed model 32/10.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Mapping

from descriptron_sam2pal import UserError

MINI_CONFIG = "sam2pal_mini"  # our tiny test/demo architecture (resources/configs)
BEETLE_CONFIG = "sam2pal_beetle"  # the beetle test-bed / demo architecture (resources/configs)
#: Configs shipped in descriptron_sam2pal/resources/configs (found by name).
PACKAGED_CONFIGS = (MINI_CONFIG, BEETLE_CONFIG)


@dataclass(frozen=True)
class ConfigInfo:
    """One known SAM2 architecture."""

    name: str  # config name as build_model takes it ("configs/sam2.1/sam2.1_hiera_t.yaml")
    family: str  # "SAM2" or "SAM2.1"
    size: str  # "tiny", "small", "base_plus", "large" or "mini"
    trunk_embed_dim: int
    trunk_blocks: int

    @property
    def label(self) -> str:
        """Human name, e.g. "SAM2.1 hiera-tiny"."""
        if self.size == "mini":
            return f"{self.family} mini test model"
        if self.size == "beetle":
            return f"{self.family} beetle demo model"
        return f"{self.family} hiera-{self.size}"


_SIZES = {  # size -> (config file suffix, trunk embed dim, trunk blocks)
    "tiny": ("t", 96, 12),
    "small": ("s", 96, 16),
    "base_plus": ("b+", 112, 24),
    "large": ("l", 144, 48),
}


def _known_configs() -> dict[str, ConfigInfo]:
    configs = {}
    for family, folder, prefix in (("SAM2", "sam2", "sam2_"), ("SAM2.1", "sam2.1", "sam2.1_")):
        for size, (suffix, dim, blocks) in _SIZES.items():
            name = f"configs/{folder}/{prefix}hiera_{suffix}.yaml"
            configs[name] = ConfigInfo(name, family, size, dim, blocks)
    # Our mini model is SAM2.1-shaped (see resources/configs/sam2pal_mini.yaml).
    configs[MINI_CONFIG] = ConfigInfo(MINI_CONFIG, "SAM2.1", "mini", 32, 5)
    # The beetle test-bed model (resources/configs/sam2pal_beetle.yaml, benchmarks/testbed).
    configs[BEETLE_CONFIG] = ConfigInfo(BEETLE_CONFIG, "SAM2.1", "beetle", 32, 10)
    return configs


KNOWN_CONFIGS: dict[str, ConfigInfo] = _known_configs()


@dataclass(frozen=True)
class KnownCheckpoint:
    """One of Meta's public SAM2 checkpoints."""

    file_name: str
    url: str
    config: str  # a KNOWN_CONFIGS name
    approx_mb: int  # for display only; the download checks the server's length


_META_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2"
_APPROX_MB = {"tiny": 156, "small": 184, "base_plus": 324, "large": 898}


def _known_checkpoints() -> dict[str, KnownCheckpoint]:
    table = {}
    for _family, release, prefix, folder in (("SAM2", "072824", "sam2_", "sam2"),
                                             ("SAM2.1", "092824", "sam2.1_", "sam2.1")):
        for size, (suffix, _, _) in _SIZES.items():
            file_name = f"{prefix}hiera_{size}.pt"
            table[file_name] = KnownCheckpoint(
                file_name, f"{_META_BASE}/{release}/{file_name}",
                f"configs/{folder}/{prefix}hiera_{suffix}.yaml", _APPROX_MB[size])
    return table


KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = _known_checkpoints()


def canonical_config_name(config: str) -> str:
    """The KNOWN_CONFIGS name for the spellings users type ("sam2.1_hiera_t",
    "sam2.1_hiera_t.yaml", "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2pal_mini");
    anything else (a yaml file of one's own) is returned unchanged."""
    text = str(config).replace("\\", "/")
    if text in KNOWN_CONFIGS:
        return text
    stem = PurePath(text).name
    if stem.endswith(".yaml"):
        stem = stem[: -len(".yaml")]
    for name in KNOWN_CONFIGS:
        known_stem = PurePath(name).name.removesuffix(".yaml")
        # A bare name, or a path inside the sam2 package's configs folder.
        if stem == known_stem and (text in (stem, stem + ".yaml") or text.endswith("/" + name)):
            return name
    return text


def config_info(config: str) -> ConfigInfo | None:
    """The known architecture named by ``config`` (any spelling), or None."""
    return KNOWN_CONFIGS.get(canonical_config_name(config))


def config_from_file_name(file_name: str | PurePath) -> str | None:
    """Fast path: the config of one of Meta's checkpoint file names, or None."""
    known = KNOWN_CHECKPOINTS.get(PurePath(str(file_name)).name)
    return known.config if known else None


def describe_config(config: str) -> str:
    """"SAM2.1 hiera-tiny (configs/sam2.1/sam2.1_hiera_t.yaml)" or the name itself."""
    info = config_info(config)
    return f"{info.label} ({info.name})" if info else str(config)


_BLOCK_KEY = re.compile(r"image_encoder\.trunk\.blocks\.(\d+)\.")


def architecture_facts(state_dict: Mapping[str, object]) -> tuple[str, int, int]:
    """(family, trunk embed dim, trunk blocks) read from a SAM2 state dict.

    Raises UserError when the dict does not look like a SAM2 model at all."""
    patch = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    blocks = {int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.match(key))}
    if patch is None or not blocks or "memory_attention.layers.0.self_attn.q_proj.weight" not in state_dict:
        raise UserError("the checkpoint does not contain a SAM2 model (no Hiera image encoder / "
                        "memory attention weights); use one of Meta's SAM2 or SAM2.1 checkpoints")
    family = "SAM2.1" if ("obj_ptr_tpos_proj.weight" in state_dict
                          or "no_obj_embed_spatial" in state_dict) else "SAM2"
    return family, int(patch.shape[0]), max(blocks) + 1


def detect_config(state_dict: Mapping[str, object]) -> str | None:
    """The KNOWN_CONFIGS name whose architecture the state dict has, or None
    when it is a SAM2 model of an architecture we do not know (a config of
    one's own). Raises UserError when it is not a SAM2 state dict."""
    family, dim, blocks = architecture_facts(state_dict)
    for info in KNOWN_CONFIGS.values():
        if (info.family, info.trunk_embed_dim, info.trunk_blocks) == (family, dim, blocks):
            return info.name
    return None
