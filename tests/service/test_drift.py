"""Drift: the windows and their report, and end to end on real gunicorn: a balanced stream of
the validation photos is not drifting, a stream of one class is, in /drift and in /metrics; a
version published without a reference gets one from training.drift_reference while served."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from benchmarks.harness import Server
from classifier.metadata import DriftReference
from service.drift import DriftWindows
from tests.helpers import REPO, SHIPPED_MODELS, make_dataset, publish_model

REFERENCE = DriftReference.model_validate(
    {
        "of": "validation",
        "count": 100,
        "class_mix": {"cats": 0.5, "dogs": 0.5},
        "confidence": {"edges": [0.5, 0.75, 1.0], "fractions": [0.5, 0.5]},
    }
)


class Model:
    """What a report reads of a served model."""

    name, version = "pets", 1

    class predictor:
        class_names = ("cats", "dogs")


def test_the_window_holds_the_last_answers_and_judges_from_enough_of_them():
    windows = DriftWindows(size=200, threshold=0.2)
    report = windows.report(Model, REFERENCE)
    assert report.answers == 0 and report.drifting is None and report.psi_class_mix is None
    windows.add("pets", 1, np.array([0, 1] * 25), np.array([0.6, 0.9] * 25))
    report = windows.report(Model, REFERENCE)
    assert report.answers == 50 and report.drifting is None and "50 answers so far" in report.note
    assert report.psi_class_mix == 0
    windows.add("pets", 1, np.array([0, 1] * 100), np.array([0.6, 0.9] * 100))
    report = windows.report(Model, REFERENCE)
    assert report.answers == 200 and report.drifting is False and report.confidence == [0.5, 0.5]
    windows.add("pets", 1, np.ones(200, dtype=int), np.full(200, 0.99))  # one class only
    report = windows.report(Model, REFERENCE)
    assert report.class_mix == [0, 1] and report.drifting is True
    assert report.psi_class_mix > 0.2 and report.psi_confidence > 0.2
    windows.add("pets", 2, np.zeros(5, dtype=int), np.full(5, 0.7))  # another version's own
    assert windows.report(Model, REFERENCE).answers == 200


def test_without_a_reference_drift_says_how_to_get_one():
    windows = DriftWindows(size=10, threshold=0.2)
    windows.add("pets", 1, np.array([0, 1]), np.array([0.6, 0.9]))
    report = windows.report(Model, None)
    assert report.drifting is None and "training.drift_reference" in report.note
    assert report.class_mix == [0.5, 0.5]


# -- end to end: the shipped model on its validation photos ------------------------------------


# Version 3: the shipped version whose reference was recorded from these validation photos
# (a newer shipped version may come without one until training.drift_reference adds it).
REFERENCED = "specific:3"


@pytest.fixture(scope="module")
def shipped_server():
    env = {"MODEL_POLL_SECONDS": "0", "DRIFT_WINDOW": "200", "MODEL_VERSION_POLICY": REFERENCED}
    with Server(SHIPPED_MODELS, **env) as server:
        yield server.wait_ready()


def stream(server, photos) -> None:
    """The photos, 16 to a request, in the order given."""
    for start in range(0, len(photos), 16):
        files = [("image", (p.name, p.read_bytes())) for p in photos[start : start + 16]]
        response = requests.post(f"{server.url}/predict", files=files, timeout=60)
        assert response.status_code == 200, response.text


def drift_when(server, answers: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{server.url}/v1/models/cats_vs_dogs/drift", timeout=10).json()
        if body["answers"] >= answers:
            return body
        time.sleep(0.1)
    raise AssertionError(f"the window never held {answers} answers: {body}")


def gauge(server, name: str, **labels: str) -> float | None:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def gauge_when(server, name: str, value: float, timeout: float = 10, **labels: str) -> float:
    deadline = time.monotonic() + timeout
    while (found := gauge(server, name, **labels)) != value and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


@pytest.mark.e2e
@pytest.mark.shared_data
def test_balanced_validation_photos_do_not_drift_and_one_class_does(shipped_server, shared_data):
    server = shipped_server
    cats = sorted((shared_data / "validation" / "cats").iterdir())
    dogs = sorted((shared_data / "validation" / "dogs").iterdir())
    balanced = [p for pair in zip(cats[:100], dogs[:100], strict=True) for p in pair]
    stream(server, balanced)
    body = drift_when(server, 200)
    assert body["window"] == 200 and body["version"] == 3
    assert body["reference"]["count"] == 1000 and body["threshold"] == 0.2
    assert body["drifting"] is False, body
    assert body["class_mix"]["psi"] < 0.05 and body["confidence"]["psi"] < 0.2
    assert sum(body["class_mix"]["window"].values()) == pytest.approx(1)
    labels = {"model": "cats_vs_dogs", "version": "3"}
    assert gauge_when(server, "model_drifting", 0, **labels) == 0
    assert gauge_when(server, "model_drift_window_answers", 200, **labels) == 200

    stream(server, dogs[100:300])  # the window is now all dogs
    deadline = time.monotonic() + 20
    while (body := drift_when(server, 200))["drifting"] is not True and time.monotonic() < deadline:
        time.sleep(0.2)
    assert body["drifting"] is True, body
    assert body["class_mix"]["psi"] >= 0.2 and body["class_mix"]["window"]["dogs"] > 0.8
    assert gauge_when(server, "model_drifting", 1, **labels) == 1
    assert gauge(server, "model_drift_psi", kind="class_mix", **labels) >= 0.2


@pytest.mark.e2e
def test_a_reference_recorded_while_the_version_serves_counts_without_reloading_it(tmp_path):
    models = tmp_path / "models"
    publish_model(models, "pets")  # published as v1-v3 were: no drift reference
    data = make_dataset(tmp_path / "data", per_class=1, val_per_class=4)
    with Server(models, MODEL_NAME="pets", MODEL_POLL_SECONDS="0.3") as server:
        server.wait_ready()
        drift = f"{server.url}/v1/models/pets/drift"
        before = requests.get(drift, timeout=10).json()
        assert before["reference"] is None and before["drifting"] is None
        assert "python -m training.drift_reference" in before["note"]
        tool = [sys.executable, "-m", "training.drift_reference", "--data-dir", str(data),
                "--models-dir", str(models), "--model-name", "pets"]  # fmt: skip
        result = subprocess.run(tool, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 20
        while (body := requests.get(drift, timeout=10).json())["reference"] is None:
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        assert body["reference"] == {
            "of": "validation", "count": 8, "recorded_by": "training.drift_reference",
        }  # fmt: skip
        assert gauge(server, "model_load_total", model="pets", result="success") == 1
        assert requests.get(f"{server.url}/v1/models/pets", timeout=10).json()["versions"] == [
            {"version": 1, "state": "AVAILABLE"}
        ]
