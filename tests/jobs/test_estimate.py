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
    steps = 300 * estimate.STEP_SECONDS * k
    validations = (1 + 300 // config.validate_every) * config.val_images * estimate.DECODE_SECONDS * k
    encoder = (n + 1) * estimate.ENCODER_SECONDS
    assert plain == pytest.approx(steps + validations + encoder + estimate.SETUP_SECONDS)
    with_pseudo = training_seconds(300, 512, False, structures=k, unlabeled=n, pseudo=True)
    remakes = 6 * min(n, MAX_IMAGES) * estimate.REMAKE_SECONDS * k  # steps 0, 50, ..., 250
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
