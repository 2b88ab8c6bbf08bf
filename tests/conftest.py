"""Shared fixtures: offscreen Qt, small randomly initialised SAM2 checkpoints, the plugin's
GUI fixtures (a specimen folder, a workspace window, a model session), and the ``slow``
marker's switch.

Tests marked ``@pytest.mark.slow`` are skipped unless ``--run-slow`` is given or the
environment says ``SAM2PAL_RUN_SLOW=1`` (``.ci/run`` sets it, so CI runs everything).
Helpers that are not fixtures live in ``tests/helpers/``.
"""

import os

import pytest

from tests.helpers.mini_models import set_object_score_bias
from tests.helpers.plugin_gui import Messages, write_specimens


os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any test creates a QApplication

RUN_SLOW_ENV = "SAM2PAL_RUN_SLOW"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help=f"also run tests marked slow (or set {RUN_SLOW_ENV}=1)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get(RUN_SLOW_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"slow: run with --run-slow or {RUN_SLOW_ENV}=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mini_checkpoint(tmp_path_factory):
    """A randomly initialised ``sam2pal_mini`` checkpoint file ({"model": state_dict})."""
    import torch

    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    path = tmp_path_factory.mktemp("ckpt") / "sam2pal_mini.pt"
    model = build_model(MINI_CONFIG, seed=0)
    torch.save({"model": model.sam.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def present_checkpoint(tmp_path_factory):
    """The mini model with its object-score head biased to say "present", so every run
    writes masks (a random model otherwise calls most structures absent)."""
    import torch

    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    model = build_model(MINI_CONFIG, seed=0)
    set_object_score_bias(model, 3.0)
    path = tmp_path_factory.mktemp("ckpt") / "present.pt"
    torch.save({"model": model.sam.state_dict()}, path)
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread per test: on the shared 2-core CI/dev machines two threads
    under contention made single steps take seconds instead of 0.1 s."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the plugin's GUI: a specimen folder, a workspace window, a model session ---

@pytest.fixture
def specimens(tmp_path):
    return write_specimens(tmp_path / "specimens")


@pytest.fixture
def messages(monkeypatch) -> Messages:
    """Every QMessageBox is recorded and answered (queue answers in ``messages.answers``)."""
    from PyQt5.QtWidgets import QMessageBox

    m = Messages()
    monkeypatch.setattr(QMessageBox, "exec_", lambda box: m.exec_(box))
    return m


@pytest.fixture
def dialogs(messages) -> Messages:
    """``messages`` under the name the workspace and review tests use."""
    return messages


@pytest.fixture
def settings(tmp_path):
    from PyQt5.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def window(qtbot, settings, messages):
    """The workspace window with the plugin loaded; on teardown running workers are
    cancelled and awaited, and the close questions answered (keep, discard)."""
    from PyQt5.QtWidgets import QMessageBox

    from descriptron_sam2pal.app.workspace import Workspace
    from descriptron_sam2pal.gui.workers import running_workers

    win = Workspace(settings=settings)
    win.resize(900, 600)
    win.show()
    qtbot.waitExposed(win)
    yield win
    for worker in running_workers():
        worker.cancel()
        worker.wait(20000)
    qtbot.wait(10)  # deliver the workers' last signals
    messages.answers = [QMessageBox.Yes, QMessageBox.Discard]
    win.close()
    win.image_loader.wait(5000)
    win.deleteLater()


@pytest.fixture
def session(window, settings, mini_checkpoint):
    """A model session on the mini checkpoint at 128 px (nothing loaded yet)."""
    from descriptron_sam2pal.gui.model_session import ModelSession

    s = ModelSession(window, settings, image_size=128)
    s.set_checkpoint(str(mini_checkpoint))
    return s
