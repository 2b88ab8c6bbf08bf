import subprocess
import sys


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "descriptron_sam2pal.cli", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert "sam2pal" in out.stdout


def test_mini_model_builds_from_checkpoint(mini_checkpoint):
    import torch

    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    model = build_model(MINI_CONFIG, mini_checkpoint, image_size=128)
    assert model.image_size == 128
    assert model.checkpoint_hash and len(model.checkpoint_hash) == 64
    with torch.no_grad():
        out = model.sam.forward_image(torch.zeros(1, 3, 128, 128))
    assert out["vision_features"].shape[-1] == 128 // 16
