"""A throwaway loopback HTTP server for retry tests: refuses first, then forwards (or never)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests.helpers import encode, jpeg_bytes, noise_image


class FlakyServer:
    """Answers `status` (with Retry-After when given, and the `error` body: JSON, or a str
    sent as an HTML page) to the first `fail_first` POSTs, then forwards each POST to
    `upstream` (with its content type, API key and request id); with no upstream it keeps
    refusing. Counts requests."""

    def __init__(
        self,
        upstream: str | None = None,
        fail_first: float = math.inf,
        retry_after: str | None = "1",
        status: int = 503,
        error: dict | str | None = None,
    ) -> None:
        self.upstream = upstream
        self.fail_first = fail_first
        self.retry_after = retry_after
        self.status = status
        self.error = error or {"error": {"code": "queue_full", "message": "busy, retry shortly"}}
        self.requests = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FlakyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _refuse(self) -> bool:
        with self._lock:
            self.requests += 1
            return self.requests <= self.fail_first or self.upstream is None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if fake._refuse():
                    headers = {"Retry-After": fake.retry_after} if fake.retry_after else {}
                    if isinstance(fake.error, str):
                        headers["Content-Type"] = "text/html"
                        self._answer(fake.status, fake.error.encode(), headers)
                    else:
                        self._answer(fake.status, json.dumps(fake.error).encode(), headers)
                    return
                passed = {"content-type", "authorization", "x-api-key", "x-request-id"}
                answer = requests.post(
                    f"{fake.upstream}{self.path}",
                    data=body,
                    headers={k: v for k, v in self.headers.items() if k.lower() in passed},
                    timeout=30,
                )
                self._answer(answer.status_code, answer.content, {})

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                if "Content-Type" not in headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet
                pass

        return Handler


GOOD = ("a.jpg", "b.jpeg", "sub/c.png", "sub/deeper/d.PNG")


def make_folder(root: Path) -> Path:
    """Four good images (JPEG and PNG, nested), one corrupt file, and a file that is skipped."""
    files = {
        "a.jpg": jpeg_bytes((64, 48), seed=1),
        "b.jpeg": jpeg_bytes((90, 70), seed=2),
        "sub/c.png": encode(noise_image((50, 70), seed=3), "PNG"),
        "sub/deeper/d.PNG": encode(noise_image((64, 64), seed=4), "PNG"),
        "broken.jpg": b"this is not an image at all",
        "notes.txt": b"not searched for",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class SilentServer:
    """A loopback port that takes connections and requests and never answers; `connected`
    is set once a client has connected."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            while True:
                connection, _ = self._socket.accept()
                self._held.append(connection)  # read nothing, answer nothing
                self.connected.set()
        except OSError:  # closed
            pass

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc) -> None:
        self._socket.close()
        for connection in self._held:
            connection.close()


class TrickleServer(FlakyServer):
    """Answers every POST 200 with a predict answer, one byte every `every` seconds."""

    def __init__(self, every: float = 0.3, first: float = 0.0) -> None:
        self.every = every
        self.first = first  # seconds before the headers
        super().__init__(None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b'{"model": {"name": "pets", "version": 1}, "predictions": []}'
                time.sleep(fake.first)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(fake.every)

            def log_message(self, *args) -> None:
                pass

        return Handler
