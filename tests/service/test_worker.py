"""service/http/worker.py: its settings read once; on a real gunicorn, kept-alive
connections are answered by the thread they are on, more connections than threads still all
get answers, an idle connection is closed after the keep-alive timeout, and SIGTERM is not
held up."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time

import pytest
from gunicorn.config import Config

from benchmarks.harness import Server
from service.http.worker import Settled
from tests.helpers import jpeg_bytes

JPEG = {"Content-Type": "image/jpeg"}


def test_settled_settings_are_gunicorns_read_once():
    cfg = Config()
    settled = Settled(cfg)
    for name in [*cfg.settings, "is_ssl", "worker_class", "address", "env"]:
        assert getattr(settled, name) == getattr(cfg, name), name
    cfg.set("keepalive", 99)  # a worker's settings never change: read once, kept
    assert settled.keepalive == 2 and cfg.keepalive == 99


@pytest.mark.e2e
def test_the_service_runs_this_worker(models_template):
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        assert '"Using worker: service.http.worker.ThreadWorker"' in server.output()


@pytest.mark.e2e
def test_kept_alive_connections_beyond_the_threads_are_all_answered(models_template):
    env = {"MODEL_NAME": "pets", "MODEL_POLL_SECONDS": "0", "GUNICORN_THREADS": "2"}
    body = jpeg_bytes((64, 48))
    with Server(models_template, **env) as server:
        server.wait_ready()
        statuses: list[int] = []
        lock = threading.Lock()

        def client() -> None:  # 5 connections, 2 threads: each keeps its connection
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for _ in range(10):
                conn.request("POST", "/predict", body, JPEG)
                response = conn.getresponse()
                response.read()
                with lock:
                    statuses.append(response.status)
                time.sleep(0.02)
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert statuses == [200] * 50


@pytest.mark.e2e
def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(models_template):
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        started = time.monotonic()
        rest = conn.sock.recv(65536)  # b"" once the worker closes it (gunicorn keepalive: 5 s)
        waited = time.monotonic() - started
        conn.close()
        assert rest == b"" and 4 <= waited <= 12, waited


@pytest.mark.e2e
def test_sigterm_is_not_held_up_by_a_kept_alive_connection(models_template):
    server = Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0")
    try:
        server.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read()
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        assert time.monotonic() - started < 10
        conn.close()
    finally:
        server.stop()


@pytest.mark.e2e
def test_clients_that_keep_their_socket_after_connection_close_hold_up_nobody(models_template):
    """gthread closes an ended connection on the main thread, waiting up to 2 s for the
    client to close its side: three such clients held every other request for about 6 s."""
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        held = []
        for _ in range(3):  # each reads its answer, then keeps the socket open
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            held.append(sock)
        try:
            for sock in held:
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
            conn.close()
            assert time.monotonic() - started < 1
        finally:
            for sock in held:
                sock.close()
