"""benchmarks/clicks.py: the click benchmark, on generated photos with a small random SAM2."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def clicks():
    return load_benchmark("benchmarks/clicks.py", "clicks_benchmark")


def test_interior_point_is_the_centre_of_a_rectangle(clicks):
    mask = np.zeros((40, 60), bool)
    mask[10:31, 5:46] = True  # rows 10..30, cols 5..45
    x, y = clicks.interior_point(mask)
    assert abs(x - 25) <= 1 and abs(y - 20) <= 1
    edge = np.zeros((20, 20), bool)
    edge[:, :7] = True  # touches the image border: the border counts as outside
    assert clicks.interior_point(edge)[0] == 3


def test_corrective_click_targets_the_largest_error(clicks):
    truth = np.zeros((50, 50), bool)
    truth[10:40, 10:40] = True
    missed = truth.copy()
    missed[10:40, 25:40] = False  # right half missed
    x, y, label = clicks.corrective_click(missed, truth)
    assert label == 1 and 25 <= x < 40 and 10 <= y < 40
    extra = truth.copy()
    extra[0:8, :] = True  # a false-positive band above
    x, y, label = clicks.corrective_click(extra, truth)
    assert label == 0 and y < 8
    assert clicks.corrective_click(truth, truth) is None


def _write_photos(root: Path, n: int = 3) -> None:
    """Photos with a body (one part), two legs (two parts) and a speck under 0.1%."""
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.RandomState(0)
    for i in range(n):
        img = (rng.rand(96, 128, 3) * 40 + 180).astype(np.uint8)
        mask = np.zeros((96, 128, 3), np.uint8)
        body = (slice(30 + i, 70), slice(40, 90))
        img[body] = (60, 40, 20)
        mask[body] = (0, 200, 0)
        for x0 in (10, 105):  # two legs
            img[20:80, x0 : x0 + 6] = (20, 20, 20)
            mask[20:80, x0 : x0 + 6] = (200, 200, 0)
        mask[2, 2] = (200, 200, 0)  # one pixel: under 0.1% of the photo, skipped
        Image.fromarray(img).save(root / "images" / f"p{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i}.png")


def test_clicks_runs_the_product_path_and_ends_with_the_line(clicks, mini_checkpoint, tmp_path, capsys):
    _write_photos(tmp_path)
    out = tmp_path / "clicks.json"
    rc = clicks.main(
        [
            "--images",
            str(tmp_path / "images"),
            "--masks",
            str(tmp_path / "masks"),
            "--colors",
            "body=0,200,0;legs=200,200,0;tail=0,0,200",
            "--checkpoint",
            str(mini_checkpoint),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"clicks: one_click_miou=\d+\.\d three_click_miou=\d+\.\d box_miou=\d+\.\d", last)
    data = json.loads(out.read_text())
    assert data["parts"] == {"body": 3, "legs": 6, "tail": 0}  # two legs per photo, the speck skipped
    assert set(data["per_structure"]) == {"body", "legs"}  # a structure on no photo is not scored
    for values in data["per_structure"].values():
        assert all(0.0 <= v <= 100.0 for v in values.values())
    means = {
        s: round(float(np.mean([v[s] for v in data["per_structure"].values()])), 1) for s in data["overall"]
    }
    assert means == data["overall"]
    assert last.endswith(f"box_miou={data['overall']['box']:.1f}")
