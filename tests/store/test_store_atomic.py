"""Saving is all or nothing: a failure leaves the user's files as they were, no temp files."""

import errno
import os

import pytest

from descriptron_sam2pal import UserError
from descriptron_sam2pal.store import AnnotationStore, StoreError
from descriptron_sam2pal.store import coco as coco_module
from descriptron_sam2pal.store.lock import LOCK_NAME
from tests.helpers.store_files import box_mask, write_image


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != LOCK_NAME}


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def session(tmp_path):
    write_image(tmp_path / "a.png")
    store = AnnotationStore.create(tmp_path / "s.json")
    store.add_structure(store.images[0], "scape", box_mask(5, 10, 5, 10))
    store.save()
    store = AnnotationStore.open(tmp_path / "s.json")
    store.add_structure(store.images[0], "eye", box_mask(20, 25, 20, 25))
    return tmp_path, store


def check_failed_cleanly(folder, before, store, excinfo):
    assert snapshot(folder) == before                    # originals intact; no temp or backup files
    assert isinstance(excinfo.value, UserError)
    msg = str(excinfo.value)
    assert "could not save" in msg and "Nothing was changed" in msg and "save again" in msg
    assert store.is_dirty                                # the change is still there to retry


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_disk_full_leaves_the_session_file_intact(session, monkeypatch, where):
    folder, store = session
    before = snapshot(folder)
    monkeypatch.setattr(coco_module.os, where, disk_full)
    with pytest.raises(StoreError) as excinfo:
        store.save()
    check_failed_cleanly(folder, before, store, excinfo)
    assert "No space left on device" in str(excinfo.value)
    monkeypatch.undo()
    store.save()                                          # and the retry works
    assert snapshot(folder) != before


def test_second_file_failing_restores_the_first(session, monkeypatch):
    folder, store = session
    before = snapshot(folder)
    real_replace = os.replace
    calls = []

    def replace_then_fail(src, dst):
        calls.append(dst)
        if str(dst).endswith(".rlejson"):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(coco_module.os, "replace", replace_then_fail)
    with pytest.raises(StoreError) as excinfo:
        store.save()
    assert str(folder / "s.rlejson") in str(excinfo.value)
    check_failed_cleanly(folder, before, store, excinfo)


def test_unserialisable_value_changes_nothing(session, monkeypatch):
    folder, store = session
    before = snapshot(folder)
    store.images[0].raw["bad"] = object()
    with pytest.raises(StoreError, match=r"s\.(rle)?json: cannot be written.*Nothing was changed"):
        store.save()
    assert snapshot(folder) == before


def test_per_image_failure_leaves_no_new_file(tmp_path, monkeypatch, session_folder):
    folder, json_path, *_ = session_folder
    store = AnnotationStore.open(folder)
    store.set_structure_status(store.images[0], "eye", "present")
    before = snapshot(folder)
    real_replace = os.replace

    def fail_on_rlejson(src, dst):
        if str(dst).endswith(".rlejson"):
            disk_full()
        return real_replace(src, dst)

    monkeypatch.setattr(coco_module.os, "replace", fail_on_rlejson)
    with pytest.raises(StoreError) as excinfo:
        store.save()
    check_failed_cleanly(folder, before, store, excinfo)
    # the newest complete pair is still the user's
    assert AnnotationStore.open(folder).source_files == [json_path]
