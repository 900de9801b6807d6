import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from flask import Flask

from classifier.preprocess import decode_image
from classifier.spec import InputSpec
from classifier.store import ModelStore
from service.http.app import create_app
from tests.helpers import (
    PETS_FIELDS,
    app_config,
    encode,
    jpeg_bytes,
    png_with_header_size,
    publish_model,
    solid,
)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return error


def check_prediction(item: dict) -> None:
    assert set(item["probabilities"]) == {"cats", "dogs"}
    assert sum(item["probabilities"].values()) == pytest.approx(1.0)
    expected = "dogs" if item["probabilities"]["dogs"] >= 0.5 else "cats"
    assert item["label"] == expected


def test_multipart_single_image(client):
    response = client.post("/predict", data={"image": (io.BytesIO(jpeg_bytes()), "a.jpg")})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == {"name": "pets", "version": 1}
    assert response.headers["X-Model-Version"] == "1"
    [item] = body["predictions"]
    assert item["filename"] == "a.jpg"
    check_prediction(item)


def test_several_files_are_one_batch_in_input_order(client, shared_app):
    images = [jpeg_bytes(seed=i) for i in range(4)]
    files = [(io.BytesIO(data), f"{i}.jpg") for i, data in enumerate(images)]
    response = client.post("/v1/models/pets:predict", data={"image": files})
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert [p["filename"] for p in predictions] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    predictor = shared_app.extensions["dataplane"].registry.get("pets").predictor
    expected = predictor.predict_proba(np.stack([decode_image(d, predictor.spec) for d in images]))
    got = [p["probabilities"]["dogs"] for p in predictions]
    assert np.allclose(got, expected, atol=1e-5)


def test_raw_image_body(client):
    response = client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg")
    assert response.status_code == 200
    [item] = response.get_json()["predictions"]
    assert "filename" not in item
    check_prediction(item)


def test_json_base64_instances(client):
    instances = [{"b64": base64.b64encode(jpeg_bytes(seed=i)).decode()} for i in range(2)]
    response = client.post("/v1/models/pets:predict", json={"instances": instances})
    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == 2


def test_service_probability_equals_predictor_on_shared_preprocessing(client, shared_app):
    data = encode(solid((90, 140, 200), (123, 77)), "PNG")
    response = client.post("/predict", data=data, content_type="image/png")
    predictor = shared_app.extensions["dataplane"].registry.get("pets").predictor
    expected = predictor.predict_proba(decode_image(data, predictor.spec)[None])[0]
    got = response.get_json()["predictions"][0]["probabilities"]["dogs"]
    assert abs(got - float(expected)) <= 1e-5


def test_unknown_model_is_404(client):
    error = assert_error(
        client.post("/v1/models/nope:predict", data=jpeg_bytes(), content_type="image/jpeg"),
        404,
        "model_not_found",
    )
    assert "pets" in error["message"]
    assert_error(client.get("/v1/models/nope"), 404, "model_not_found")


def test_model_status_lists_versions_and_metadata(client):
    body = client.get("/v1/models/pets").get_json()
    assert body["serving_version"] == 1
    assert body["versions"] == [{"version": 1, "state": "AVAILABLE"}]
    assert body["metadata"]["class_names"] == ["cats", "dogs"]
    assert body["metadata"]["input"]["height"] == 64
    listing = client.get("/v1/models").get_json()
    assert [m["name"] for m in listing["models"]] == ["pets"]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["models"]["pets"]["serving_version"] == 1


def test_not_ready_without_a_model(tmp_path):
    app = create_app(app_config(tmp_path))
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    error = assert_error(
        client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg"),
        503,
        "model_not_ready",
    )
    assert "no loadable version" in error["message"]
    assert client.get("/healthz").status_code == 200


def test_broken_newer_versions_are_reported_and_the_good_one_serves(models_dir):
    (models_dir / "pets" / "2").mkdir()
    (models_dir / "pets" / "2" / "model.keras").write_bytes(b"half written")
    publish_model(models_dir, "pets", seed=1)  # v3
    (models_dir / "pets" / "3" / "model.keras").write_bytes(b"tampered")
    app = create_app(app_config(models_dir))
    client = app.test_client()
    body = client.get("/v1/models/pets").get_json()
    states = {v["version"]: v["state"] for v in body["versions"]}
    assert states == {1: "AVAILABLE", 2: "INVALID", 3: "INVALID"}
    errors = {v["version"]: v.get("error", "") for v in body["versions"]}
    assert "no metadata.json" in errors[2] and "checksum mismatch" in errors[3]
    response = client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg")
    assert response.get_json()["model"]["version"] == 1


def test_newest_valid_version_is_served(models_dir):
    publish_model(models_dir, "pets", seed=1)
    app = create_app(app_config(models_dir))
    response = app.test_client().post("/predict", data=jpeg_bytes(), content_type="image/jpeg")
    assert response.get_json()["model"]["version"] == 2


def test_a_version_that_fails_to_load_falls_back(models_dir):
    publish_model(models_dir, "pets", seed=1)
    store = ModelStore(models_dir)

    def write_garbage(folder):
        (folder / "model.keras").write_bytes(b"checksummed but not a keras file")
        return dict(PETS_FIELDS)

    store.publish("pets", write_garbage)  # v3: valid metadata, unloadable model
    app = create_app(app_config(models_dir))
    body = app.test_client().get("/v1/models/pets").get_json()
    assert body["serving_version"] == 2
    states = {v["version"]: v["state"] for v in body["versions"]}
    assert states == {1: "NOT_LOADED", 2: "AVAILABLE", 3: "FAILED"}


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": {"file": (io.BytesIO(b"x"), "a.jpg")}}, 400, "missing_image"),
        ({"data": {"other": "field"}}, 400, "missing_image"),
        ({"data": b""}, 400, "missing_image"),
        ({"data": b"hello", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": b"not an image", "content_type": "image/jpeg"}, 400, "not_an_image"),
        ({"data": b"", "content_type": "image/png"}, 400, "empty_file"),
        ({"data": b"{", "content_type": "application/json"}, 400, "invalid_json"),
        ({"json": {"instances": "x"}}, 400, "invalid_json"),
        ({"json": {"instances": [{"b64": 3}]}}, 400, "invalid_json"),
        ({"json": {"instances": [{"b64": "%%%"}]}}, 400, "invalid_base64"),
        ({"json": {"instances": []}}, 400, "missing_image"),
    ],
)
def test_bad_requests_get_json_errors(client, kwargs, status, code):
    assert_error(client.post("/predict", **kwargs), status, code)


def test_missing_image_message_names_the_field(client):
    error = assert_error(
        client.post("/predict", data={"photo": (io.BytesIO(b"x"), "a.jpg")}), 400, "missing_image"
    )
    assert "'image'" in error["message"]
    assert "photo" in error["message"]


def test_bad_file_among_several_is_named(client):
    files = [(io.BytesIO(jpeg_bytes()), "good.jpg"), (io.BytesIO(b"junk"), "bad.jpg")]
    error = assert_error(client.post("/predict", data={"image": files}), 400, "not_an_image")
    assert error["message"].startswith("bad.jpg:")
    assert error["details"] == {"index": 1, "filename": "bad.jpg"}


def test_wrong_method_is_405_with_allow(client):
    response = client.get("/predict")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unknown_route_is_json_404(client):
    assert_error(client.get("/nowhere"), 404, "not_found")


def test_body_over_the_limit_is_413(models_dir):
    app = create_app(app_config(models_dir, MAX_UPLOAD_BYTES=1000))
    client = app.test_client()
    data = jpeg_bytes((200, 200))
    assert len(data) > 1000
    assert_error(
        client.post("/predict", data=data, content_type="image/jpeg"), 413, "payload_too_large"
    )
    assert_error(
        client.post("/predict", data={"image": (io.BytesIO(data), "a.jpg")}),
        413,
        "payload_too_large",
    )


def test_too_many_pixels_is_413(client):
    assert_error(
        client.post("/predict", data=png_with_header_size(9000, 9000), content_type="image/png"),
        413,
        "image_too_large",
    )


def test_too_many_images_is_413(client, shared_app):
    limit = shared_app.extensions["dataplane"].settings.max_images_per_request
    instances = [{"b64": base64.b64encode(jpeg_bytes((8, 8))).decode()}] * (limit + 1)
    assert_error(client.post("/predict", json={"instances": instances}), 413, "too_many_images")


def test_unexpected_errors_are_json_500_without_traceback(models_dir):
    app: Flask = create_app(app_config(models_dir, TESTING=False))

    @app.get("/explode")
    def explode():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/explode")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert error["message"] == "internal server error"


def make_app(models_dir, **config) -> Flask:
    return create_app(app_config(models_dir, **config))


def test_keras_runtime_serves_the_same_answers(models_dir):
    keras_app = make_app(models_dir, RUNTIME="keras")
    onnx_app = make_app(models_dir, RUNTIME="onnx")
    for app, name in ((keras_app, "keras"), (onnx_app, "onnx")):
        runtime = app.test_client().get("/v1/models/pets").get_json()["runtime"]
        assert (runtime["name"], runtime["precision"]) == (name, "fp32")
    data = jpeg_bytes(seed=11)
    answers = [
        app.test_client()
        .post("/predict", data=data, content_type="image/jpeg")
        .get_json()["predictions"][0]["probabilities"]["dogs"]
        for app in (keras_app, onnx_app)
    ]
    assert answers[0] == pytest.approx(answers[1], abs=1e-5)


def test_the_runtime_and_precision_are_reported_in_status_and_metrics(client):
    runtime = client.get("/v1/models/pets").get_json()["runtime"]
    assert runtime["precision"] in ("fp32", "bf16")
    metrics = client.get("/metrics").get_data(as_text=True)
    line = f'model="pets",precision="{runtime["precision"]}",runtime="{runtime["name"]}"'
    assert "model_runtime_info{" in metrics and line in metrics


def test_batching_settings_are_reported(client, shared_app):
    status = client.get("/v1/models/pets").get_json()
    batching = status["batching"]
    assert batching["max_batch_size"] == shared_app.extensions["dataplane"].settings.max_batch_size
    assert batching["padded_sizes"][-1] == batching["max_batch_size"]
    assert batching["lanes"] >= 1 and (
        status["runtime"]["name"] == "onnx" or batching["lanes"] == 1
    )
    client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg")
    after = client.get("/v1/models/pets").get_json()["batching"]
    assert after["images"] >= 1 and after["batches"] >= 1
    assert after["overlapped_batches"] == batching["overlapped_batches"]  # alone: every thread


def test_request_past_its_deadline_is_504(models_dir):
    app = make_app(models_dir, REQUEST_DEADLINE_MS=0.001)
    response = app.test_client().post("/predict", data=jpeg_bytes(), content_type="image/jpeg")
    assert_error(response, 504, "deadline_exceeded")
    # the worker goes on serving
    plane = app.extensions["dataplane"]
    plane.settings = plane.settings.model_copy(update={"request_deadline_ms": 10_000})
    assert (
        app.test_client().post("/predict", data=jpeg_bytes(), content_type="image/jpeg").status_code
        == 200
    )


def slow_webp(side: int = 4000) -> bytes:
    """A few hundred bytes that take a noticeable time to decode (a solid lossless WebP)."""
    return encode(solid((200, 30, 40), (side, side)), "WEBP", lossless=True)


def test_the_deadline_counts_the_decoding_and_stops_it(models_dir):
    """Twelve slow images against a deadline of two decodes: 504 in each route's shape once
    the deadline passes while decoding, long before all twelve could be decoded (the bound
    allows the deadline, the decode in progress and one more, whatever the CPU's speed);
    the model never ran."""
    data = slow_webp()
    started = time.perf_counter()
    decode_image(data, InputSpec(height=64, width=64))
    one = time.perf_counter() - started
    deadline_ms = max(300, round(2000 * one))
    app = make_app(models_dir, REQUEST_DEADLINE_MS=deadline_ms)
    batcher = app.extensions["dataplane"].model("pets").batcher
    batches, expired = batcher.stats.batches, batcher.stats.expired
    v2 = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [12], "data": []}]}
    v2["inputs"][0]["data"] = [base64.b64encode(data).decode()] * 12
    for path, body in (
        ("/predict", {"data": {"image": [(io.BytesIO(data), f"{i}.webp") for i in range(12)]}}),
        ("/v2/models/pets/infer", {"json": v2}),
    ):
        started = time.perf_counter()
        response = app.test_client().post(path, **body)
        elapsed = time.perf_counter() - started
        assert response.status_code == 504, response.get_data(as_text=True)
        error = response.get_json()["error"]
        if path == "/predict":
            assert error["code"] == "deadline_exceeded"
            error = error["message"]
        assert error == f"no answer within the request deadline of {deadline_ms} ms"
        assert elapsed < deadline_ms / 1000 + 2 * one + 0.5, (elapsed, one)
    assert batcher.stats.batches == batches  # the model never ran for them
    assert batcher.stats.expired == expired + 24  # counted as expired, as in the queue


def test_full_queue_is_503_with_retry_after(models_dir):
    app = make_app(models_dir, QUEUE_CAPACITY=1, MAX_IMAGES_PER_REQUEST=1)
    data = jpeg_bytes((300, 300))

    def post(_):
        response = app.test_client().post("/predict", data=data, content_type="image/jpeg")
        return response.status_code, response.headers.get("Retry-After"), response.get_json()

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(post, range(96)))
    statuses = {status for status, _, _ in results}
    assert statuses <= {200, 503}
    assert 200 in statuses and 503 in statuses
    for status, retry_after, body in results:
        if status == 503:
            assert retry_after and body["error"]["code"] == "queue_full"


def test_a_large_multipart_batch_within_the_limits_is_accepted(client):
    files = [(io.BytesIO(jpeg_bytes((200, 200), seed=i)), f"{i}.jpg") for i in range(32)]
    response = client.post("/predict", data={"image": files})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json()["predictions"]) == 32


def test_too_many_form_parts_is_413(client, shared_app):
    parts = {
        f"field{i}": "x"
        for i in range(shared_app.extensions["dataplane"].settings.max_form_parts + 1)
    }
    parts["image"] = (io.BytesIO(jpeg_bytes()), "a.jpg")
    assert_error(client.post("/predict", data=parts), 413, "payload_too_large")


def test_a_deeply_nested_json_body_is_400_not_500(client):
    for body in ("[" * 100_000, '{"a":' * 100_000):
        response = client.post("/predict", data=body, content_type="application/json")
        assert_error(response, 400, "invalid_json")


def test_the_first_bad_instance_is_the_one_reported(client):
    body = '{"instances": [{"b64": "!!!"}, {"x": 1}]}'
    response = client.post("/predict", data=body, content_type="application/json")
    assert_error(response, 400, "invalid_base64")
    body = '{"instances": [{"b64": "aGVsbG8="}, {"x": 1}]}'
    error = assert_error(
        client.post("/predict", data=body, content_type="application/json"), 400, "invalid_json"
    )
    assert error["message"].startswith("instances[1]")
