"""Propagation on a Ray cluster (``jobs.cluster``): a local cluster started here
(``ray.init(num_cpus=2)``), the real mini SAM2 at 128 px, real files.

What must hold: the Ray run writes the same predictions, byte for byte, as the
single-process run; a worker killed mid-run loses nothing; a driver killed mid-run leaves
a journal that the next run (here a local one: the journals are the same) resumes,
redoing only what is missing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal import UserError
from descriptron_sam2pal.cli import main
from descriptron_sam2pal.engine.control import CancelToken
from descriptron_sam2pal.jobs.cluster import CRASH_ENV, ClusterSettings
from descriptron_sam2pal.jobs.models import ModelRequest
from descriptron_sam2pal.jobs.propagation import PropagateRequest, journal_path, propagate_run
from descriptron_sam2pal.jobs.templates import spec_from_color_png
from tests.helpers.synthetic import make_specimen

COLORS = {"head": (200, 0, 0), "eye": (0, 200, 0), "scape": (0, 0, 200)}
N_TARGETS = 10


def write_specimen(folder: Path, name: str, seed: int, size) -> Path:
    image, masks = make_specimen(seed, size=size)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / name)
    return folder / name


@pytest.fixture(scope="module")
def project(tmp_path_factory, mini_checkpoint):
    """A template with a colour mask, N_TARGETS specimens of varied sizes and one corrupt file,
    and the single-process predictions of them (the reference)."""
    root = tmp_path_factory.mktemp("cluster")
    image, masks = make_specimen(0, size=(96, 120))
    (root / "template").mkdir()
    Image.fromarray(image).save(root / "template" / "t.png")
    colour = np.zeros(image.shape, np.uint8)
    for n, m in masks.items():
        colour[m] = COLORS[n]
    Image.fromarray(colour).save(root / "template" / "t_mask.png")
    sizes = [(96, 120), (110, 90), (80, 80), (100, 130)]
    targets = [
        write_specimen(root / "specimens", f"s{i:02d}.png", 10 + i, sizes[i % 4]) for i in range(N_TARGETS)
    ]
    bad = root / "specimens" / "s02_corrupt.png"
    bad.write_bytes(b"not an image")
    targets.insert(3, bad)  # where a folder listing puts it (the CLI's order)
    spec = spec_from_color_png(root / "template" / "t.png", root / "template" / "t_mask.png", COLORS)
    model = ModelRequest(choice=str(mini_checkpoint), device="cpu", image_size=128)

    def request(out: Path, **kw) -> PropagateRequest:
        return PropagateRequest(model, [spec], targets, out=out, **kw)

    reference = root / "local" / "pred.json"
    outcome = propagate_run(request(reference, batch_size=2))
    assert [Path(r.path).name for r in outcome.failed] == ["s02_corrupt.png"]
    return root, request, reference


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def same_files(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".rlejson").read_bytes() == b.with_suffix(".rlejson").read_bytes()


@pytest.mark.slow
def test_sam2pal_propagate_ray_writes_the_single_process_predictions_byte_for_byte(project, cluster, tmp_path,
                                                                                  mini_checkpoint, capsys,
                                                                                  monkeypatch):
    """Relative paths too (a worker's working folder is not the driver's), and the Ray run
    resumes the journal of a local run."""
    root, request, reference = project
    out = tmp_path / "pred.json"
    monkeypatch.chdir(root)
    colors = ";".join(f"{n}={r},{g},{b}" for n, (r, g, b) in COLORS.items())
    argv = ["propagate", "--template-image", "template/t.png", "--template-mask", "template/t_mask.png",
            "--colors", colors, "--images", root / "specimens", "--out", out,
            "--checkpoint", os.path.relpath(mini_checkpoint, root),
            "--image-size", 128, "--device", "cpu", "--batch-size", 2]
    assert main([str(a) for a in argv + ["--workers", 2]]) == 2  # --workers without --ray
    assert "add --ray" in capsys.readouterr().err

    # A local run stopped after two batches leaves a journal; the Ray run resumes it.
    token = CancelToken()
    propagate_run(request(out, batch_size=2), progress=lambda p: p.done >= 4 and token.cancel(), cancel=token)
    assert journal_path(out).exists() and not out.exists()
    assert main([str(a) for a in argv + ["--ray", "--workers", 2, "--resume"]]) == 0
    err = capsys.readouterr().err
    assert "Ray: 2 worker(s)" in err
    assert re.search(r"\b3 of 11 image\(s\) already in the journal", err)  # s00-s02 (s02_corrupt failed)
    assert "skipped " in err and "s02_corrupt.png" in err  # reported like any bad image, not dropped
    same_files(reference, out)
    assert not journal_path(out).exists()  # a finished run removes its journal, as a local one does


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_nothing(project, cluster, tmp_path, monkeypatch):
    """One actor exits abruptly (os._exit) at its 3rd target: Ray restarts it, its targets go
    to whichever worker is free, and the files are still the single-process ones. The images
    travel with the work here (ship_images), as for workers without shared storage."""
    root, request, reference = project
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ENV, f"3:{marker}")
    out = tmp_path / "pred.json"
    said = []
    outcome = propagate_run(request(out, batch_size=1, cluster=ClusterSettings(workers=2, ship_images=True)),
                            log_fn=said.append)
    assert marker.exists(), "the worker did not crash: the test proved nothing"
    assert any("failed (the worker process died)" in s for s in said)
    same_files(reference, out)
    assert [Path(r.path).name for r in outcome.failed] == ["s02_corrupt.png"]


@pytest.mark.slow
def test_a_photo_that_kills_its_worker_every_time_is_reported_after_two_tries(project, cluster, tmp_path,
                                                                            monkeypatch):
    root, request, reference = project
    full = request(tmp_path / "pred.json", batch_size=1, cluster=ClusterSettings(workers=2))
    full.targets = [t for t in full.targets if Path(t).name in ("s00.png", "s01.png", "s04.png")]
    monkeypatch.setenv(CRASH_ENV, "name=s01.png")
    outcome = propagate_run(full)
    assert [Path(r.path).name for r in outcome.failed] == ["s01.png"]
    assert "failed 2 times (the worker process died)" in outcome.failed[0].error
    doc = json.loads((tmp_path / "pred.json").read_text())
    assert [im["file_name"] for im in doc["images"]] == ["s00.png", "s04.png"]  # the others are all there
    assert [e["path"] for e in doc["info"]["errors"]] == [str(root / "specimens" / "s01.png")]


DRIVER = textwrap.dedent("""
    import sys, pickle, ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    from descriptron_sam2pal.jobs.propagation import propagate_run
    request = pickle.load(open(sys.argv[2], "rb"))
    propagate_run(request)  # on the cluster its settings name (ClusterSettings(workers=1))
""")


@pytest.mark.slow
def test_a_driver_killed_mid_run_leaves_a_journal_the_next_run_resumes(project, cluster, tmp_path):
    """The driver (a separate process on the test's cluster) is killed with SIGKILL once some
    targets are in the journal; a rerun with resume redoes only the missing ones, and a
    local run can resume a Ray run's journal."""
    import pickle

    root, request, reference = project
    out = tmp_path / "pred.json"
    journal = journal_path(out)
    (tmp_path / "request.pkl").write_bytes(pickle.dumps(request(out, batch_size=1,
                                                                cluster=ClusterSettings(workers=1))))
    address = cluster.get_runtime_context().gcs_address
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(tmp_path / "request.pkl")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while driver.poll() is None and (not journal.exists() or len(journal.read_text().splitlines()) < 2):
            time.sleep(0.02)
    finally:
        driver.send_signal(signal.SIGKILL)
        _, err = driver.communicate()
    assert driver.returncode == -signal.SIGKILL, err.decode()[-2000:]
    done = sum(1 for line in journal.read_text().splitlines() if line.endswith("}"))  # whole lines
    assert 2 <= done < N_TARGETS and not out.exists()

    outcome = propagate_run(request(out, batch_size=1, resume=True))
    assert outcome.encoder_passes == 1 + (N_TARGETS - done)  # the template and the missing targets only
    same_files(reference, out)
    assert not journal.exists()


def test_without_ray_the_user_is_told_how_to_install_it(project, tmp_path, monkeypatch):
    root, request, reference = project
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UserError, match=r'pip install "descriptron-sam2pal\[ray\]"'):
        propagate_run(request(tmp_path / "pred.json", cluster=ClusterSettings()))
    assert not (tmp_path / "pred.json").exists()
