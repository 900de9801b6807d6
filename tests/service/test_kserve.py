"""KServe's own Python SDK (its V1 protocol REST client) against a real gunicorn: liveness on
`GET /`, model readiness from `GET /v1/models/<name>`'s `ready`, and V1 predict."""

from __future__ import annotations

import asyncio
import base64
import shutil

import pytest
import requests
from kserve import InferenceRESTClient, RESTConfig

from benchmarks.harness import Server
from tests.helpers import jpeg_bytes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(models_template, tmp_path_factory):
    """Model "pets" ready, and model "broken" whose only version cannot load."""
    store = tmp_path_factory.mktemp("kserve") / "models"
    shutil.copytree(models_template, store)
    (store / "broken" / "1").mkdir(parents=True)
    (store / "broken" / "1" / "metadata.json").write_text("{}")
    with Server(store, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        yield server.wait_ready()


async def ask(url: str) -> tuple:
    client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
    try:
        photo = base64.b64encode(jpeg_bytes(seed=4)).decode()
        return (
            await client.is_server_live(url),
            await client.is_model_ready(url, "pets"),
            await client.is_model_ready(url, "broken"),
            await client.infer(url, {"instances": [{"b64": photo}] * 2}, model_name="pets"),
        )
    finally:
        await client.close()


def test_kserve_v1_client_sees_liveness_readiness_and_predictions(served):
    live, ready, broken_ready, answer = asyncio.run(ask(served.url))
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
