"""Download... in the GUI drives the Download use case in a worker (local server on 127.0.0.1):
the progress dialog follows the bytes, the file becomes the model, and Cancel stops it without
a checkpoint under its name."""

from PyQt5.QtWidgets import QPushButton

from descriptron_sam2pal.gui.model_session import CheckpointPicker, ModelSession
from descriptron_sam2pal.jobs.checkpoint_download import DownloadRequest
from tests.helpers.checkpoint_server import NAME, PAYLOAD, files_in, serve_checkpoints


def test_a_download_becomes_the_model_and_cancel_keeps_only_the_part(qtbot, window, settings, messages,
                                                                     tmp_path):
    session = ModelSession(window, settings, image_size=128)
    picker = CheckpointPicker(session)
    qtbot.addWidget(picker)
    with serve_checkpoints() as (_, base):
        worker = picker.download(DownloadRequest(NAME, tmp_path, url=f"{base}/ok/{NAME}"))
        labels = []
        worker.progress.connect(lambda _p: labels.append(worker.dialog.labelText()))
        assert not picker.download_button.isEnabled()
        qtbot.waitUntil(lambda: not worker.is_running(), timeout=30000)
        assert (tmp_path / NAME).read_bytes() == PAYLOAD
        assert session.checkpoint_choice() == str(tmp_path / NAME)  # the download is the model now
        assert labels and labels[-1] == f"Downloading {NAME}: 3 of 3 MB"
        assert picker.download_button.isEnabled() and not worker.dialog.isVisible()

        folder = tmp_path / "cancelled"
        worker = picker.download(DownloadRequest(NAME, folder, url=f"{base}/slow/{NAME}"))
        cancelled = []
        worker.cancelled.connect(lambda: cancelled.append(True))
        cancel_button = worker.dialog.findChild(QPushButton)
        assert cancel_button.text() == "Cancel"
        worker.progress.connect(lambda p: p.done > 0 and cancel_button.click())
        qtbot.waitUntil(lambda: not worker.is_running(), timeout=30000)
    assert cancelled == [True] and messages.seen == []  # no error dialog for a cancel
    assert files_in(folder) == [NAME + ".part"] and (folder / (NAME + ".part")).stat().st_size < len(PAYLOAD)
    assert session.checkpoint_choice() == str(tmp_path / NAME)
