"""Faults end in one message: a full disk while the predictions are finalised (with the cleanup
failing too) gives one line and `--resume` completes; a PNG cut short is refused; `evaluate` on
an empty truth folder says so. Real CLI, real sam2 code (mini model)."""

from __future__ import annotations

import errno
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal.imaging.io import ImageError, load_image
from descriptron_sam2pal.store.ours import is_our_predictions

from tests.helpers.synthetic import make_specimen
from tests.helpers.cli_runs import run_cli as run
from tests.helpers.cli_runs import propagate_argv


@pytest.fixture
def project(tmp_path):
    (tmp_path / "specimens").mkdir()
    for i in range(3):
        Image.fromarray(make_specimen(10 + i, size=(96, 120))[0]).save(tmp_path / "specimens" / f"s{i}.png")
    image, masks = make_specimen(0, size=(96, 120))
    Image.fromarray(image).save(tmp_path / "t.png")
    colour = np.zeros(image.shape, np.uint8)
    colour[masks["head"]] = (200, 0, 0)
    Image.fromarray(colour).save(tmp_path / "t_mask.png")
    return tmp_path


def argv(root, checkpoint, *extra):
    return propagate_argv(root / "t.png", root / "t_mask.png", "head=200,0,0", root / "specimens", checkpoint,
                          root / "pred.json", "--no-confidence", *extra)


def test_disk_full_while_finalising_ends_in_one_line_and_resume_completes(
    project, present_checkpoint, capsys, monkeypatch
):
    from descriptron_sam2pal.engine import predictions

    def full(self, f, rle):
        f.write('{"sam2pal_output": "predictions", "images": [')  # some of it fits, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    def cleanup_fails_too(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(predictions.PredictionsBuilder, "write_to", full)
    monkeypatch.setattr(predictions.PredictionsBuilder, "close", cleanup_fails_too)
    code, out, err = run(capsys, *argv(project, present_checkpoint, "--write-to", project / "specimens"))
    assert code == 2
    [line] = [x for x in err.splitlines() if x.startswith("sam2pal:")]
    assert (
        line.startswith("sam2pal: error: could not write the predictions")
        and "No space left on device" in line
    )
    assert "run the same command again with --resume" in line and "3 segmented image(s)" in line
    assert "Traceback" not in err
    assert not (project / "pred.json").exists() and not (project / "pred.rlejson").exists()
    assert not list(project.glob(".pred.*.tmp")) and not list((project / "specimens").glob("*_final_*"))
    journal = project / "pred.json.journal.jsonl"
    assert len(journal.read_text().splitlines()) == 3  # the work is kept

    monkeypatch.undo()
    code, out, err = run(
        capsys, *argv(project, present_checkpoint, "--write-to", project / "specimens", "--resume")
    )
    assert code == 0, err
    assert is_our_predictions(project / "pred.json") and not journal.exists()
    doc = json.loads((project / "pred.json").read_text())
    assert sorted(im["file_name"] for im in doc["images"]) == ["s0.png", "s1.png", "s2.png"]
    assert len(list((project / "specimens").glob("*_final_*.json"))) == 3


def png_claiming_more_rows(path: Path, height=64, width=64, claimed=128) -> None:
    """A real PNG whose header promises more rows than its data holds (a cut-short copy)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 200, np.uint8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[16:29])
    ihdr[4:8] = struct.pack(">I", claimed)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    path.write_bytes(bytes(data))


def test_a_png_cut_short_is_refused_not_segmented_as_black(project, present_checkpoint, capsys, tmp_path):
    bad = tmp_path / "cut.png"
    png_claiming_more_rows(bad)
    with pytest.raises(
        ImageError, match=r"header says 64 x 128 px but the file holds only 64 of its 128 rows"
    ):
        load_image(bad)
    good = tmp_path / "whole.png"
    Image.fromarray(np.full((128, 64, 3), 200, np.uint8)).save(good)
    assert load_image(good).shape == (128, 64, 3)
    png_claiming_more_rows(project / "specimens" / "s1.png", 96, 120, 200)
    code, out, err = run(capsys, *argv(project, present_checkpoint))
    assert code == 0, err
    assert "skipped" in err and "s1.png" in err and "cut short" in err
    doc = json.loads((project / "pred.json").read_text())
    assert sorted(im["file_name"] for im in doc["images"]) == ["s0.png", "s2.png"]


def test_evaluate_on_an_empty_truth_folder_says_so(project, capsys, tmp_path):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    empty = tmp_path / "truth"
    empty.mkdir()
    for extra in ([], ["--colors", "head=200,0,0"]):
        code, _, err = run(capsys, "evaluate", "--pred", pred, "--truth", empty, *extra)
        assert code == 2 and f"the ground truth folder {empty} is empty" in err and "Traceback" not in err
    (empty / "notes.txt").write_text("x")
    code, _, err = run(capsys, "evaluate", "--pred", pred, "--truth", empty, "--colors", "head=200,0,0")
    assert code == 2 and f"the ground truth folder {empty} holds no mask PNG" in err


def test_an_unreachable_ray_address_fails_within_a_minute_naming_it(project, present_checkpoint, capsys):
    pytest.importorskip("ray")
    import socket
    import time

    from descriptron_sam2pal import UserError
    from descriptron_sam2pal.jobs.cluster import check_reachable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    code, out, err = run(capsys, *argv(project, present_checkpoint, "--ray", f"127.0.0.1:{port}"))
    assert code == 2 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err
    assert "ray start --head" in err and "Traceback" not in err
    assert time.monotonic() - started < 60  # not retried for ever
    with pytest.raises(UserError, match=rf"cannot reach the Ray cluster at ray://127\.0\.0\.1:{port} \("):
        check_reachable(f"ray://127.0.0.1:{port}", timeout=0.5)
    with pytest.raises(UserError, match="HOST:PORT"):
        check_reachable("head-node")
