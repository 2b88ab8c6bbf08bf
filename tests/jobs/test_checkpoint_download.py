"""The Download use case: .part file, resume, checks, cancel, network errors (against a local
HTTP server on 127.0.0.1), reported as engine Progress and stopped by a CancelToken."""

import hashlib
import re
import socket

import pytest

from descriptron_sam2pal import UserError
from descriptron_sam2pal.engine.control import CancelToken
from descriptron_sam2pal.jobs.checkpoint_download import DownloadCancelled, DownloadRequest, download_run
from tests.helpers.checkpoint_server import NAME, PAYLOAD, files_in as _files, serve_checkpoints


@pytest.fixture(scope="module")
def server():
    with serve_checkpoints() as served:
        yield served


def download_checkpoint(name, dest_dir=None, url=None, progress=None, cancel=None, **checks):
    """The use case with the arguments these tests were first written with."""
    return download_run(DownloadRequest(name, dest_dir, url, **checks), progress=progress, cancel=cancel)


def test_download_with_progress(server, tmp_path):
    _, base = server
    seen = []
    path = download_checkpoint(NAME, tmp_path, url=f"{base}/ok/{NAME}",
                               progress=lambda p: seen.append((p.done, p.total)),
                               expected_size=len(PAYLOAD),
                               expected_sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert path == tmp_path / NAME and path.read_bytes() == PAYLOAD
    assert _files(tmp_path) == [NAME]
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert len(seen) >= 3
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    reports = []
    download_checkpoint(NAME, tmp_path / "again", url=f"{base}/ok/{NAME}", progress=reports.append)
    assert {p.stage for p in reports} == {"download"} and reports[-1].fraction == 1.0


def test_default_destination_is_the_cache(server, tmp_path, monkeypatch):
    _, base = server
    monkeypatch.setenv("DESCRIPTRON_CACHE", str(tmp_path / "cache"))
    path = download_checkpoint(NAME, url=f"{base}/ok/{NAME}")
    assert path == tmp_path / "cache" / "sam2" / NAME


@pytest.mark.parametrize("check", [{"expected_size": len(PAYLOAD) + 1},
                                   {"expected_sha256": "0" * 64}])
def test_wrong_size_or_hash_keeps_nothing(server, tmp_path, check):
    _, base = server
    with pytest.raises(UserError, match="is not a valid checkpoint .*nothing was kept"):
        download_checkpoint(NAME, tmp_path, url=f"{base}/ok/{NAME}", **check)
    assert _files(tmp_path) == []


def test_error_page_is_not_kept(server, tmp_path):
    _, base = server
    with pytest.raises(UserError, match="not a PyTorch checkpoint file"):
        download_checkpoint(NAME, tmp_path, url=f"{base}/html")
    assert _files(tmp_path) == []


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path):
    httpd, base = server
    with pytest.raises(UserError, match="check the network or download the file manually into"):
        download_checkpoint(NAME, tmp_path, url=f"{base}/truncate/{NAME}")
    assert _files(tmp_path) == [NAME + ".part"]
    assert (tmp_path / (NAME + ".part")).stat().st_size == len(PAYLOAD) // 2
    seen = []
    path = download_checkpoint(NAME, tmp_path, url=f"{base}/ok/{NAME}",
                               progress=lambda p: seen.append((p.done, p.total)))
    assert path.read_bytes() == PAYLOAD and _files(tmp_path) == [NAME]
    assert httpd.requests[-1] == (f"/ok/{NAME}", f"bytes={len(PAYLOAD) // 2}-")
    assert seen[0] == (len(PAYLOAD) // 2, len(PAYLOAD))


def test_cancel_keeps_part_for_resume(server, tmp_path):
    """A Cancel stops the download at the next chunk: no checkpoint under its name, only the
    .part, which the next download resumes from."""
    httpd, base = server
    token = CancelToken()
    seen = []

    def progress(report):
        seen.append(report.done)
        if report.done > 0:
            token.cancel()  # after the first chunk, as the GUI's Cancel button does

    with pytest.raises(DownloadCancelled, match="cancelled"):
        download_checkpoint(NAME, tmp_path, url=f"{base}/ok/{NAME}", progress=progress, cancel=token)
    assert _files(tmp_path) == [NAME + ".part"]
    kept = (tmp_path / (NAME + ".part")).stat().st_size
    assert 0 < kept == seen[-1] < len(PAYLOAD)
    assert download_checkpoint(NAME, tmp_path, url=f"{base}/ok/{NAME}").read_bytes() == PAYLOAD
    assert httpd.requests[-1] == (f"/ok/{NAME}", f"bytes={kept}-") and _files(tmp_path) == [NAME]


def test_network_failures_are_user_errors(server, tmp_path):
    _, base = server
    with pytest.raises(
        UserError, match=r"HTTP 404.*download the file manually into " + re.escape(str(tmp_path))
    ):
        download_checkpoint(NAME, tmp_path, url=f"{base}/missing")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="could not download .*check the network"):
        download_checkpoint(NAME, tmp_path, url=f"http://127.0.0.1:{port}/x", timeout=5.0)
    assert _files(tmp_path) == []


def test_existing_file_is_not_downloaded_again(server, tmp_path):
    httpd, _ = server
    (tmp_path / NAME).write_bytes(PAYLOAD)
    before = len(httpd.requests)
    # No url: it would be Meta's, but the file is already there and valid.
    assert download_checkpoint(NAME, tmp_path) == tmp_path / NAME
    assert len(httpd.requests) == before


def test_names_are_checked():
    with pytest.raises(UserError, match="not one of Meta's SAM2 checkpoints"):
        download_checkpoint("my_model.pt", "/tmp/unused")
    with pytest.raises(UserError, match="plain file name"):
        download_checkpoint("../evil.pt", "/tmp/unused", url="http://127.0.0.1:1/")
