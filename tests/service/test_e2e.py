"""End to end: a real gunicorn process on a free loopback port, serving the shipped model."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from benchmarks.harness import Server
from classifier.predictor import load_predictor
from classifier.preprocess import decode_image
from classifier.store import ModelStore
from tests.helpers import SHARED_DATA, SHIPPED_MODELS, jpeg_bytes

pytestmark = pytest.mark.e2e


def sample_jpeg() -> tuple[str, bytes]:
    """A real photo where the shared data is present, else a generated JPEG."""
    folder = SHARED_DATA / "validation" / "dogs"
    if folder.is_dir():
        path = sorted(folder.iterdir())[0]
        return path.name, path.read_bytes()
    return "generated.jpg", jpeg_bytes((320, 240))


@pytest.fixture(scope="module")
def server():
    # A short batch window makes batching visible even on a loaded CI machine.
    srv = Server(SHIPPED_MODELS, GUNICORN_THREADS="16", BATCH_TIMEOUT_MS="10")
    srv.wait_ready()
    yield srv
    code = srv.stop()
    assert code == 0, srv.output()


@pytest.fixture(scope="module")
def shipped_predictor():
    return load_predictor(ModelStore(SHIPPED_MODELS), "cats_vs_dogs")


def test_predict_with_the_shipped_model(server, shipped_predictor):
    name, data = sample_jpeg()
    response = requests.post(f"{server.url}/predict", files={"image": (name, data)}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "cats_vs_dogs", "version": shipped_predictor.version}
    [item] = body["predictions"]
    assert item["filename"] == name
    assert item["label"] in ("cats", "dogs")
    # Parity: the service answers what the predictor answers on classifier preprocessing.
    expected = shipped_predictor.predict_proba(decode_image(data, shipped_predictor.spec)[None])
    assert abs(item["probabilities"]["dogs"] - float(expected[0])) <= 1e-5


def test_raw_and_json_bodies(server):
    _, data = sample_jpeg()
    raw = requests.post(
        f"{server.url}/predict", data=data, headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert raw.status_code == 200
    assert raw.headers["X-Model-Version"] == str(raw.json()["model"]["version"])


def test_concurrent_requests_are_batched_and_all_succeed(server):
    images = [jpeg_bytes((200, 150), seed=i) for i in range(48)]
    url = f"{server.url}/v1/models/cats_vs_dogs:predict"

    def post(data: bytes) -> float:
        response = requests.post(url, files={"image": ("x.jpg", data)}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]["probabilities"]["dogs"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, images))
    # Batched answers are the answers each image gets alone.
    for data, answer in list(zip(images, answers, strict=True))[:4]:
        assert post(data) == pytest.approx(answer, abs=1e-5)
    batching = requests.get(f"{server.url}/v1/models/cats_vs_dogs", timeout=5).json()["batching"]
    assert batching["images"] >= len(images)
    assert max(int(size) for size in batching["batch_sizes"]) > 1, batching


def test_errors_over_http(server):
    big = b"\xff\xd8" + os.urandom(11 * 1024 * 1024)
    response = requests.post(
        f"{server.url}/predict", data=big, headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    bad = requests.post(f"{server.url}/predict", files={"image": ("a.txt", b"text")}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "not_an_image"
    # The worker is still serving after the errors.
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200


def test_port_and_models_come_from_the_environment(tmp_path):
    srv = Server(tmp_path)  # an empty store: alive but never ready
    try:
        deadline = time.monotonic() + 120
        response = None
        while response is None and time.monotonic() < deadline:
            if srv.process.poll() is not None:  # e.g. its port taken meanwhile: say so now
                pytest.fail(f"the server exited {srv.process.returncode}:\n{srv.output()}")
            try:
                response = requests.get(f"{srv.url}/readyz", timeout=2)
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.3)
        assert response is not None and response.status_code == 503
        assert requests.get(f"{srv.url}/healthz", timeout=2).status_code == 200
    finally:
        assert srv.stop() == 0


def test_gunicorn_bounds_request_headers(server):
    response = requests.get(f"{server.url}/healthz", headers={"X-Big": "a" * 9000}, timeout=10)
    assert response.status_code in (400, 431)
    many = {f"X-H{i}": "1" for i in range(120)}
    assert requests.get(f"{server.url}/healthz", headers=many, timeout=10).status_code in (400, 431)
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
