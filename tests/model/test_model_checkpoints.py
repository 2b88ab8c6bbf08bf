"""Finding checkpoints where Descriptron looks, and hashing them."""

import os

import pytest

from descriptron_sam2pal import UserError
from descriptron_sam2pal.model.checkpoints import (DEFAULT_CHECKPOINT, cache_dir, checkpoint_sha256,
                                                   file_sha256, find_checkpoint,
                                                   list_available_checkpoints)


@pytest.fixture
def places(tmp_path):
    """A start folder with a sibling ``checkpoints/`` and a cache root."""
    start = tmp_path / "app" / "bin"
    start.mkdir(parents=True)
    shared = tmp_path / "app" / "checkpoints"
    shared.mkdir()
    cache_root = tmp_path / "cache"
    env = {"DESCRIPTRON_CACHE": str(cache_root)}
    return start, shared, cache_root / "sam2", env


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_cache_dir(monkeypatch, tmp_path):
    assert cache_dir({"DESCRIPTRON_CACHE": str(tmp_path)}) == tmp_path / "sam2"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir({}) == tmp_path / "home" / ".cache" / "descriptron" / "sam2"


def test_search_order(places, tmp_path):
    start, shared, cache, env = places
    assert find_checkpoint(start_dir=start, env=env) is None
    cached = _touch(cache / DEFAULT_CHECKPOINT)
    assert find_checkpoint(start_dir=start, env=env) == cached
    local = _touch(shared / DEFAULT_CHECKPOINT)
    assert find_checkpoint(start_dir=start, env=env) == local
    chosen = _touch(tmp_path / "elsewhere" / "mine.pt")
    env = {**env, "DESCRIPTRON_SAM2_CHECKPOINT": str(chosen)}
    assert find_checkpoint(start_dir=start, env=env) == chosen
    assert find_checkpoint("mine.pt", start_dir=start, env=env) == chosen
    # A specific other file is looked up in the folders, not replaced by the variable's file.
    tiny = _touch(cache / "sam2.1_hiera_tiny.pt")
    assert find_checkpoint("sam2.1_hiera_tiny.pt", start_dir=start, env=env) == tiny


def test_without_a_name_any_downloaded_model_is_found(places):
    start, shared, cache, env = places
    small = _touch(cache / "sam2.1_hiera_small.pt")
    assert find_checkpoint(start_dir=start, env=env) == small
    large = _touch(shared / "sam2.1_hiera_large.pt")
    assert find_checkpoint(start_dir=start, env=env) == large
    _touch(cache / "unrelated.pt")
    default = _touch(cache / DEFAULT_CHECKPOINT)  # Descriptron's own choice comes first
    assert find_checkpoint(start_dir=start, env=env) == default
    assert find_checkpoint("sam2.1_hiera_small.pt", start_dir=start, env=env) == small


def test_missing_file_in_environment_variable_is_an_error(places):
    start, _, cache, env = places
    _touch(cache / DEFAULT_CHECKPOINT)
    env = {**env, "DESCRIPTRON_SAM2_CHECKPOINT": "/nonexistent/sam2.pt"}
    with pytest.raises(UserError, match="DESCRIPTRON_SAM2_CHECKPOINT is set to /nonexistent/sam2.pt"):
        find_checkpoint(start_dir=start, env=env)


def test_start_dir_defaults_to_current_folder(places, monkeypatch):
    start, shared, _, env = places
    local = _touch(shared / "sam2.1_hiera_small.pt")
    monkeypatch.chdir(start)
    assert find_checkpoint("sam2.1_hiera_small.pt", env=env).resolve() == local.resolve()


def test_list_available_checkpoints(places, tmp_path):
    start, shared, cache, env = places
    _touch(shared / "sam2.1_hiera_large.pt", b"12345")
    _touch(cache / "sam2_hiera_tiny.pt")
    _touch(cache / "sam2_hiera_small.pt.part")
    _touch(cache / "notes.txt")
    custom = _touch(tmp_path / "custom.pt")
    found = list_available_checkpoints(start, {**env, "DESCRIPTRON_SAM2_CHECKPOINT": str(custom)})
    assert [(c.path.name, c.source, c.config) for c in found] == [
        ("custom.pt", "environment", None),
        ("sam2.1_hiera_large.pt", "checkpoints folder", "configs/sam2.1/sam2.1_hiera_l.yaml"),
        ("sam2_hiera_tiny.pt", "cache", "configs/sam2/sam2_hiera_t.yaml")]
    assert found[1].size_bytes == 5


def test_checkpoint_hash_is_remembered_until_the_file_changes(tmp_path):
    path = _touch(tmp_path / "a.pt", b"one")
    assert checkpoint_sha256(path) == file_sha256(path)
    path.write_bytes(b"two!")
    os.utime(path, ns=(1, 1))
    assert checkpoint_sha256(path) == file_sha256(path)
