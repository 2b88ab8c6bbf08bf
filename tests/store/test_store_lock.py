"""Two writers of one store: a real OS lock, a clear refusal, and nothing of the first lost."""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from descriptron_sam2pal.store import AnnotationStore, StoreBusyError, StoreChangedError, store_lock
from tests.helpers.store_files import box_mask, read_json, saved_session, write_image


@pytest.fixture
def session(tmp_path):
    return saved_session(tmp_path, "a.png", "b.png")


def hold_lock_in_another_process(folder):
    """A second process that takes the store's lock, says so, and keeps it until stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from descriptron_sam2pal.store import store_lock
        with store_lock({str(folder)!r}, timeout=None):
            print("locked", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def release(proc):
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def test_a_second_writer_is_refused_clearly_while_the_first_holds_the_lock(session):
    store = AnnotationStore.open(session)
    store.add_structure(store.images[0], "eye", box_mask(20, 25, 20, 25))
    before = session.read_bytes()
    proc = hold_lock_in_another_process(session.parent)
    try:
        store.lock_timeout = 0.2
        with pytest.raises(StoreBusyError, match=r"another program .* held the lock .*--resume"):
            store.save()
        assert session.read_bytes() == before and store.is_dirty
    finally:
        release(proc)
    store.save()                                      # released (also when a holder is killed)
    reread = AnnotationStore.open(session)
    assert set(reread.structure_masks(reread.images[0])) == {"scape", "eye"}


def test_a_second_writer_waits_for_the_first(session):
    store = AnnotationStore.open(session)
    store.add_structure(store.images[0], "eye", box_mask(20, 25, 20, 25))
    proc = hold_lock_in_another_process(session.parent)
    done = []
    saver = threading.Thread(target=lambda: done.append(store.save()))
    store.lock_timeout = None
    saver.start()
    saver.join(0.5)
    waited = saver.is_alive()
    release(proc)
    saver.join(60)
    assert waited and done and not saver.is_alive()


def test_a_store_changed_since_it_was_read_is_not_overwritten(session):
    first, second = AnnotationStore.open(session), AnnotationStore.open(session)
    first.add_structure(first.images[0], "eye", box_mask(20, 25, 20, 25))
    second.add_structure(second.images[1], "head", box_mask(2, 9, 2, 9))
    first.save()
    saved = session.read_bytes()
    with pytest.raises(StoreChangedError, match=r"s\.json was modified.*Nothing was saved.*--resume"):
        second.save()
    assert session.read_bytes() == saved                       # the first run's work is all there
    third = AnnotationStore.open(session)
    assert set(third.structure_masks(third.images[0])) == {"scape", "eye"}


def test_per_image_folder_refuses_only_when_the_same_photo_got_a_newer_file(tmp_path):
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name)
    first, second, third = (AnnotationStore.open(tmp_path) for _ in range(3))
    first.add_structure(first.image_by_file("a.png"), "eye", box_mask(20, 25, 20, 25))
    second.add_structure(second.image_by_file("a.png"), "head", box_mask(2, 9, 2, 9))
    third.add_structure(third.image_by_file("b.png"), "head", box_mask(2, 9, 2, 9))
    [a_json, _] = first.save()
    with pytest.raises(StoreChangedError, match="a_final_.*was created"):
        second.save()
    third.save()                                                 # another photo: no conflict
    reread = AnnotationStore.open(tmp_path)
    assert set(reread.structure_masks(reread.image_by_file("a.png"))) == {"eye"}
    assert set(reread.structure_masks(reread.image_by_file("b.png"))) == {"head"}
    assert read_json(a_json)["annotations"][0]["category_id"]


def test_two_processes_that_hold_the_lock_around_the_whole_run_both_land(session):
    """The pattern for long runs: `with store_lock(path): open, work, save` in each process."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from descriptron_sam2pal.store import AnnotationStore, store_lock
        path, name, y = sys.argv[1], sys.argv[2], int(sys.argv[3])
        with store_lock(path, timeout=120):
            store = AnnotationStore.open(path)
            m = np.zeros((40, 60), bool); m[y:y + 5, 30:40] = True
            store.add_structure(store.images[1], name, m)
            store.save()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(session), name, str(y)])
             for name, y in (("eye", 2), ("head", 20))]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = AnnotationStore.open(session)
    got = store.structure_masks(store.images[1])
    assert set(got) == {"eye", "head"} and got["eye"][2:7, 30:40].all() and got["head"][20:25, 30:40].all()
    assert np.array_equal(store.structure_masks(store.images[0])["scape"], box_mask(5, 10, 5, 10))


def test_a_killed_writer_leaves_no_stale_lock(session):
    proc = hold_lock_in_another_process(session.parent)
    proc.kill()
    proc.wait(timeout=60)
    with store_lock(session, timeout=0):
        pass


def test_check_writable_before_work_reports_a_busy_store(session):
    store = AnnotationStore.open(session)
    store.check_writable()                                  # free: nothing to say
    proc = hold_lock_in_another_process(session.parent)
    try:
        with pytest.raises(StoreBusyError, match="Nothing was written"):
            store.check_writable()
    finally:
        release(proc)
