"""The feedback loop end to end, against a real gunicorn serving a model this code trained:
capture, feedback by request id and by upload, its errors and limits, API keys, the live
metrics, and retraining on the feedback folder through the gate."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from benchmarks.harness import Server
from service.capture import CaptureStore
from service.keys import new_key
from service.photos import sha256
from tests.helpers import REPO, encode, jpeg_bytes, make_dataset, noise_image
from training import train as train_module
from training.config import TrainConfig

pytestmark = pytest.mark.e2e

MODEL = "toy"
MAX_UPLOAD = 300_000


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A cats/dogs model trained by this code on easily told apart photos (64x64)."""
    data = make_dataset(tmp_path_factory.mktemp("data"), per_class=12, val_per_class=6)
    models = tmp_path_factory.mktemp("models")
    config = TrainConfig(
        data_dir=data, models_dir=models, model_name=MODEL, epochs=2, batch_size=8, image_size=64
    )
    train_module.train(config)
    return data, models


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    data, models = trained
    feedback = tmp_path_factory.mktemp("feedback")
    env = {
        "MODEL_NAME": MODEL,
        "MODEL_POLL_SECONDS": "0.5",
        "FEEDBACK_DIR": str(feedback),
        "CAPTURE_RATE": "1",
        "MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
    }
    with Server(models, **env) as server:
        yield server.wait_ready(), feedback, data, models


def url(server, path: str) -> str:
    return f"{server.url}/v1/models/{MODEL}{path}"


def predict(server, images: list[bytes], request_id: str) -> dict:
    files = [("image", (f"{i}.jpg", data)) for i, data in enumerate(images)]
    response = requests.post(
        f"{server.url}/predict", files=files, headers={"X-Request-ID": request_id}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def captured(server, request_id: str, count: int, timeout: float = 15) -> list[dict]:
    """The captures of `request_id` once the monitor has written `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(url(server, "/captures?limit=200"), timeout=10).json()
        found = [c for c in body["captures"] if c["request_id"] == request_id]
        if len(found) >= count:
            return sorted(found, key=lambda c: c["index"])
        time.sleep(0.1)
    raise AssertionError(f"{request_id}: not captured in {timeout}s")


def journal(feedback: Path) -> list[dict]:
    path = feedback / MODEL / "feedback.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def readme_journal_fields() -> set[str]:
    """The journal's fields as the README lists them (its own and `predicted`'s)."""
    text = (REPO / "README.md").read_text()
    listing = text[text.index("feedback.jsonl   {") : text.index('"correct"}') + len('"correct"')]
    return set(re.findall(r'"(\w+)"', listing))


def photos_in(feedback: Path) -> dict[str, list[str]]:
    folder = feedback / MODEL
    return {
        d.name: sorted(p.name for p in d.iterdir())
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def test_a_captured_answer_is_corrected_by_its_request_id(served):
    server, feedback, data, _ = served
    photos = [p.read_bytes() for p in sorted((data / "validation" / "dogs").iterdir())[:2]]
    answer = predict(server, photos, "loop-1")
    captures = captured(server, "loop-1", 2)
    assert [c["label"] for c in captures] == [p["label"] for p in answer["predictions"]]
    assert captures[1]["image"] == f"{sha256(photos[1])}.jpg"
    image = requests.get(url(server, f"/captures/{captures[1]['image']}"), timeout=10)
    assert image.content == photos[1] and image.headers["Content-Type"] == "image/jpeg"

    wrong = "cats" if captures[1]["label"] == "dogs" else "dogs"
    response = requests.post(
        url(server, "/feedback"),
        json={"request_id": "loop-1", "index": 1, "label": wrong},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["correct"] is False and body["request_id"] == "loop-1"
    assert body["predicted"] == {"label": captures[1]["label"], "version": 1}
    stored = feedback / MODEL / body["image"]
    assert stored.read_bytes() == photos[1] and stored.parent.name == wrong
    [line] = [e for e in journal(feedback) if e["request_id"] == "loop-1"]
    assert line["label"] == wrong and line["predicted"]["version"] == 1 and line["time"]
    assert line["feedback_request_id"] == response.headers["X-Request-ID"]
    assert readme_journal_fields() == set(line) | set(line["predicted"])
    left = requests.get(url(server, "/captures?limit=200"), timeout=10).json()["captures"]
    assert ("loop-1", 1) not in [(c["request_id"], c["index"]) for c in left]
    assert ("loop-1", 0) in [(c["request_id"], c["index"]) for c in left]

    # Labelled again (a slip corrected): the photo moves, the journal keeps both lines.
    again = requests.post(
        url(server, "/feedback"),
        json={"request_id": "loop-1", "index": 1, "label": captures[1]["label"]},
        timeout=10,
    )
    assert again.status_code == 201 and again.json()["correct"] is True
    folders = photos_in(feedback)
    name = stored.name
    assert name in folders[captures[1]["label"]] and name not in folders.get(wrong, [])
    assert len([e for e in journal(feedback) if e["request_id"] == "loop-1"]) == 2


def test_a_photo_sent_with_its_label_is_stored_and_answered_for_the_record(served):
    server, feedback, _, _ = served
    photo = encode(noise_image((90, 70), seed=7), "PNG")
    response = requests.post(
        url(server, "/feedback"),
        files={"image": ("mine.png", photo)},
        data={"label": "cats"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["image"] == f"cats/{sha256(photo)}.png" and body["request_id"] is None
    assert body["predicted"]["version"] == 1 and body["correct"] in (True, False)
    assert (feedback / MODEL / body["image"]).read_bytes() == photo


def test_pixels_sent_as_a_tensor_are_captured_as_png(served):
    server, _, _, _ = served
    pixels = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3)).astype(float)
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 64, 64, 3],
                "datatype": "FP32",
                "data": pixels.ravel().tolist(),
            }
        ]
    }
    response = requests.post(
        f"{server.url}/v2/models/{MODEL}/infer",
        json=body,
        headers={"X-Request-ID": "v2-1"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    [capture] = captured(server, "v2-1", 1)
    assert capture["image"].endswith(".png")
    sent = requests.post(
        url(server, "/feedback"), json={"request_id": "v2-1", "label": "dogs"}, timeout=10
    )
    assert sent.status_code == 201 and sent.json()["image"].endswith(".png")


def refused(server, expected_status: int, code: str, **kwargs) -> dict:
    response = requests.post(url(server, "/feedback"), timeout=10, **kwargs)
    assert response.status_code == expected_status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


def test_bad_feedback_is_refused_in_the_route_shape_and_stores_nothing(served):
    server, feedback, _, _ = served
    predict(server, [jpeg_bytes(seed=3)], "loop-bad")
    captured(server, "loop-bad", 1)
    before, folders = len(journal(feedback)), photos_in(feedback)
    error = refused(server, 400, "unknown_label", json={"request_id": "loop-bad", "label": "birds"})
    assert "cats, dogs" in error["message"] and error["details"]["classes"] == ["cats", "dogs"]
    refused(server, 404, "not_captured", json={"request_id": "never-sent", "label": "cats"})
    refused(
        server, 404, "not_captured", json={"request_id": "loop-bad", "index": 3, "label": "cats"}
    )
    refused(server, 400, "invalid_feedback", json={"label": "cats"})
    refused(
        server, 400, "invalid_feedback", json={"request_id": "loop-bad", "label": "cats", "x": 1}
    )
    refused(
        server, 400, "invalid_feedback", data=b"{", headers={"Content-Type": "application/json"}
    )
    refused(server, 400, "invalid_feedback", files={"image": ("a.jpg", jpeg_bytes())})
    refused(
        server,
        400,
        "not_an_image",
        files={"image": ("a.jpg", b"not an image")},
        data={"label": "cats"},
    )
    refused(
        server,
        413,
        "payload_too_large",
        files={"image": ("big.jpg", b"x" * MAX_UPLOAD)},
        data={"label": "cats"},
    )
    refused(
        server, 415, "unsupported_media_type", data=b"cats", headers={"Content-Type": "text/plain"}
    )
    missing = requests.post(
        f"{server.url}/v1/models/nope/feedback",
        json={"request_id": "loop-bad", "label": "cats"},
        timeout=10,
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert len(journal(feedback)) == before and photos_in(feedback) == folders
    assert "Traceback" not in server.output()


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_live_accuracy_confidence_and_class_mix_are_in_the_metrics(served):
    server, _, _, _ = served
    before = requests.get(f"{server.url}/metrics", timeout=10).text
    answer = predict(server, [jpeg_bytes(seed=s) for s in (11, 12, 13)], "loop-m")
    label = answer["predictions"][0]["label"]
    captured(server, "loop-m", 3)
    requests.post(
        url(server, "/feedback"), json={"request_id": "loop-m", "label": label}, timeout=10
    )
    after = requests.get(f"{server.url}/metrics", timeout=10).text
    assert (
        metric(after, "feedback_total", model=MODEL, version="1", correct="true")
        == metric(before, "feedback_total", model=MODEL, version="1", correct="true") + 1
    )
    answered = [p["label"] for p in answer["predictions"]]
    for name in ("cats", "dogs"):
        grew = metric(after, "predictions_total", model=MODEL, version="1", label=name) - metric(
            before, "predictions_total", model=MODEL, version="1", label=name
        )
        assert grew == answered.count(name)
    assert (
        metric(after, "prediction_confidence_count", model=MODEL, version="1")
        - metric(before, "prediction_confidence_count", model=MODEL, version="1")
        == 3
    )
    assert metric(after, "prediction_confidence_bucket", model=MODEL, version="1", le="0.4") == 0
    assert metric(after, "capture_images_total", model=MODEL, result="stored") >= 3


def test_retraining_on_the_feedback_folder_goes_through_the_gate(served):
    """The folder the service wrote is what retrain reads: its photos are counted as a source
    of the challenger's training photos, and the gate decides."""
    server, feedback, data, models = served
    for i, photo in enumerate(sorted((data / "train" / "cats").iterdir())[:3]):
        reencoded = encode(Image.open(photo), "PNG")  # a user's copy: other bytes
        response = requests.post(
            url(server, "/feedback"),
            files={"image": (f"{i}.png", reencoded)},
            data={"label": "cats"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
    command = [
        sys.executable, "-m", "training.retrain", "--data-dir", str(data),
        "--models-dir", str(models), "--model-name", MODEL, "--epochs", "1",
        "--batch-size", "8", "--image-size", "64", "--extra-data", str(feedback / MODEL),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 3), result.stdout + result.stderr
    source = f"{feedback.name}/{MODEL}"
    assert f"training photos from {source}:" in result.stdout
    report = json.loads(next(models.glob(f"{MODEL}/**/report.json")).read_text())
    counted = report["training_photos"][source]
    held_out = {sha256(p.read_bytes()) for p in (data / "validation").rglob("*.jpg")}
    stored = [name for names in photos_in(feedback).values() for name in names]
    assert sum(counted.values()) == len([n for n in stored if n.split(".")[0] not in held_out])
    assert len(stored) > sum(counted.values())  # the validation photos labelled above: left out
    assert report["decision"]["rule"] in ("within_tolerances", "accuracy", "class_recall")
    if result.returncode == 0:  # published: the server serves it within a poll or two
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = requests.get(url(server, "/drift"), timeout=10).json()
            if body["version"] == 2:
                break
            time.sleep(0.5)
        assert body["version"] == 2 and body["reference"]["recorded_by"] == "training"


@pytest.fixture(scope="module")
def keyed(trained, tmp_path_factory):
    _, models = trained
    key, line = new_key("labeller")
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(line + "\n")
    feedback = tmp_path_factory.mktemp("keyed-feedback")
    env = {"MODEL_NAME": MODEL, "MODEL_POLL_SECONDS": "0", "FEEDBACK_DIR": str(feedback),
           "API_KEYS_FILE": str(keys)}  # fmt: skip
    with Server(models, **env) as server:
        yield server.wait_ready(), key


def test_api_keys_apply_to_feedback_captures_and_drift(keyed):
    server, key = keyed
    upload = {
        "files": {"image": ("a.png", encode(noise_image(seed=5), "PNG"))},
        "data": {"label": "dogs"},
    }
    assert requests.post(url(server, "/feedback"), timeout=10, **upload).status_code == 401
    for path in ("/captures", "/drift", f"/captures/{'0' * 64}.jpg"):
        assert requests.get(url(server, path), timeout=10).status_code == 401
    ok = requests.post(url(server, "/feedback"), headers={"X-API-Key": key}, timeout=10, **upload)
    assert ok.status_code == 201
    assert requests.get(f"{server.url}/label", timeout=10).status_code == 200  # holds no data


def test_without_a_feedback_dir_feedback_is_off(trained):
    _, models = trained
    with Server(models, MODEL_NAME=MODEL, MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        refused(server, 404, "feedback_off", json={"request_id": "x", "label": "cats"})
        captures = requests.get(url(server, "/captures"), timeout=10).json()
        assert captures["captures"] == [] and captures["capture_rate"] == 0


def test_a_grpc_call_is_captured_under_its_request_id(served):
    """The call's id, its x-request-id metadata (the id the access log names), as over HTTP."""
    import tritonclient.grpc as triton

    server, _, _, _ = served
    client = triton.InferenceServerClient(url=server.grpc_target)
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([jpeg_bytes(seed=21)], dtype=np.object_))
    client.infer(MODEL, [image], headers={"x-request-id": "grpc-1"}, client_timeout=30)
    [capture] = captured(server, "grpc-1", 1)
    sent = requests.post(
        url(server, "/feedback"), json={"request_id": "grpc-1", "label": "cats"}, timeout=10
    )
    assert sent.status_code == 201 and sent.json()["predicted"]["label"] == capture["label"]


def test_an_unknown_v2_output_is_refused_before_the_model_runs(served):
    """REST and gRPC: the same refusal as before, but now before inference, so the refused
    requests are neither predictions in the metrics, nor in the drift window, nor captured."""
    import tritonclient.grpc as triton

    server, _, _, _ = served
    before = requests.get(f"{server.url}/metrics", timeout=10).text
    window = requests.get(url(server, "/drift"), timeout=10).json()["answers"]
    photo = base64.b64encode(jpeg_bytes(seed=31)).decode()
    body = {
        "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": [photo] * 2}],
        "outputs": [{"name": "label"}, {"name": "logits"}],
    }
    response = requests.post(
        f"{server.url}/v2/models/{MODEL}/infer",
        json=body,
        headers={"X-Request-ID": "v2-unknown-output"},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "unknown output 'logits'; outputs: ['probabilities', 'label']"
    }
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([jpeg_bytes(seed=32)], dtype=np.object_))
    client = triton.InferenceServerClient(url=server.grpc_target)
    with pytest.raises(triton.InferenceServerException) as refused_call:
        client.infer(
            MODEL,
            [image],
            outputs=[triton.InferRequestedOutput("scores")],
            headers={"x-request-id": "grpc-unknown-output"},
            client_timeout=30,
        )
    assert refused_call.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unknown output 'scores'" in refused_call.value.message()
    predict(server, [jpeg_bytes(seed=33)], "after-unknown-outputs")
    captured(server, "after-unknown-outputs", 1)  # the monitor took every earlier answer too
    after = requests.get(f"{server.url}/metrics", timeout=10).text
    counted = sum(
        metric(after, "predictions_total", model=MODEL, version="1", label=name)
        - metric(before, "predictions_total", model=MODEL, version="1", label=name)
        for name in ("cats", "dogs")
    )
    assert counted == 1  # only the last request's one image
    assert requests.get(url(server, "/drift"), timeout=10).json()["answers"] == window + 1
    captures = requests.get(url(server, "/captures?limit=200"), timeout=10).json()["captures"]
    ids = {c["request_id"] for c in captures}
    assert not ids & {"v2-unknown-output", "grpc-unknown-output"}


def test_two_workers_share_captures_and_feedback(trained, tmp_path):
    """A request captured by one worker is labelled through whichever worker takes the
    feedback; the journal gets every line once."""
    _, models = trained
    env = {"MODEL_NAME": MODEL, "MODEL_POLL_SECONDS": "0", "WEB_CONCURRENCY": "2",
           "FEEDBACK_DIR": str(tmp_path), "CAPTURE_RATE": "1", "GRPC_PORT": "0"}  # fmt: skip
    with Server(models, **env) as server:
        server.wait_ready()
        server.wait_workers(2)
        ids = [f"two-{i}" for i in range(12)]
        for i, request_id in enumerate(ids):  # a new connection each: both workers answer
            predict(server, [jpeg_bytes(seed=100 + i)], request_id)
        for request_id in ids:
            captured(server, request_id, 1)
        for request_id in ids:
            response = requests.post(
                url(server, "/feedback"), json={"request_id": request_id, "label": "dogs"},
                headers={"Connection": "close"}, timeout=10,
            )  # fmt: skip
            assert response.status_code == 201, response.text
        served = server.logged(lambda line: True, at_least=2 * len(ids))  # predicts, feedback
        pids = {line["pid"] for line in served}
    assert len(pids) == 2, "both workers served"
    assert sorted(e["request_id"] for e in journal(tmp_path)) == sorted(ids)


def test_captures_answered_before_a_stop_are_written(trained, tmp_path):
    """SIGTERM right after the answers: the worker writes what its monitor holds before it
    exits (its thread is a daemon and would die with the worker)."""
    _, models = trained
    env = {"MODEL_NAME": MODEL, "FEEDBACK_DIR": str(tmp_path), "CAPTURE_RATE": "1",
           "MAX_UPLOAD_BYTES": str(20 * MAX_UPLOAD)}  # fmt: skip
    with Server(models, **env) as server:
        server.wait_ready()
        for i in range(3):
            images = [jpeg_bytes(size=(120, 120), seed=300 + 64 * i + j) for j in range(64)]
            predict(server, images, f"stop-{i}")
        assert server.stop() == 0
    store = CaptureStore(tmp_path, max_bytes=10**9, max_age_s=10**6)
    for i in range(3):
        assert all(store.find(MODEL, f"stop-{i}", j) for j in range(64)), server.output()
