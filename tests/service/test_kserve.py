"""KServe's own Python SDK (its V1 protocol REST client) against a real gunicorn: liveness on
`GET /`, model readiness from `GET /v1/models/<name>`'s `ready`, and V1 predict.

The SDK runs in a process of its own: importing it registers KServe's copy of the
`inference` protos in protobuf's default pool, which refuses them where tritonclient.grpc
(other tests in this process) has registered its copy already.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import requests

from benchmarks.harness import Server
from tests.helpers import jpeg_bytes

pytestmark = pytest.mark.e2e

ASK = """
import asyncio, base64, json, sys
from kserve import InferenceRESTClient, RESTConfig

async def ask(url, photo):
    client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
    try:
        return [
            await client.is_server_live(url),
            await client.is_model_ready(url, "pets"),
            await client.is_model_ready(url, "broken"),
            await client.infer(url, {"instances": [{"b64": photo}] * 2}, model_name="pets"),
        ]
    finally:
        await client.close()

photo = base64.b64encode(open(sys.argv[2], "rb").read()).decode()
print(json.dumps(asyncio.run(ask(sys.argv[1], photo))))
"""


@pytest.fixture(scope="module")
def served(models_template, tmp_path_factory):
    """Model "pets" ready, and model "broken" whose only version cannot load."""
    store = tmp_path_factory.mktemp("kserve") / "models"
    shutil.copytree(models_template, store)
    (store / "broken" / "1").mkdir(parents=True)
    (store / "broken" / "1" / "metadata.json").write_text("{}")
    with Server(store, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        yield server.wait_ready()


def test_kserve_v1_client_sees_liveness_readiness_and_predictions(served, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(seed=4))
    done = subprocess.run(
        [sys.executable, "-c", ASK, served.url, str(photo)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    live, ready, broken_ready, answer = json.loads(done.stdout.splitlines()[-1])
    assert live is True and ready is True and broken_ready is False
    [first, second] = answer["predictions"]
    assert first == second and first["label"] in ("cats", "dogs")
    assert sum(first["probabilities"]) == pytest.approx(1)
    # TensorFlow Serving's fields are still there beside KServe's
    status = requests.get(f"{served.url}/v1/models/broken", timeout=10).json()
    assert status["ready"] is False and status["model_version_status"][0]["state"] == "END"


def test_browsers_keep_the_demo_page(served):
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = requests.get(served.url, headers={"Accept": accept}, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html") and 'id="file"' in page.text
    assert requests.get(served.url, timeout=10).json() == {"status": "alive"}
