"""Lifecycle on a real gunicorn: hot swap under load, and SIGTERM while requests are in flight."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from benchmarks.harness import Server
from tests.helpers import jpeg_bytes, publish_model

pytestmark = pytest.mark.e2e

POLL_SECONDS = 0.5


def test_publish_under_load_swaps_with_zero_failed_requests(models_dir):
    server = Server(models_dir, MODEL_NAME="pets", MODEL_POLL_SECONDS=str(POLL_SECONDS))
    try:
        server.wait_ready()
        body = jpeg_bytes((200, 160))
        records: list[tuple[float, float, int, int]] = []  # start, end, status, version
        lock = threading.Lock()
        stop = threading.Event()

        def client() -> None:
            session = requests.Session()
            deadline = time.monotonic() + 120  # bounded even if the swap never came
            while not stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = session.post(
                        f"{server.url}/predict",
                        data=body,
                        headers={"Content-Type": "image/jpeg"},
                        timeout=30,
                    )
                    status = response.status_code
                    version = int(response.headers.get("X-Model-Version", 0))
                except requests.RequestException:
                    status, version = 0, 0
                with lock:
                    records.append((started, time.monotonic(), status, version))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        published_at = time.monotonic()
        publish_model(models_dir, "pets", seed=9)  # v2
        load_done_by = published_at + 60
        while time.monotonic() < load_done_by:
            with lock:
                if any(v == 2 for *_, v in records):
                    break
            time.sleep(0.05)
        time.sleep(1.0)  # keep the load on after the swap
        stop.set()
        for thread in threads:
            thread.join(60)

        assert [r for r in records if r[2] != 200] == []  # zero failed requests
        swapped_at = min(end for _, end, _, v in records if v == 2)
        assert swapped_at - published_at < 30  # within the poll interval plus the load time
        late_old = [r for r in records if r[0] > swapped_at and r[3] != 2]
        assert late_old == []  # every request started after the swap got the new version
        assert sum(1 for r in records if r[3] == 1) > 0
    finally:
        assert server.stop() == 0


def test_sigterm_lets_accepted_requests_finish_then_exits_zero(models_dir):
    server = Server(models_dir, MODEL_NAME="pets", MODEL_POLL_SECONDS="0", GRACEFUL_TIMEOUT="30")
    server.wait_ready()
    files = [("image", (f"{i}.jpg", jpeg_bytes((200, 200), seed=i))) for i in range(32)]
    before = requests.get(f"{server.url}/v1/models/pets", timeout=5).json()["batching"]["images"]

    def post(_: int) -> int:
        return requests.post(f"{server.url}/predict", files=files, timeout=60).status_code

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(post, i) for i in range(6)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the server is working on them
            stats = requests.get(f"{server.url}/v1/models/pets", timeout=5).json()["batching"]
            if stats["images"] + stats["queued"] > before:
                break
            time.sleep(0.01)
        time.sleep(0.2)  # let every request be read
        server.process.send_signal(signal.SIGTERM)
        statuses = [f.result(60) for f in futures]
    assert statuses == [200] * 6
    assert server.process.wait(60) == 0
