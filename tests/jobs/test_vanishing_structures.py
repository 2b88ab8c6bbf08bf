"""A structure whose outline vanishes at the model's input size (a 3 px eye on a large photo) is
refused before any work, naming the structure, its template photo and the smallest input size that
keeps it; `sam2pal propagate` and `train` say so and write nothing. A run that gets such a template
some other way is never reported as improved (tests/engine/test_trainer.py). Real CLI, real
sam2 code (mini model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descriptron_sam2pal import UserError
from descriptron_sam2pal.imaging.kept_pixels import MIN_KEPT_PIXELS, kept_pixels, smallest_keeping_size
from descriptron_sam2pal.jobs.templates import TemplateSpec, load_templates

from tests.helpers.cli_runs import run_cli as run
from tests.helpers.synthetic import make_specimen

COLORS = "head=200,0,0;eye=0,200,0"
H, W = 900, 1200


def masks() -> dict:
    head = np.zeros((H, W), bool)
    head[200:700, 300:900] = True
    eye = np.zeros((H, W), bool)
    eye[400:403, 500:503] = True  # 3 x 3 px on a 1200 px photo
    return {"head": head, "eye": eye}


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "template").mkdir()
    image = np.full((H, W, 3), 40, np.uint8)
    m = masks()
    image[m["head"]] = (180, 150, 90)
    image[m["eye"]] = (20, 20, 20)
    Image.fromarray(image).save(tmp_path / "template" / "big.png")
    colour = np.zeros((H, W, 3), np.uint8)
    colour[m["head"]] = (200, 0, 0)
    colour[m["eye"]] = (0, 200, 0)
    Image.fromarray(colour).save(tmp_path / "template" / "big_mask.png")
    (tmp_path / "specimens").mkdir()
    for i in range(2):
        Image.fromarray(make_specimen(20 + i, size=(96, 120))[0]).save(tmp_path / "specimens" / f"s{i}.png")
    return tmp_path


def expected_size() -> int:
    size = smallest_keeping_size(masks()["eye"], start=129)
    assert size is not None and kept_pixels(masks()["eye"], size) >= MIN_KEPT_PIXELS
    return size


def test_the_check_names_structure_photo_and_size_before_reading_any_image(tmp_path):
    photo = tmp_path / "not_read.jpg"  # never read: the check needs the outlines only
    with pytest.raises(UserError) as caught:
        load_templates([TemplateSpec("t", str(photo), masks())], 128)
    message = str(caught.value)
    assert "1 outline(s) vanish at the model's input size of 128 px" in message
    assert f"'eye' on the template photo {photo} (9 px on its 1200 x 900 px photo, 0 px at 128 px;" in message
    assert f"the smallest input size that keeps it: {expected_size()} px" in message
    assert f"Use --image-size {expected_size()} or larger (in the Train dialog: Image size)" in message
    assert "or leave 'eye' out of the templates" in message and "'head'" not in message


def test_an_outline_too_small_at_any_size_is_named_too(tmp_path):
    m = masks()
    m["dot"] = np.zeros((H, W), bool)
    m["dot"][10, 10] = True
    with pytest.raises(UserError) as caught:
        load_templates([TemplateSpec("t", str(tmp_path / "a.png"), m)], 128)
    message = str(caught.value)
    assert "2 outline(s) vanish" in message
    assert (
        "'dot' on the template photo" in message
        and "no input size up to the photo's own (1216 px) keeps it" in message
    )
    assert "leave 'dot' out of the templates (too small on its photo at any input size)" in message


@pytest.mark.parametrize("command", ["propagate", "train"])
def test_the_cli_refuses_before_any_work(project, mini_checkpoint, capsys, command):
    root = project
    before = snapshot(root)
    common = [
        "--template-image", root / "template" / "big.png",
        "--template-mask", root / "template" / "big_mask.png",
        "--colors", COLORS, "--images", root / "specimens", "--checkpoint", mini_checkpoint,
        "--image-size", 128, "--device", "cpu",
    ]  # fmt: skip
    out = ["--out", root / "pred.json"] if command == "propagate" else ["--out", root / "run", "--steps", 2]
    code, stdout, err = run(capsys, command, *common, *out)
    assert code == 2 and "Traceback" not in err
    assert f"'eye' on the template photo {root / 'template' / 'big.png'}" in err
    assert f"the smallest input size that keeps it: {expected_size()} px" in err
    assert f"--image-size {expected_size()} or larger" in err and "leave 'eye' out of the templates" in err
    assert "image encoder passes" not in stdout and "improved" not in stdout
    assert snapshot(root) == before and not (root / "run").exists()


def test_propagation_refuses_in_its_preflight_before_the_model_loads(tmp_path):
    from descriptron_sam2pal.jobs.models import ModelRequest
    from descriptron_sam2pal.jobs.propagation import PropagateRequest, preflight

    big = str(tmp_path / "big.png")  # no image is read: the file need not exist
    spec = TemplateSpec(big, big, masks())
    request = PropagateRequest(ModelRequest(image_size=128, device="cpu"), [spec], [])
    with pytest.raises(UserError, match="'eye' on the template photo"):
        preflight(request)
