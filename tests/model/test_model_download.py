"""Downloading checkpoints: .part file, resume, checks, cancel, network errors
(against a local HTTP server on 127.0.0.1)."""

import hashlib
import io
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from descriptron_sam2pal import UserError
from descriptron_sam2pal.model.checkpoints import DownloadCancelled, download_checkpoint

NAME = "sam2.1_hiera_tiny.pt"


def _payload() -> bytes:
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.arange(700_000, dtype=torch.float32)}}, buf)  # ~2.8 MB
    return buf.getvalue()


PAYLOAD = _payload()


class _Handler(BaseHTTPRequestHandler):
    """/ok (Range aware), /truncate (announces all, sends half), /html, else 404."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        route = self.path.split("/")[1]
        if route == "ok":
            start = 0
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if match:
                start = int(match.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD) - start))
            self.end_headers()
            self.wfile.write(PAYLOAD[start:])
        elif route == "truncate":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif route == "html":
            body = b"<html>Please log in</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_with_progress(server, tmp_path):
    _, base = server
    seen = []
    path = download_checkpoint(NAME, tmp_path, url=f"{base}/ok/{NAME}",
                               progress=lambda done, total: seen.append((done, total)),
                               expected_size=len(PAYLOAD),
                               expected_sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert path == tmp_path / NAME and path.read_bytes() == PAYLOAD
    assert _files(tmp_path) == [NAME]
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert len(seen) >= 3
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


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
                               progress=lambda d, t: seen.append((d, t)))
    assert path.read_bytes() == PAYLOAD and _files(tmp_path) == [NAME]
    assert httpd.requests[-1] == (f"/ok/{NAME}", f"bytes={len(PAYLOAD) // 2}-")
    assert seen[0] == (len(PAYLOAD) // 2, len(PAYLOAD))


def test_cancel_keeps_part_for_resume(server, tmp_path):
    _, base = server
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1  # after the first chunk

    with pytest.raises(DownloadCancelled, match="cancelled"):
        download_checkpoint(NAME, tmp_path, url=f"{base}/ok/{NAME}", cancel=cancel)
    assert _files(tmp_path) == [NAME + ".part"]
    assert 0 < (tmp_path / (NAME + ".part")).stat().st_size < len(PAYLOAD)
    assert download_checkpoint(NAME, tmp_path, url=f"{base}/ok/{NAME}").read_bytes() == PAYLOAD


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
        download_checkpoint(NAME, tmp_path, url=f"http://127.0.0.1:{port}/x", timeout=5)
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
