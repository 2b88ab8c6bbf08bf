"""File > Open in Descriptron with Descriptron's real program (descriptron-gui, installed by
install.sh with --no-deps and no torchvision): the torchvision pieces it needs, the program
started from the workspace, its failures shown in a dialog, and the menu without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from descriptron_sam2pal.app.descriptron_link import failure_advice, find_descriptron, install_command
from descriptron_sam2pal.app.torchvision_parts import Normalize, Resize, ToTensor, batched_nms, box_area, nms

from tests.helpers.workspace_project import wait_shown

# ---------------------------------------------------------------- torchvision pieces


def test_nms_keeps_the_best_of_overlapping_boxes_and_batched_nms_keeps_categories_apart():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 9, 10]], dtype=torch.float32
    )
    scores = torch.tensor([0.8, 0.9, 0.7, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # 1 beats 0 and 3 (IoU 0.81, 0.8); 2 stands alone
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 2, 3]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0, 0]), 0.5).tolist() == [1, 0, 2]
    assert batched_nms(boxes[:0], scores[:0], torch.tensor([], dtype=torch.int64), 0.5).numel() == 0
    assert box_area(boxes).tolist() == [100, 81, 100, 90]


def test_transforms_give_what_sam2_expects():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    tensor = ToTensor()(image)
    assert tensor.shape == (3, 2, 3) and tensor.dtype == torch.float32
    assert torch.allclose(tensor[:, 1, 2], torch.tensor([150, 160, 170]) / 255)
    x = torch.rand(3, 37, 53)
    expected = F.interpolate(x[None], size=(16, 16), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.equal(Resize([16, 16])(x), expected)
    normalized = Normalize([0.5, 0.25, 0.0], [0.5, 0.5, 2.0])(torch.ones(3, 2, 2))
    assert normalized[:, 0, 0].tolist() == [1.0, 1.5, 0.5]
    scripted = torch.jit.script(
        torch.nn.Sequential(Resize([8, 8]), Normalize([0.0] * 3, [1.0] * 3))
    )  # as SAM2 does
    assert scripted(x).shape == (3, 8, 8)


@pytest.mark.slow
def test_sam2_automatic_masks_run_on_the_pieces_in_a_python_without_torchvision():
    """What Descriptron builds at start-up (SAM2AutomaticMaskGenerator on SAM2ImagePredictor)
    runs end to end on the pieces, in a fresh interpreter like the one Descriptron gets."""
    code = (
        "from descriptron_sam2pal.app.torchvision_parts import install\n"
        "import importlib.util, numpy as np\n"
        "real = importlib.util.find_spec('torchvision') is not None\n"
        "assert install() is not real\n"
        "from descriptron_sam2pal.model.build import MINI_CONFIG, build_model\n"
        "from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator\n"
        "model = build_model(MINI_CONFIG, image_size=1024, seed=0).sam\n"
        "gen = SAM2AutomaticMaskGenerator(model, points_per_side=4, points_per_batch=16,\n"
        "                                 pred_iou_thresh=-10,\n"
        "                                 stability_score_thresh=0.0, box_nms_thresh=0.7, crop_n_layers=0)\n"
        "img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)\n"
        "masks = gen.generate(img)\n"
        "print('masks', len(masks), masks[0]['segmentation'].shape)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(96, 128)" in out.stdout and "masks 0" not in out.stdout


# ---------------------------------------------------------------- what a failure says


def test_failure_advice_names_the_reason_and_the_fix():
    display = failure_advice("_tkinter.TclError: no display name and no $DISPLAY environment variable", 1)
    assert "display" in display.reason and "xvfb-run" in display.fix
    tk = failure_advice("tkinter is missing. It ships with Python on Windows", 1)
    assert "python3-tk" in tk.fix
    checkpoint = failure_advice("No SAM2 checkpoint. Download https://dl.fbaipublicfiles.com/...", 1)
    assert "sam2_hiera_large.pt" in checkpoint.reason and "answer Yes" in checkpoint.fix
    module = failure_advice("Traceback...\nModuleNotFoundError: No module named 'skimage.io'", 1)
    assert "'skimage'" in module.reason and module.fix.startswith(f"{sys.executable} -m pip install skimage")
    other = failure_advice("loading\nValueError: bad annotation file\n", 1)
    assert (
        other.reason == "Descriptron stopped: ValueError: bad annotation file" and "Show Details" in other.fix
    )
    assert "exit code 3" in failure_advice("", 3).reason


# ---------------------------------------------------------------- the workspace


def open_dialogs(dialogs) -> list[str]:
    return [text for title, text in dialogs.seen if title == "Open in Descriptron"]


def test_without_descriptron_the_menu_says_how_to_install_it(window, project, dialogs, qtbot):
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    window.set_descriptron_launcher(None)
    action = window.descriptron_action
    assert action.isEnabled() and "not installed" in action.text()
    assert install_command() in action.toolTip() and "--no-deps descriptron-gui==2.8.2" in action.statusTip()
    assert window.open_in_descriptron() is None
    [text] = open_dialogs(dialogs)
    assert install_command() in text and "PyTorch" in text


def launch(window, project, qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("DESCRIPTRON_CACHE", str(tmp_path / "descriptron-cache"))  # no SAM2 model there
    launcher = find_descriptron()  # the real descriptron-gui
    assert launcher is not None and launcher.version == "2.8.2"
    window.set_descriptron_launcher(launcher)
    window.open_path(project)
    wait_shown(qtbot, window, "ant_01.png")
    assert (
        window.descriptron_action.isEnabled() and window.descriptron_action.text() == "Open in &Descriptron"
    )
    run = window.open_in_descriptron()
    assert run is not None and run.argv[-2:] == [str(project / "ant_01.png"), str(project / "session.json")]
    return run


def test_descriptron_that_cannot_open_a_window_is_explained_in_a_dialog(
    window, project, dialogs, qtbot, monkeypatch, tmp_path
):
    """Descriptron's real program, started from the menu with no display (the offscreen
    platform): it gets past its SAM2 imports (no torchvision here) and stops at its Tk window;
    the dialog says so and how to fix it."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    run = launch(window, project, qtbot, monkeypatch, tmp_path)
    try:
        qtbot.waitUntil(lambda: bool(open_dialogs(dialogs)), timeout=120000)
    finally:
        run.stop()
    [text] = open_dialogs(dialogs)
    assert "no display" in text and "Fix:" in text and "xvfb-run" in text
    output = run.output()
    assert (
        "no display name" in output and "torchvision" not in output and "SAM2 is not installed" not in output
    )
    assert window.descriptron_runs() == []


def free_x_display(tmp_path):
    """A private Xvfb server (its display name, its process), or None where Xvfb is not installed."""
    if shutil.which("Xvfb") is None:
        return None
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1366x768x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    return f":{number}", server


@pytest.mark.slow
def test_descriptron_opens_its_window_from_the_menu(window, project, dialogs, qtbot, monkeypatch, tmp_path):
    """With a display, Descriptron's real program starts and stays up (here it opens its
    question about downloading its SAM2 model, as it does for a new user) until it is closed."""
    server = free_x_display(tmp_path)
    if server is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb) to give Descriptron's Tk window a display")
    display, xvfb = server
    monkeypatch.setenv("DISPLAY", display)
    try:
        run = launch(window, project, qtbot, monkeypatch, tmp_path)
        try:
            qtbot.waitUntil(lambda: "A window asks whether to download" in run.output(), timeout=120000)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                qtbot.wait(200)
            assert run.running() and open_dialogs(dialogs) == []
            assert window.descriptron_runs() == [run]
        finally:
            run.stop()
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    assert "torchvision" not in run.output()
