"""The Train dialog's first guess (jobs/estimate.py): what it counts, and that it follows the
computer it runs on. Never a speed: only how the parts add up."""

from __future__ import annotations

import pytest

from descriptron_sam2pal.engine.pseudo_labels import MAX_IMAGES
from descriptron_sam2pal.engine.trainer import TrainConfig
from descriptron_sam2pal.jobs import estimate
from descriptron_sam2pal.jobs.estimate import segmenting_seconds, size_factor, training_seconds


@pytest.fixture
def unit_machine(monkeypatch):
    """A computer exactly as fast as the one that measured the costs."""
    monkeypatch.setattr(estimate, "machine_factor", lambda: 1.0)


def test_training_counts_steps_remakes_validations_encoder_and_setup(unit_machine):
    config = TrainConfig()
    k, n = 5, 100
    plain = training_seconds(300, 512, False, structures=k, unlabeled=n, pseudo=False)
    trained = len(config.step_structures(k, 0))  # a step trains its share of the structures
    steps = 300 * estimate.STEP_SECONDS * trained
    validations = (1 + 300 // config.validate_every) * config.val_images * estimate.DECODE_SECONDS * k
    encoder = (n + 1) * estimate.ENCODER_SECONDS
    assert plain == pytest.approx(steps + validations + encoder + estimate.SETUP_SECONDS)
    with_pseudo = training_seconds(300, 512, False, structures=k, unlabeled=n, pseudo=True)
    remakes = 3 * min(n, MAX_IMAGES) * estimate.REMAKE_SECONDS * k  # steps 0, 125, 250
    assert with_pseudo - plain == pytest.approx(remakes)
    # A remake takes a window of the pool, so a bigger pool does not make remakes dearer.
    assert training_seconds(300, 512, False, unlabeled=1000) - training_seconds(
        300, 512, False, unlabeled=100
    ) == pytest.approx(900 * estimate.ENCODER_SECONDS)


def test_sizes_models_precision_and_the_computer_scale_the_guess(monkeypatch, unit_machine):
    assert size_factor(512) == 1.0 and size_factor(256) < size_factor(384) < 1.0 < size_factor(1024)
    base = training_seconds(100, 512, False)
    assert training_seconds(100, 512, False, bf16=True) < base
    assert training_seconds(100, 512, False, model_size="large") > base > training_seconds(100, 512, True)
    assert segmenting_seconds(10, 512, False, confidence=True) > segmenting_seconds(10, 512, False)
    monkeypatch.setattr(estimate, "machine_factor", lambda: 2.0)  # a computer half as fast
    assert training_seconds(100, 512, False) == pytest.approx(2 * base)


def test_the_probe_measures_this_computer():
    estimate.machine_factor.cache_clear()
    factor = estimate.machine_factor()
    assert factor > 0 and estimate.machine_factor() == factor  # measured once per process


def test_a_measured_run_replaces_the_guess_and_scales_to_other_sizes():
    table = estimate.step_table("not json")
    assert table == {} and estimate.step_table("[1, 2]") == {}
    key = estimate.step_key("tiny", gpu=False, pseudo=True)
    assert key == "tiny|cpu+pseudo"
    assert not estimate.remember_step_seconds(table, key, [{"seconds": 1.0}] * 2, 256)  # too few steps
    history = [{"seconds": s} for s in (3.0, 1.0, 2.0)] + [{"pseudo_seconds": 6.0}]
    assert estimate.remember_step_seconds(table, key, history, 256)
    assert estimate.measured_step_seconds(table, key) == {256: pytest.approx(2.0 + 6.0 / 3)}
    assert estimate.measured_step_seconds(table, "tiny|cpu") == {}  # another kind of run

    def never() -> float:
        raise AssertionError("the first guess is not needed when a run measured it")

    measured = estimate.measured_step_seconds(table, key)
    assert estimate.training_estimate(10, 256, measured, never) == (40.0, 40.0, "measured on this computer")
    low, high, how = estimate.training_estimate(10, 512, measured, never)
    assert (low, high) == pytest.approx((0.8 * 160, 1.5 * 160)) and "256 px" in how  # 4x the pixels
    assert estimate.training_estimate(10, 512, {}, lambda: 100.0)[:2] == (75.0, 130.0)
    text = estimate.estimate_text(10, 256, False, (40.0, 40.0, "measured on this computer"))
    assert text == (
        "10 steps at 256 px on the CPU: about 40 s (measured on this computer), plus reading the images"
    )
