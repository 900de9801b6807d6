"""Faults on a real gunicorn: a killed worker, a load spike far over the queue, a deadline."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest
import requests

from benchmarks.harness import Server, drive
from tests.helpers import jpeg_bytes, publish_model

pytestmark = pytest.mark.e2e


def worker_pids(server: Server) -> list[int]:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def post_image(server: Server, body: bytes | None = None) -> requests.Response:
    return requests.post(
        f"{server.url}/predict",
        data=body if body is not None else jpeg_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
    )


def wait_for(predicate, timeout: float = 90, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except requests.RequestException:  # a worker still loading holds the connection
            value = None
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not reached in time")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault-models")
    publish_model(root, "pets")
    return root


def test_a_worker_killed_mid_request_is_respawned(models):
    with Server(models, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        [first] = worker_pids(server)
        files = [("image", (f"{i}.jpg", jpeg_bytes((200, 200), seed=i))) for i in range(48)]
        outcome: dict = {}

        def slow_request() -> None:
            try:
                outcome["status"] = requests.post(
                    f"{server.url}/predict", files=files, timeout=60
                ).status_code
            except requests.RequestException as exc:
                outcome["error"] = type(exc).__name__

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.3)  # the worker is decoding and predicting
        os.kill(first, signal.SIGKILL)
        thread.join(60)
        assert outcome  # the client got an answer or a closed connection, not a hang
        second = wait_for(lambda: [p for p in worker_pids(server) if p != first])
        assert second
        wait_for(lambda: requests.get(f"{server.url}/readyz", timeout=2).status_code == 200)
        response = post_image(server)
        assert response.status_code == 200
    assert server.process.returncode == 0


def test_ten_times_the_queue_gets_503_at_once_and_latency_recovers(models):
    capacity = 8
    env = {
        "MODEL_NAME": "pets",
        "MODEL_POLL_SECONDS": "0",
        "QUEUE_CAPACITY": str(capacity),
        "MAX_IMAGES_PER_REQUEST": "1",
        "MAX_BATCH_SIZE": "4",
        "GUNICORN_THREADS": "128",
    }
    bodies = [jpeg_bytes((320, 240), seed=i) for i in range(16)]
    with Server(models, **env) as server:
        server.wait_ready()
        before = drive(server.port, "/predict", bodies, 1, 30)
        spike = drive(server.port, "/predict", bodies, 10 * capacity, 800, max_seconds=60)
        after = drive(server.port, "/predict", bodies, 1, 30)
        response = post_image(server, bodies[0])
    assert set(spike.statuses) <= {200, 503}, spike.statuses  # nothing else fails
    assert spike.statuses.get(503, 0) > 0 and spike.statuses.get(200, 0) > 0
    assert before.errors == 0 and after.errors == 0 and response.status_code == 200
    # latency is back to normal once the spike has passed
    assert statistics.median(after.latencies_ms) < 3 * statistics.median(before.latencies_ms) + 20
    assert server.process.returncode == 0


def test_503_carries_retry_after_and_comes_back_fast(models):
    env = {
        "MODEL_NAME": "pets",
        "MODEL_POLL_SECONDS": "0",
        "QUEUE_CAPACITY": "1",
        "MAX_IMAGES_PER_REQUEST": "1",
        "MAX_BATCH_SIZE": "1",
        "GUNICORN_THREADS": "64",
    }
    body = jpeg_bytes((320, 240))
    results: list[tuple[int, str | None, float]] = []
    lock = threading.Lock()

    with Server(models, **env) as server:
        server.wait_ready()

        def client() -> None:
            session = requests.Session()
            for _ in range(10):
                started = time.perf_counter()
                r = session.post(
                    f"{server.url}/predict",
                    data=body,
                    headers={"Content-Type": "image/jpeg"},
                    timeout=30,
                )
                with lock:
                    results.append(
                        (r.status_code, r.headers.get("Retry-After"), time.perf_counter() - started)
                    )

        threads = [threading.Thread(target=client) for _ in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    rejected = [r for r in results if r[0] == 503]
    accepted = [r for r in results if r[0] == 200]
    assert len(rejected) + len(accepted) == len(results) == 240
    assert rejected and all(retry for _, retry, _ in rejected)
    # refused at once: a 503 is answered before any decoding and never waits for the model
    assert statistics.median(r[2] for r in rejected) < 1.0


def test_models_folder_replaced_by_a_file_keeps_serving(tmp_path):
    models = tmp_path / "models"
    publish_model(models, "pets")
    with Server(models, MODEL_NAME="pets", MODEL_POLL_SECONDS="0.2") as server:
        server.wait_ready()
        os.rename(models, tmp_path / "gone")
        models.write_text("not a folder any more")
        time.sleep(1.0)  # several polls
        response = post_image(server)
        assert response.status_code == 200
        status = requests.get(f"{server.url}/v1/models/pets", timeout=5).json()
        assert status["versions"] == [
            {
                "version": 1,
                "state": "AVAILABLE",
                "note": "removed from the store; served from memory",
            }
        ]
