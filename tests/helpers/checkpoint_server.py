"""A local HTTP server on 127.0.0.1 that serves a small PyTorch checkpoint, for the download tests
(the use case, the command line and the GUI's dialog): ``/ok/NAME`` (Range aware), ``/truncate/NAME``
(announces all, sends half), ``/slow/NAME`` (a quarter of a MB every 0.2 s, for a person's
Cancel to arrive during the transfer), ``/html`` (an error page), anything else 404."""

from __future__ import annotations

import contextlib
import io
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = "sam2.1_hiera_tiny.pt"


def checkpoint_bytes() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"model": {"w": torch.arange(700_000, dtype=torch.float32)}}, buf)  # ~2.8 MB
    return buf.getvalue()


PAYLOAD = checkpoint_bytes()


class _Handler(BaseHTTPRequestHandler):
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
        elif route == "slow":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            for start in range(0, len(PAYLOAD), 1 << 18):
                try:
                    self.wfile.write(PAYLOAD[start : start + (1 << 18)])
                    self.wfile.flush()
                except OSError:  # the client stopped reading
                    return
                time.sleep(0.2)
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


@contextlib.contextmanager
def serve_checkpoints():
    """(server, base URL); ``server.requests`` lists (path, Range header) of every request."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
