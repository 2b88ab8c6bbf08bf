"""benchmarks/time_to_result.py without running anything: its settings (the GUI preset's
defaults, --quick and what it reports as deviations), the reference defaults it reads, how a
side's figures add up, and the exact last line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402
import time_to_result as ttr  # noqa: E402

from descriptron_sam2pal.gui.train_dialog import DEFAULT_PRESET, PRESETS  # noqa: E402

LAST_LINE = re.compile(
    r"^time_to_result: ours_s=(\S+) reference_s=(\S+) ratio=(\S+) ours_peak_gb=(\S+) "
    r"reference_peak_gb=(\S+) estimate_ratio=(\S+)$"
)


def preset():
    return next(p for p in PRESETS if p.name == DEFAULT_PRESET)


@pytest.mark.parametrize("gpu", [False, True])
def test_the_default_job_is_the_gui_preset_with_no_deviation(gpu, tmp_path):
    s = ttr.parse_args(["--out", str(tmp_path)], gpu=gpu)
    assert (s.steps, s.image_size) == (preset().steps, preset().gpu_size if gpu else preset().cpu_size)
    assert s.n == 100 and s.model == "tiny" and s.reference and s.deviations == []
    assert s.device == ("cuda" if gpu else "cpu")


def test_quick_and_overrides_are_reported_as_deviations(tmp_path):
    s = ttr.parse_args(["--quick", "--out", str(tmp_path)], gpu=False)
    assert (s.image_size, s.n, s.steps) == (ttr.QUICK["image_size"], ttr.QUICK["n"], ttr.QUICK["steps"])
    assert any("training steps" in d for d in s.deviations) and any("image size" in d for d in s.deviations)
    s = ttr.parse_args(
        [
            "--steps",
            "20",
            "--n",
            "7",
            "--model",
            "test",
            "--no-reference",
            "--threads",
            "1",
            "--out",
            str(tmp_path),
        ],
        gpu=False,
    )
    assert (s.steps, s.n, s.model_size, s.reference, s.threads) == (20, 7, "mini", False, 1)
    assert s.deviations == [f"20 training steps instead of the {DEFAULT_PRESET} preset's {preset().steps}"]
    with pytest.raises(SystemExit):
        ttr.parse_args(["--image-size", "500"], gpu=False)


def test_the_reference_defaults_are_read_from_its_argparse(tmp_path):
    script = tmp_path / "ref.py"
    script.write_text(
        "g.add_argument('--num_epochs', type=int, default=200, help='x')\n"
        "g.add_argument('--max_images_per_epoch', type=int,\n    default=10, help='y')\n"
    )
    assert ttr.reference_defaults(script) == {"num_epochs": 200, "max_images_per_epoch": 10}
    script.write_text("g.add_argument('--num_epochs', type=int, default=200)\n")
    with pytest.raises(SystemExit):
        ttr.reference_defaults(script)


def fake_run(wall, rss_mb, rc=0):
    return bench.Run(["python"], wall, rc, rss_mb, Path("log.txt"), cpu_s=wall / 2)


def test_a_side_adds_its_processes_and_fails_as_a_whole():
    side = ttr.Side("ours", [fake_run(100.0, 3072.0), fake_run(20.0, 1024.0)])
    assert side.wall_s == pytest.approx(120.0) and side.peak_gb == pytest.approx(3.0)
    assert side.cpu_s == pytest.approx(60.0)
    side.runs.append(fake_run(5.0, 10.0, rc=1))
    assert side.wall_s is None and side.peak_gb is None and side.cpu_s is None
    assert ttr.Side("reference").wall_s is None


def test_the_last_line_is_exact_and_says_n_a_for_what_is_missing():
    line = ttr.last_line(120.0, 360.0, 3.0, 2.25, 90.0)
    assert line == (
        "time_to_result: ours_s=120.0 reference_s=360.0 ratio=3.00 ours_peak_gb=3.00 "
        "reference_peak_gb=2.25 estimate_ratio=0.75"
    )
    assert LAST_LINE.match(line)
    line = ttr.last_line(120.0, None, 3.0, None, 90.0)
    assert LAST_LINE.match(line).groups() == ("120.0", "n/a", "n/a", "3.00", "n/a", "0.75")


def test_the_estimate_is_the_whole_job_training_and_segmenting():
    from descriptron_sam2pal.jobs.estimate import segmenting_seconds, training_seconds

    seconds, covers = ttr.gui_estimate(300, 512, False, "tiny", 100, 5)
    bf16 = "bf16" in covers.split(";")[1]
    expected = training_seconds(
        300, 512, False, "tiny", structures=5, unlabeled=100, bf16=bf16
    ) + segmenting_seconds(100, 512, False, "tiny", structures=5, bf16=bf16)
    assert seconds == pytest.approx(expected, rel=1e-6)
    assert seconds > segmenting_seconds(100, 512, False, "tiny", structures=5, bf16=bf16) > 0
    assert "training" in covers and "segmenting" in covers
