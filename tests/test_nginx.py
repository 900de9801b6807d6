"""deploy/nginx.conf in front of a real gunicorn: slow clients do not hold the service's threads.

Uses Debian's nginx (make test installs it as root); traffic stays on 127.0.0.1 and every
client stops by itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from benchmarks.harness import Server, free_port
from tests.helpers import REPO, jpeg_bytes, publish_model

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
DRIBBLE_SECONDS = 6.0


def nginx_config(tmp: Path, listen: int, upstream: int) -> Path:
    """The deployment config, pointed at loopback ports and a private prefix."""
    text = (REPO / "deploy" / "nginx.conf").read_text()
    assert "server api:8000" in text and "listen 8080;" in text
    text = text.replace("server api:8000", f"server 127.0.0.1:{upstream}")
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    private = "\n".join(
        f"    {name}_temp_path {tmp / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {", f"http {{\n    access_log off;\n{private}", 1)
    head = f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'};\n"
    if os.geteuid() == 0:
        head += "user root;\n"
    path = tmp / "nginx.conf"
    path.write_text(head + text)
    return path


def dribble(port: int, stop: threading.Event, body: bytes) -> None:
    """A slow client: headers at once, then the body a few bytes at a time."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            deadline = time.monotonic() + DRIBBLE_SECONDS
            sent = 0
            while not stop.is_set() and time.monotonic() < deadline and sent < len(body) - 1:
                sock.sendall(body[sent : sent + 4])
                sent += 4
                time.sleep(0.1)
    except OSError:
        pass


def timed_request(port: int, body: bytes) -> float | None:
    started = time.monotonic()
    try:
        response = requests.post(
            f"http://127.0.0.1:{port}/predict",
            data=body,
            headers={"Content-Type": "image/jpeg"},
            timeout=2.5,
        )
    except requests.Timeout:
        return None
    assert response.status_code == 200
    return time.monotonic() - started


def with_slow_clients(port: int, body: bytes, count: int = 6) -> float | None:
    stop = threading.Event()
    threads = [threading.Thread(target=dribble, args=(port, stop, body)) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every slow client is connected and sending
    try:
        return timed_request(port, body)
    finally:
        stop.set()
        for thread in threads:
            thread.join(DRIBBLE_SECONDS + 5)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    models = tmp_path_factory.mktemp("nginx-models")
    publish_model(models, "pets")
    # Two threads: without a buffer in front, two slow clients take the whole worker.
    with Server(models, MODEL_NAME="pets", MODEL_POLL_SECONDS="0", GUNICORN_THREADS="2") as srv:
        yield srv.wait_ready()


@pytest.fixture(scope="module")
def nginx(service, tmp_path_factory):
    if NGINX is None:
        pytest.skip("Debian's nginx is not installed (make test installs it as root)")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = nginx_config(tmp, port, service.port)
    check = subprocess.run(
        [NGINX, "-t", "-c", str(config), "-p", str(tmp)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(tmp), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def test_nginx_passes_requests_and_limits_bodies(nginx):
    response = requests.post(
        f"http://127.0.0.1:{nginx}/predict",
        data=jpeg_bytes(),
        headers={"Content-Type": "image/jpeg", "X-Request-ID": "through-nginx"},
        timeout=10,
    )
    assert response.status_code == 200
    # Refused by nginx from the headers alone, before any body reaches a worker.
    with socket.create_connection(("127.0.0.1", nginx), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 11534336\r\n\r\n"
        )
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413")
    assert '"code": "payload_too_large"' in answer  # JSON, like the service's own errors


def test_slow_clients_hold_gunicorn_directly_but_not_through_nginx(service, nginx):
    body = jpeg_bytes((200, 150))
    direct = with_slow_clients(service.port, body)
    proxied = with_slow_clients(nginx, body)
    assert direct is None  # both threads were held by slow uploads: the request timed out
    assert proxied is not None and proxied < 2.5
