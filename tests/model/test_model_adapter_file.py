"""Adapter files record their base model and are refused on another one."""

import shutil

import pytest
import torch

import descriptron_sam2pal
from descriptron_sam2pal import UserError
from descriptron_sam2pal.model.adapter_file import (ADAPTER_FORMAT_VERSION, load_adapter, read_adapter,
                                                    save_adapter)
from descriptron_sam2pal.model.build import MINI_CONFIG, build_model, packaged_config_path
from descriptron_sam2pal.model.lora import (
    apply_lora,
    enable_full_finetune,
    finetune_mode,
    trainable_state_dict,
)


def _mini(checkpoint=None, **kw):
    return build_model(MINI_CONFIG, checkpoint, image_size=128, seed=0, **kw)


def _lora_adapter(checkpoint, path, rank=4):
    model = _mini(checkpoint)
    apply_lora(model.sam, rank=rank, alpha=8, dropout=0.1)
    with torch.no_grad():
        for name, param in model.sam.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    info = save_adapter(path, model, structures=["head", "eye"], template_ids=[3, "img_7"],
                        hyperparameters={"lr": 1e-4, "steps": 200})
    return model, info


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_adapter_records_what_it_needs(mini_checkpoint, tmp_path):
    path = tmp_path / "out" / "head.sam2pal"
    model, _ = _lora_adapter(mini_checkpoint, path)
    info, state = read_adapter(path)
    assert info.format_version == ADAPTER_FORMAT_VERSION
    assert info.package_version == descriptron_sam2pal.__version__
    assert info.base_checkpoint_sha256 == model.checkpoint_hash
    assert info.base_checkpoint_name == "sam2pal_mini.pt"
    assert info.config_name == MINI_CONFIG and info.image_size == 128 and info.mode == "lora"
    assert {k: info.lora[k] for k in ("rank", "alpha", "dropout")} == {
        "rank": 4,
        "alpha": 8.0,
        "dropout": 0.1,
    }
    assert len(info.lora["targets"]) == 62
    assert info.structures == ["head", "eye"] and info.template_ids == [3, "img_7"]
    assert info.hyperparameters == {"lr": 1e-4, "steps": 200} and info.created
    assert all("lora_" in k for k in state)
    assert sorted(p.name for p in path.parent.iterdir()) == ["head.sam2pal"]  # no temporary left
    assert path.stat().st_size < 1_000_000


def test_load_adapter_reproduces_the_trained_model(mini_checkpoint, tmp_path):
    path = tmp_path / "a.sam2pal"
    trained, _ = _lora_adapter(mini_checkpoint, path)
    fresh = _mini(mini_checkpoint)
    info = load_adapter(path, fresh)
    assert info.structures == ["head", "eye"] and finetune_mode(fresh.sam) == "lora"
    assert _states_equal(trainable_state_dict(fresh.sam), trainable_state_dict(trained.sam))
    # Loading again onto the same prepared model reuses its LoRA layers.
    load_adapter(path, fresh)
    assert type(fresh.sam.memory_attention.layers[0].self_attn.q_proj.base_layer) is torch.nn.Linear


def test_full_finetune_adapter_round_trip(mini_checkpoint, tmp_path):
    model = _mini(mini_checkpoint)
    enable_full_finetune(model.sam)
    with torch.no_grad():
        model.sam.sam_mask_decoder.conv_s0.weight.add_(1.0)
    save_adapter(tmp_path / "full.sam2pal", model)
    fresh = _mini(mini_checkpoint)
    assert load_adapter(tmp_path / "full.sam2pal", fresh).mode == "full"
    assert torch.equal(fresh.sam.sam_mask_decoder.conv_s0.weight, model.sam.sam_mask_decoder.conv_s0.weight)


def test_wrong_base_checkpoint_is_refused(mini_checkpoint, tmp_path):
    path = tmp_path / "a.sam2pal"
    _, info = _lora_adapter(mini_checkpoint, path)
    other_ckpt = tmp_path / "other_mini.pt"
    torch.save({"model": build_model(MINI_CONFIG, seed=1).sam.state_dict()}, other_ckpt)
    other = _mini(other_ckpt)
    with pytest.raises(UserError) as err:
        load_adapter(path, other)
    msg = str(err.value)
    mini = "SAM2.1 mini test model (sam2pal_mini)"
    trained = info.base_checkpoint_sha256[:12]
    assert f"trained on {mini} with checkpoint sha256 {trained} (sam2pal_mini.pt)" in msg
    assert f"you loaded {mini} with checkpoint sha256 {other.checkpoint_hash[:12]} (other_mini.pt)" in msg
    assert msg.endswith("use --checkpoint sam2pal_mini.pt")
    assert finetune_mode(other.sam) is None  # refused before touching the model


def test_random_and_real_bases_do_not_mix(mini_checkpoint, tmp_path):
    random_base = _mini()
    apply_lora(random_base.sam, rank=2)
    save_adapter(tmp_path / "r.sam2pal", random_base)
    with pytest.raises(
        UserError,
        match=r"trained on .*\(sam2pal_mini\) with random weights \(no checkpoint\); .*use no --checkpoint",
    ):
        load_adapter(tmp_path / "r.sam2pal", _mini(mini_checkpoint))
    assert load_adapter(tmp_path / "r.sam2pal", _mini()).lora["rank"] == 2
    _lora_adapter(mini_checkpoint, tmp_path / "c.sam2pal")
    with pytest.raises(
        UserError,
        match=r"you loaded .*\(sam2pal_mini\) with random weights.*use --checkpoint sam2pal_mini.pt$",
    ):
        load_adapter(tmp_path / "c.sam2pal", _mini())


def test_wrong_config_is_refused(mini_checkpoint, tmp_path):
    _lora_adapter(mini_checkpoint, tmp_path / "a.sam2pal")
    own_yaml = tmp_path / "copy_of_mini.yaml"
    shutil.copy(packaged_config_path(MINI_CONFIG), own_yaml)
    with pytest.raises(
        UserError,
        match=r"trained on .*\(sam2pal_mini\) .*you loaded .*copy_of_mini.yaml .*; "
        r"use --config sam2pal_mini$",
    ):
        load_adapter(tmp_path / "a.sam2pal", build_model(str(own_yaml), mini_checkpoint))


def test_failed_save_keeps_the_previous_file(mini_checkpoint, tmp_path, monkeypatch):
    path = tmp_path / "a.sam2pal"
    model, _ = _lora_adapter(mini_checkpoint, path)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(path, model)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.sam2pal"]


def test_files_that_are_not_adapters(mini_checkpoint, tmp_path):
    with pytest.raises(UserError, match="looks like a SAM2 checkpoint"):
        read_adapter(mini_checkpoint)
    junk = tmp_path / "junk.sam2pal"
    junk.write_bytes(b"not torch")
    with pytest.raises(UserError, match="not a readable SAM2-PAL adapter"):
        read_adapter(junk)
    newer = tmp_path / "newer.sam2pal"
    torch.save({"format": "sam2pal-adapter", "format_version": ADAPTER_FORMAT_VERSION + 1,
                "package_version": "9.0"}, newer)
    with pytest.raises(UserError, match=r"newer descriptron-sam2pal \(9.0"):
        read_adapter(newer)
    with pytest.raises(UserError, match="does not exist"):
        read_adapter(tmp_path / "missing.sam2pal")


def test_save_needs_a_prepared_model_and_json_metadata(tmp_path):
    model = _mini()
    with pytest.raises(RuntimeError, match="nothing to save"):
        save_adapter(tmp_path / "x", model)
    apply_lora(model.sam, rank=2)
    with pytest.raises(ValueError, match="plain JSON"):
        save_adapter(tmp_path / "x", model, hyperparameters={"device": torch.device("cpu")})
