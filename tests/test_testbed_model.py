"""The committed beetle test-bed checkpoint loads like any SAM2 checkpoint and segments."""

from pathlib import Path

import numpy as np
import torch

import descriptron_sam2pal
from descriptron_sam2pal.model.build import build_model, load_checkpoint_state
from descriptron_sam2pal.model.configs import BEETLE_CONFIG, config_info, detect_config

CHECKPOINT = Path(descriptron_sam2pal.__file__).parent / "resources" / "checkpoints" / "sam2pal_beetle.pt"


def test_checkpoint_is_small_and_detected():
    assert CHECKPOINT.is_file()
    assert CHECKPOINT.stat().st_size < 25e6
    assert (CHECKPOINT.parent / "ATTRIBUTION.md").is_file()
    state = load_checkpoint_state(CHECKPOINT)
    assert detect_config(state) == BEETLE_CONFIG
    assert config_info(BEETLE_CONFIG).label == "SAM2.1 beetle demo model"


def test_checkpoint_loads_and_segments_a_synthetic_image():
    torch.set_num_threads(1)
    from descriptron_sam2pal.engine.features import FeatureEncoder
    from descriptron_sam2pal.engine.memory_propagation import propagate
    from descriptron_sam2pal.engine.prepared_templates import Template
    from descriptron_sam2pal.engine.preprocess import prepare_image

    model = build_model(checkpoint=CHECKPOINT)  # config chosen from the weights
    assert model.config_name == BEETLE_CONFIG and model.image_size == 256
    assert model.checkpoint_hash is not None
    rng = np.random.default_rng(0)

    def specimen(shift):
        img = np.full((120, 160, 3), 235, np.uint8)
        img += rng.integers(0, 8, img.shape, dtype=np.uint8)
        body = np.zeros((120, 160), bool)
        body[30:90, 50 + shift:110 + shift] = True
        img[body] = (60, 40, 30)
        return img, body

    img0, body0 = specimen(0)
    img1, _ = specimen(12)
    template = Template("t0", prepare_image(img0, model.image_size), {"body": body0})
    encoder = FeatureEncoder(model)
    [result] = propagate(model, [template], [img1], encoder=encoder, confidence=True)
    assert result.ok and set(result.structures) == {"body"}
    s = result.structures["body"]
    assert 0.0 <= s.object_score <= 1.0 and np.isfinite(s.predicted_iou)
    if s.present:
        assert s.mask.shape == (120, 160)


def test_gui_offers_the_beetle_demo_when_no_checkpoint_is_found(qtbot, tmp_path, monkeypatch):
    from PyQt5.QtCore import QSettings

    from descriptron_sam2pal.gui.model_session import CheckpointPicker, ModelSession
    from descriptron_sam2pal.jobs.models import BEETLE_DEMO_CHOICE, ModelRequest, fixed_image_size, load_model

    monkeypatch.setenv("DESCRIPTRON_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.delenv("DESCRIPTRON_SAM2_CHECKPOINT", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    session = ModelSession(None, settings)
    picker = CheckpointPicker(session)
    qtbot.addWidget(picker)
    assert session.checkpoint_choice() is None
    assert not picker.beetle_demo_button.isHidden()
    picker.beetle_demo_button.click()
    assert session.is_beetle_demo and not session.is_demo
    assert "beetles only" in picker.label.text() and "not for real work" in picker.label.text()
    assert ModelSession(None, settings).checkpoint_choice() == BEETLE_DEMO_CHOICE  # remembered
    model = load_model(ModelRequest(BEETLE_DEMO_CHOICE, "cpu"))
    assert (
        model.config_name == "sam2pal_beetle"
        and model.image_size == fixed_image_size(BEETLE_DEMO_CHOICE) == 256
    )
    picker._choose(str(CHECKPOINT))  # a real checkpoint file: the beetle demo is no longer offered
    assert picker.beetle_demo_button.isHidden()


def _quality_module():
    from tests.helpers.benchmark_modules import load_benchmark

    return load_benchmark("benchmarks/quality.py", "quality_benchmark")


def test_the_committed_instruments_load_and_record_their_evaluation_photos():
    """``--checkpoint testbed`` / ``headout`` name committed files that say which photos they
    never trained on (what makes a rerun of the test-bed's tables possible)."""
    quality = _quality_module()
    assert quality.checkpoint_path("testbed") == quality.INSTRUMENTS["testbed"]
    assert quality.checkpoint_path("some/file.pt") == Path("some/file.pt")
    for name in ("testbed", "headout"):
        path = quality.INSTRUMENTS[name]
        assert path.is_file() and path.stat().st_size < 25e6
        assert detect_config(load_checkpoint_state(path)) == BEETLE_CONFIG
        meta = quality.checkpoint_meta(path)
        assert len(meta["eval_images"]) == 72 and meta["recipe"].startswith("benchmarks/testbed/")
    assert quality.checkpoint_meta(quality.INSTRUMENTS["testbed"])["class_agnostic"] is True
