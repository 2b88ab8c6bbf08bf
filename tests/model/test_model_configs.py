"""Choosing the SAM2 config from a checkpoint, and refusing mismatches clearly."""

import shutil

import pytest
import torch

from descriptron_sam2pal import UserError
from descriptron_sam2pal.model.build import (MINI_CONFIG, build_model, load_checkpoint_state,
                                             packaged_config_path, resolve_config)
from descriptron_sam2pal.model.configs import (KNOWN_CHECKPOINTS, KNOWN_CONFIGS, PACKAGED_CONFIGS,
                                               canonical_config_name, config_from_file_name, config_info,
                                               detect_config)

REAL_CONFIGS = [name for name in KNOWN_CONFIGS if name not in PACKAGED_CONFIGS]


def _fake_state(info):
    """The keys detection reads, with the shapes a model of ``info`` has."""
    state = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(info.trunk_embed_dim, 3, 7, 7),
             "memory_attention.layers.0.self_attn.q_proj.weight": torch.zeros(1)}
    for i in range(info.trunk_blocks):
        state[f"image_encoder.trunk.blocks.{i}.norm1.weight"] = torch.zeros(1)
    if info.family == "SAM2.1":
        state["no_obj_embed_spatial"] = torch.zeros(1, 64)
        state["obj_ptr_tpos_proj.weight"] = torch.zeros(1)
    return state


def test_tables_cover_both_families_and_all_sizes():
    assert len(REAL_CONFIGS) == 8
    assert {(c.family, c.size) for c in KNOWN_CONFIGS.values()} == {
        (f, s) for f in ("SAM2", "SAM2.1") for s in ("tiny", "small", "base_plus", "large")
    } | {("SAM2.1", "mini"), ("SAM2.1", "beetle")}
    assert KNOWN_CHECKPOINTS["sam2_hiera_large.pt"].url == \
        "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt"
    assert KNOWN_CHECKPOINTS["sam2.1_hiera_tiny.pt"].url == \
        "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt"
    assert config_from_file_name("sam2.1_hiera_base_plus.pt") == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    assert config_from_file_name("/x/checkpoints/sam2_hiera_small.pt") == "configs/sam2/sam2_hiera_s.yaml"
    assert config_from_file_name("my_model.pt") is None
    for known in KNOWN_CHECKPOINTS.values():
        assert known.config in KNOWN_CONFIGS


@pytest.mark.parametrize("spelling", ["sam2.1_hiera_t", "sam2.1_hiera_t.yaml",
                                      "configs/sam2.1/sam2.1_hiera_t.yaml",
                                      "/venv/site-packages/sam2/configs/sam2.1/sam2.1_hiera_t.yaml"])
def test_config_spellings(spelling):
    assert canonical_config_name(spelling) == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert config_info(spelling).label == "SAM2.1 hiera-tiny"


def test_own_yaml_is_not_mistaken_for_a_known_config():
    assert (
        canonical_config_name("/data/my_configs/sam2.1_hiera_t.yaml")
        == "/data/my_configs/sam2.1_hiera_t.yaml"
    )
    assert config_info("/data/my_configs/sam2.1_hiera_t.yaml") is None


@pytest.mark.parametrize("name", list(KNOWN_CONFIGS))
def test_detection_facts_identify_every_config(name):
    assert detect_config(_fake_state(KNOWN_CONFIGS[name])) == name


@pytest.mark.parametrize("name", ["configs/sam2/sam2_hiera_t.yaml", "configs/sam2.1/sam2.1_hiera_t.yaml"])
def test_detection_on_instantiated_tiny_models(name):
    assert detect_config(build_model(name).sam.state_dict()) == name


@pytest.mark.slow
def test_detection_on_every_instantiated_config():
    for name in REAL_CONFIGS:
        model = build_model(name)
        assert detect_config(model.sam.state_dict()) == name
        del model


def test_mini_checkpoint_is_detected_and_built(mini_checkpoint):
    model = build_model(None, mini_checkpoint)
    assert model.config_name == MINI_CONFIG
    assert model.checkpoint_path == mini_checkpoint
    assert "sam2pal_mini" in model.describe() and model.checkpoint_hash[:12] in model.describe()


def test_explicit_matching_config_is_accepted(mini_checkpoint):
    assert build_model(MINI_CONFIG, mini_checkpoint).config_name == MINI_CONFIG


def test_mismatched_config_is_refused_with_advice(mini_checkpoint):
    with pytest.raises(UserError) as err:
        build_model("configs/sam2.1/sam2.1_hiera_t.yaml", mini_checkpoint)
    msg = str(err.value)
    assert "sam2pal_mini.pt" in msg and "drop --config" in msg and "--config sam2pal_mini" in msg
    assert "SAM2.1 hiera-tiny" not in msg.split("but")[0]


def test_sam2_vs_sam21_mismatch_is_caught():
    state = _fake_state(KNOWN_CONFIGS["configs/sam2/sam2_hiera_l.yaml"])
    with pytest.raises(
        UserError,
        match=r"is a SAM2 hiera-large .* but config sam2.1_hiera_l \(SAM2.1 hiera-large\) was given",
    ):
        resolve_config(state, "sam2.1_hiera_l", "sam2_hiera_large.pt")


def test_unknown_architecture_needs_a_config(mini_checkpoint, tmp_path):
    state = load_checkpoint_state(mini_checkpoint)
    for key in ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias"):
        del state[key]  # a SAM2 (not 2.1) mini: no known config has these facts
    path = tmp_path / "odd.pt"
    torch.save({"model": state}, path)
    with pytest.raises(UserError, match="does not know; pass its config yaml with --config"):
        build_model(None, path)
    with pytest.raises(
        UserError, match=r"does not fit config sam2pal_mini: 3 missing keys \(e.g. no_obj_embed"
    ):
        build_model(MINI_CONFIG, path)


def test_own_yaml_config_with_fitting_checkpoint(mini_checkpoint, tmp_path):
    own = tmp_path / "my_mini.yaml"
    shutil.copy(packaged_config_path(MINI_CONFIG), own)
    model = build_model(str(own), mini_checkpoint, image_size=128)
    assert model.config_name == str(own) and model.image_size == 128


def test_bad_checkpoint_files_are_clear_errors(tmp_path):
    text = tmp_path / "page.pt"
    text.write_text("<html>404</html>")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        build_model(None, text)
    no_model = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, no_model)
    with pytest.raises(UserError, match="no 'model' entry"):
        build_model(None, no_model)
    adapter = tmp_path / "adapter.pt"
    torch.save({"format": "sam2pal-adapter", "state": {}}, adapter)
    with pytest.raises(UserError, match="is a SAM2-PAL adapter"):
        build_model(None, adapter)
    other = tmp_path / "other.pt"
    torch.save({"model": {"backbone.weight": torch.zeros(2)}}, other)
    with pytest.raises(UserError, match="does not contain a SAM2 model"):
        build_model(None, other)
    with pytest.raises(UserError, match="does not exist"):
        build_model(None, tmp_path / "missing.pt")


def test_build_argument_errors():
    with pytest.raises(UserError, match="no SAM2 checkpoint and no config"):
        build_model()
    with pytest.raises(UserError, match="multiple of 32"):
        build_model(MINI_CONFIG, image_size=100)
    with pytest.raises(UserError, match="unknown SAM2 config"):
        build_model("sam3_hiera_t")
