"""`sam2pal propagate --write-to` killed at every file rename: the store reads back as the old or
the new version (never a mix), and `--resume` completes. Real CLI, real sam2 code, mini model.

A session file is one pair, so the whole store is old or new. A folder of per-image `_final_`
files is one pair per photo, so each photo is old or new (photos already written stay new)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal.cli import main
from descriptron_sam2pal.store import AnnotationStore
from tests.helpers.descriptron_harness import Descriptron
from tests.helpers.synthetic import make_specimen


pytestmark = pytest.mark.slow

COLORS = "head=200,0,0;eye=0,200,0"


class Killed(BaseException):
    """The process dies here: not an OSError, so no restore runs."""


def make_project(root: Path, kind: str) -> tuple[Path, list[str]]:
    """Two specimens with a user's Descriptron annotation (a mask on s0) and a template.
    kind "per_image": Descriptron's own save next to the images (written as a new _final_ pair);
    kind "session": one session file saved in place (with backups)."""
    images = root / "specimens"
    images.mkdir(parents=True)
    for i, size in enumerate([(96, 120), (100, 90)]):
        image, _ = make_specimen(10 + i, size=size)
        Image.fromarray(image).save(images / f"s{i}.png")
    image, masks = make_specimen(0, size=(96, 120), structures=("head", "eye"))
    Image.fromarray(image).save(root / "t.png")
    colour = np.zeros(image.shape, np.uint8)
    colour[masks["head"]] = (200, 0, 0)
    colour[masks["eye"]] = (0, 200, 0)
    Image.fromarray(colour).save(root / "t_mask.png")
    user = np.zeros((96, 120), bool)
    user[10:40, 60:110] = True
    user[20:30, 75:95] = False                                 # the user's mask has a hole
    if kind == "per_image":
        d = Descriptron()
        d.open_image(images / "s0.png")
        d.add_mask("pronotum", user)
        d.save(at=1_700_000_000)
        for png in images.glob("*_mask.png"):  # Descriptron's mask PNG (the CLI would take it for a photo)
            png.unlink()
        target = images
    else:
        store = AnnotationStore.create(root / "session.json", images=sorted(images.iterdir()))
        store.add_structure(store.images[0], "pronotum", user)
        store.save()
        target = root / "session.json"
    argv = [
        "propagate",
        "--template-image",
        str(root / "t.png"),
        "--template-mask",
        str(root / "t_mask.png"),
        "--colors",
        COLORS,
        "--images",
        str(images),
        "--image-size",
        "128",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--no-confidence",
        "--out",
        str(root / "pred.json"),
        "--write-to",
        str(target),
    ]
    return target, argv


def state(target: Path) -> dict:
    """What a reader gets: {photo: {structure: mask bytes}} plus the set of photos' statuses."""
    store = AnnotationStore.open(target)
    return {r.file_name: {n: np.packbits(m).tobytes() for n, m in sorted(store.structure_masks(r).items())}
            for r in sorted(store.images, key=lambda r: r.file_name)}


def run_killed_at(argv: list[str], n: int, monkeypatch) -> bool:
    """Run the CLI; the n-th os.replace kills it. True if it was killed."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == n:
            raise Killed(dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    try:
        main(argv)
        return False
    except Killed:
        return True
    finally:
        monkeypatch.setattr(os, "replace", real)


@pytest.mark.parametrize("kind", ["per_image", "session"])
def test_killed_at_every_rename_reads_old_or_new_and_resume_completes(
    tmp_path, present_checkpoint, monkeypatch, kind, capsys
):
    target, argv = make_project(tmp_path / "ref", kind)
    argv += ["--checkpoint", str(present_checkpoint)]
    old = state(target)
    assert main(argv) == 0
    new = state(target)
    assert old != new and new["s0.png"]["pronotum"] == old["s0.png"]["pronotum"]   # the user's mask kept

    n, kills = 1, 0
    while True:
        root = tmp_path / f"kill{n}"
        target, argv = make_project(root, kind)
        argv += ["--checkpoint", str(present_checkpoint)]
        if not run_killed_at(argv, n, monkeypatch):
            break                                        # past the last rename: nothing left to kill
        kills += 1
        got = state(target)
        if kind == "session":       # one file pair: the whole store is old or new
            assert got in (old, new), f"kill at rename {n}: a mix of old and new"
        else:                       # one _final_ pair per photo: each photo is old or new
            assert set(got) == set(old)
            for photo in got:
                assert got[photo] in (old[photo], new[photo]), f"kill at rename {n}: {photo} is a mix"
        assert main(argv + ["--resume"]) == 0
        assert state(target) == new, f"kill at rename {n}: --resume did not complete"
        n += 1
    capsys.readouterr()
    # every rename of the run: the predictions pair, then each store pair (.rlejson, then .json)
    assert kills == {"session": 4, "per_image": 6}[kind]


def test_a_real_kill_between_the_store_renames(tmp_path, present_checkpoint):
    """A separate process dies (os._exit) right after the store's .rlejson is renamed."""
    target, argv = make_project(tmp_path, "session")
    argv += ["--checkpoint", str(present_checkpoint)]
    old = state(target)
    code = textwrap.dedent("""
        import os, sys
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if str(dst).endswith("session.rlejson"):
                os._exit(9)
        os.replace = replace
        from descriptron_sam2pal.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 9, proc.stderr[-2000:]
    store = AnnotationStore.open(target)
    assert any("interrupted" in w for w in store.warnings)
    got = state(target)
    assert got != old and {"head", "eye"} & set(got["s1.png"])                 # the new version
    assert got["s0.png"]["pronotum"] == old["s0.png"]["pronotum"]


def test_another_writer_during_the_run_is_not_overwritten_and_resume_completes(tmp_path, present_checkpoint,
                                                                             monkeypatch, capsys):
    """Another program saves the store while propagate runs: propagate refuses clearly at its
    save (nothing of the other's is lost) and `--resume` then adds its results to the new store."""
    import descriptron_sam2pal.engine.predictions as predictions

    target, argv = make_project(tmp_path, "session")
    argv += ["--checkpoint", str(present_checkpoint)]
    real = predictions.write_predictions

    def and_meanwhile(*args, **kwargs):            # just before propagate saves the store
        other = AnnotationStore.open(target)
        other.add_structure(other.images[1], "mandible", np.pad(np.ones((6, 6), bool), ((2, 92), (2, 82))))
        other.save()
        return real(*args, **kwargs)

    monkeypatch.setattr(predictions, "write_predictions", and_meanwhile)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "changed by another program" in err and "--resume" in err and "Traceback" not in err
    assert set(state(target)["s1.png"]) == {"mandible"}         # the other's save is intact
    monkeypatch.undo()
    assert main(argv + ["--resume"]) == 0
    got = state(target)
    assert "mandible" in got["s1.png"] and {"head", "eye"} & set(got["s1.png"])
