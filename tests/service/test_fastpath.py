"""The predict fast path: plain multipart POST /predict answered below Flask, exactly as the
Flask route answers it; everything else, and every error, answered by Flask."""

from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from urllib3.filepost import encode_multipart_formdata

from benchmarks.harness import Server
from service.http.app import create_app
from service.http.fastpath import FastPredict
from service.keys import new_key
from service.logs import JsonFormatter
from tests.helpers import app_config, jpeg_bytes

RANDOM_FIELDS = ("latency_ms",)


class Counted:
    """Flask's WSGI function, counting the requests it is handed."""

    def __init__(self, wsgi) -> None:
        self.wsgi, self.calls = wsgi, 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.wsgi(environ, start_response)


@pytest.fixture
def fast(shared_app, monkeypatch) -> Counted:
    front = shared_app.wsgi_app
    assert isinstance(front, FastPredict)
    counted = Counted(front.flask_wsgi)
    monkeypatch.setattr(front, "flask_wsgi", counted)
    return counted


def form(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body as real clients (requests, urllib3) send it: plain. Werkzeug's test
    client starts its bodies with a line break, which Flask's route reads instead."""
    return encode_multipart_formdata(
        [("image", (name, data, "image/jpeg")) for name, data in files]
    )


def answered(app, caplog, flask_only: bool, **request) -> dict:
    """What a request gets, through the fast path or through Flask alone: status, headers,
    body, and its one access log line (without its latency)."""
    front = app.wsgi_app
    request.setdefault("headers", {}).setdefault("X-Request-ID", "same-id")
    if "files" in request:
        request["data"], request["content_type"] = form(request.pop("files"))
    caplog.clear()
    try:
        if flask_only:
            app.wsgi_app = front.flask_wsgi
        with caplog.at_level(logging.INFO, logger="service.access"):
            response = app.test_client().post("/predict", **request)
    finally:
        app.wsgi_app = front
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "service.access"
    ]
    assert len(lines) == 1, lines
    line = {k: v for k, v in lines[0].items() if k not in (*RANDOM_FIELDS, "time")}
    return {
        "status": response.status_code,
        "headers": sorted(response.headers.items()),
        "body": response.get_data(),
        "log": line,
    }


def same_both_ways(app, caplog, **request) -> dict:
    first = answered(app, caplog, False, **request)
    assert first == answered(app, caplog, True, **request)
    return first


PHOTOS = [("a.jpg", jpeg_bytes(seed=1)), ("b.jpg", jpeg_bytes((80, 60), seed=2))]


@pytest.mark.parametrize("files", [PHOTOS[:1], PHOTOS], ids=["one", "two"])
def test_plain_predict_is_answered_below_flask_as_flask_answers_it(shared_app, fast, caplog, files):
    got = same_both_ways(shared_app, caplog, files=files)
    assert fast.calls == 1  # only the Flask-only request reached Flask
    assert got["status"] == 200
    body = json.loads(got["body"])
    assert [p["filename"] for p in body["predictions"]] == [n for n, _ in files]
    assert dict(got["headers"])["X-Request-ID"] == "same-id"
    assert got["log"]["images"] == len(files) and got["log"]["model"] == "pets"


def test_a_new_request_id_is_made_when_none_is_given(shared_app, fast):
    data, ctype = form([("a.jpg", jpeg_bytes())])
    response = shared_app.test_client().post("/predict", data=data, content_type=ctype)
    assert response.status_code == 200 and fast.calls == 0
    assert len(response.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    "request_",
    [
        {"query_string": {"top_k": 1}, "data": {"image": (io.BytesIO(jpeg_bytes()), "a.jpg")}},
        {"data": {"image": (io.BytesIO(jpeg_bytes()), "a.jpg")}},  # a line break first
        {"data": jpeg_bytes(), "content_type": "image/jpeg"},
        {"json": {"instances": []}},
    ],
    ids=["query", "not plain", "raw image", "json"],
)
def test_other_requests_go_to_flask(shared_app, fast, request_):
    response = shared_app.test_client().post("/predict", **request_)
    assert fast.calls == 1
    assert response.status_code in (200, 400)


def test_other_routes_and_methods_go_to_flask(shared_app, fast):
    client = shared_app.test_client()
    assert client.get("/predict").status_code == 405
    data, ctype = form([("a.jpg", jpeg_bytes())])
    assert client.post("/v1/models/pets:predict", data=data, content_type=ctype).status_code == 200
    assert fast.calls == 2


def test_a_body_not_plain_is_read_by_flask_from_the_bytes_read(shared_app, fast, caplog):
    """LF line breaks: Werkzeug's parser reads it (the fast path had read the body)."""
    photo = jpeg_bytes()
    body = (
        b'--xyz\nContent-Disposition: form-data; name="image"; filename="a.jpg"\n'
        b"Content-Type: image/jpeg\n\n" + photo + b"\n--xyz--\n"
    )
    got = same_both_ways(
        shared_app, caplog, data=body, content_type="multipart/form-data; boundary=xyz"
    )
    assert got["status"] == 200, got["body"]
    assert fast.calls == 2  # handed over, then Flask alone


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([("bad.jpg", b"junk")], "not_an_image"),
        ([("a.jpg", PHOTOS[0][1]), ("empty.jpg", b"")], "empty_file"),
        ([("a.jpg", PHOTOS[0][1])] * 65, "too_many_images"),
    ],
)
def test_errors_are_answered_logged_and_counted_by_flask(shared_app, fast, caplog, files, code):
    got = same_both_ways(shared_app, caplog, files=files)
    assert got["status"] in (400, 413)
    assert json.loads(got["body"])["error"]["code"] == code
    assert got["log"]["error"] == code and got["log"]["request_id"] == "same-id"


def test_a_model_not_ready_is_503_with_retry_after(tmp_path, caplog):
    app = create_app(app_config(tmp_path))
    got = same_both_ways(app, caplog, files=PHOTOS[:1])
    assert got["status"] == 503 and dict(got["headers"])["Retry-After"] == "1"
    assert json.loads(got["body"])["error"]["code"] == "model_not_ready"


def test_an_unexpected_failure_is_a_500_in_the_routes_shape(shared_app, fast, monkeypatch, caplog):
    plane = shared_app.extensions["dataplane"]

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(plane, "predict", broken)
    with caplog.at_level(logging.ERROR):
        got = answered(shared_app, caplog, False, files=PHOTOS[:1])
    assert got["status"] == 500
    assert json.loads(got["body"]) == {
        "error": {"code": "internal_error", "message": "internal server error"}
    }
    assert "a bug" not in got["body"].decode()
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


# A body cut short by its client: tests/service/test_observability.py, under gunicorn.


def test_a_body_over_the_limit_is_413_unread(models_dir, caplog):
    app = create_app(app_config(models_dir, MAX_UPLOAD_BYTES=1000))
    got = same_both_ways(app, caplog, files=[("a.jpg", jpeg_bytes((300, 300)))])
    assert got["status"] == 413
    assert json.loads(got["body"])["error"]["code"] == "payload_too_large"


def test_keys_are_checked_as_flask_checks_them(models_dir, tmp_path, caplog):
    key, line = new_key("alice")
    (tmp_path / "keys").write_text(line + "\n")
    app = create_app(app_config(models_dir, API_KEYS_FILE=str(tmp_path / "keys")))
    refused = same_both_ways(app, caplog, files=PHOTOS[:1])
    assert refused["status"] == 401
    assert dict(refused["headers"])["WWW-Authenticate"].startswith("Bearer")
    wrong = same_both_ways(app, caplog, files=PHOTOS[:1], headers={"X-API-Key": "nope"})
    assert wrong["status"] == 401
    let_in = same_both_ways(
        app, caplog, files=PHOTOS[:1], headers={"Authorization": f"Bearer {key}"}
    )
    assert let_in["status"] == 200 and let_in["log"]["api_key"] == "alice"
    assert key not in json.dumps(let_in["log"])


@pytest.mark.parametrize("origin", [None, "https://app.example", "https://elsewhere.example"])
def test_cors_headers_are_flasks(models_dir, caplog, origin):
    app = create_app(app_config(models_dir, CORS_ORIGINS="https://app.example"))
    headers = {"Origin": origin} if origin else {}
    got = same_both_ways(app, caplog, files=PHOTOS[:1], headers=headers)
    sent = dict(got["headers"])
    assert sent["Vary"] == "Origin"
    assert sent.get("Access-Control-Allow-Origin") == (
        origin if origin == "https://app.example" else None
    )


def test_metrics_count_each_request_once(shared_app, fast):
    client = shared_app.test_client()

    def counts() -> tuple[float, float]:
        text = client.get("/metrics").get_data(as_text=True)
        ok = failed = 0.0
        for line in text.splitlines():
            if line.startswith("http_requests_total{") and 'endpoint="/predict"' in line:
                if 'status="200"' in line:
                    ok += float(line.rsplit(" ", 1)[1])
                elif 'status="400"' in line:
                    failed += float(line.rsplit(" ", 1)[1])
        return ok, failed

    before = counts()
    for photo, status in ((jpeg_bytes(), 200), (b"junk", 400)):
        data, ctype = form([("a.jpg", photo)])
        assert client.post("/predict", data=data, content_type=ctype).status_code == status
    after = counts()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_many_at_once_each_get_their_own_answer(shared_app, fast):
    photos = [jpeg_bytes(seed=i) for i in range(16)]

    def post(i):
        data, ctype = form([(f"{i}.jpg", photos[i])])
        response = shared_app.test_client().post(
            "/predict", data=data, content_type=ctype, headers={"X-Request-ID": f"id-{i}"}
        )
        return i, response.status_code, response.headers["X-Request-ID"], response.get_json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(16)))
    alone = {i: post(i)[3]["predictions"][0]["probabilities"] for i in (0, 7)}
    for i, status, request_id, body in results:
        assert status == 200 and request_id == f"id-{i}"
        assert body["predictions"][0]["filename"] == f"{i}.jpg"
        if i in alone:
            got = body["predictions"][0]["probabilities"]
            assert got == pytest.approx(alone[i], abs=1e-5)
    assert fast.calls == 0


@pytest.mark.e2e
def test_under_gunicorn_plain_uploads_and_broken_ones_are_answered(models_dir):
    """Through gunicorn's own body reader, from a real client, on one kept-alive connection."""
    with Server(models_dir, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        session = requests.Session()
        for name, data, status in (("a.jpg", jpeg_bytes(), 200), ("b.jpg", b"junk", 400)) * 2:
            response = session.post(
                f"{server.url}/predict",
                files={"image": (name, data, "image/jpeg")},
                headers={"X-Request-ID": f"req-{name}"},
                timeout=30,
            )
            assert response.status_code == status, response.text
            assert response.headers["X-Request-ID"] == f"req-{name}"
        assert response.json()["error"]["code"] == "not_an_image"
        server.stop()
        logged = [line for line in server.log_lines() if line.get("event") == "request"]
    predicts = [line for line in logged if line["endpoint"] == "/predict"]
    assert [(line["request_id"], line["status"]) for line in predicts] == [
        ("req-a.jpg", 200),
        ("req-b.jpg", 400),
        ("req-a.jpg", 200),
        ("req-b.jpg", 400),
    ]
