import json
import logging
import re
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import Server
from service.logs import JsonFormatter
from tests.helpers import jpeg_bytes


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, name, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_id_is_taken_or_made_and_echoed(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])


def test_one_json_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.post(
            "/predict",
            data=jpeg_bytes(),
            content_type="image/jpeg",
            headers={"X-Request-ID": "req-1"},
        )
        client.post("/predict", data=b"junk", content_type="image/jpeg")
    records = [r for r in caplog.records if r.name == "service.access"]
    assert len(records) == 2
    ok, bad = (json.loads(JsonFormatter().format(r)) for r in records)
    assert ok["request_id"] == "req-1"
    assert ok["endpoint"] == "/predict" and ok["status"] == 200
    assert ok["images"] == 1 and ok["model"] == "pets" and ok["version"] == 1
    assert ok["latency_ms"] > 0
    assert bad["status"] == 400 and bad["error"] == "not_an_image"
    assert "junk" not in json.dumps(bad)  # image bytes never reach the log


def test_metrics_count_requests_batches_and_failures(client):
    before = samples(client.get("/metrics").get_data(as_text=True))
    client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg")
    client.post("/predict", data=b"junk", content_type="image/jpeg")
    response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    after = samples(response.get_data(as_text=True))

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("http_requests_total", endpoint="/predict", method="POST", status="200") == 1
    assert delta("http_requests_total", endpoint="/predict", method="POST", status="400") == 1
    assert delta("inference_request_success_total", model="pets", version="1") == 1
    assert delta("inference_request_failure_total", model="pets", reason="not_an_image") == 1
    assert delta("inference_count_total", model="pets", version="1") == 1
    assert delta("inference_exec_count_total", model="pets", version="1") == 1
    assert delta("inference_batch_size_count", model="pets") == 1
    assert delta("inference_queue_duration_seconds_count", model="pets") == 1
    assert delta("inference_compute_duration_seconds_count", model="pets") == 1
    assert delta("http_request_duration_seconds_count", endpoint="/predict") == 2
    assert value(after, "model_load_total", model="pets", result="success") >= 1
    assert value(after, "model_loaded_version", model="pets") >= 1  # process-wide gauge


@pytest.mark.e2e
def test_metrics_add_up_across_workers(models_dir):
    with Server(
        models_dir, MODEL_NAME="pets", WEB_CONCURRENCY="2", MODEL_POLL_SECONDS="0"
    ) as server:
        server.wait_ready()
        session = requests.Session()
        deadline = time.monotonic() + 90  # the second worker may still be loading its model
        while time.monotonic() < deadline:
            loads = samples(session.get(f"{server.url}/metrics", timeout=10).text)
            if value(loads, "model_load_total", model="pets", result="success") == 2:
                break
            time.sleep(0.2)
        for _ in range(12):
            response = requests.post(
                f"{server.url}/predict",
                data=jpeg_bytes(),
                headers={"Content-Type": "image/jpeg", "Connection": "close"},
                timeout=30,
            )
            assert response.status_code == 200
        found = samples(session.get(f"{server.url}/metrics", timeout=10).text)
        assert value(found, "inference_request_success_total", model="pets", version="1") == 12
        assert value(found, "inference_count_total", model="pets", version="1") == 12
        assert value(found, "model_load_total", model="pets", result="success") == 2  # 2 workers
        server.stop()
        lines = server.log_lines()
        requests_logged = [line for line in lines if line.get("event") == "request"]
        assert sum(1 for line in requests_logged if line["endpoint"] == "/predict") == 12
        starts = [line for line in lines if line.get("event") == "start"]
        assert len(starts) == 2 and starts[0]["settings"]["MODEL_NAME"] == "pets"
        pids = {line["pid"] for line in requests_logged if line["endpoint"] == "/predict"}
        assert len(pids) >= 1


@pytest.mark.e2e
@pytest.mark.parametrize("runtime", ["auto", "keras"])
def test_every_line_the_server_prints_is_json(models_dir, runtime):
    """gunicorn's own lines, TensorFlow's start-up lines and the app's: one JSON object each."""
    with Server(models_dir, MODEL_NAME="pets", MODEL_POLL_SECONDS="0", RUNTIME=runtime) as server:
        server.wait_ready()
        requests.post(
            f"{server.url}/predict",
            data=jpeg_bytes(),
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        requests.post(f"{server.url}/predict", data=b"junk", timeout=30)
        requests.get(f"{server.url}/nope", timeout=10)
        server.stop()
        lines = [line for line in server.output().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # fails on the first line that is not JSON
    loggers = {entry["logger"] for entry in parsed}
    assert {"gunicorn.error", "service.access", "service.loader"} <= loggers
    assert any(entry.get("message", "").startswith("Shutting down") for entry in parsed)


def test_a_preflight_or_a_head_on_a_predict_route_is_no_inference(models_dir):
    """A CORS preflight (OPTIONS, answered without a key) asks nothing of the model: before,
    each counted as a successful inference of model "None"; with keys on, a bare OPTIONS
    counted as a failed one."""
    from service.http.app import create_app
    from tests.helpers import app_config

    app = create_app(app_config(models_dir, CORS_ORIGINS="https://app.example"))
    client = app.test_client()
    before = samples(client.get("/metrics").get_data(as_text=True))
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    for path in ("/predict", "/v1/models/pets:predict", "/v2/models/pets/infer"):
        assert client.options(path, headers=preflight).status_code == 200
        assert client.options(path).status_code == 200
    after = samples(client.get("/metrics").get_data(as_text=True))
    counted = {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0].startswith("inference_request_") and after[key] != before.get(key, 0.0)
    }
    assert counted == {}
    assert not [key for key in after if ("model", "None") in key[1]]


def test_an_unloaded_version_leaves_the_runtime_gauge(models_dir):
    """`model_runtime_info` is "1 for each loaded version": a retired one goes to 0."""
    from service.http.app import create_app
    from tests.helpers import app_config, publish_model

    app = create_app(app_config(models_dir))
    ran = app.extensions["dataplane"].model("pets").predictor.runtime
    publish_model(models_dir, "pets", seed=5)
    app.extensions["loader"].load_all()
    found = samples(app.test_client().get("/metrics").get_data(as_text=True))
    runtime = {  # the series are process-wide: other tests' models may be there too
        labels["version"]: v
        for (name, key), v in found.items()
        if name == "model_runtime_info"
        and (labels := dict(key))["model"] == "pets"
        and labels["runtime"] == ran.name
    }
    assert (runtime["1"], runtime["2"]) == (0.0, 1.0)


def run_conf(env: dict[str, str]) -> str:
    """Run gunicorn.conf.py's start and exit hooks in a fresh interpreter; its folder."""
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    code = (
        "import os, runpy; ns = runpy.run_path('service/gunicorn.conf.py'); "
        "ns['on_starting'](None); print(os.environ['PROMETHEUS_MULTIPROC_DIR']); "
        "ns['on_exit'](None)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | env
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_metrics_folder_an_operator_names_keeps_its_other_files(tmp_path):
    """Only an earlier run's metric files go (before: the whole folder was deleted)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "important.txt").write_text("not ours")
    (folder / "counter_123.db").write_bytes(b"an earlier run's samples")
    assert run_conf({"PROMETHEUS_MULTIPROC_DIR": str(folder)}) == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["important.txt"]


def test_the_metrics_folder_of_its_own_goes_at_exit():
    from pathlib import Path

    own = Path(run_conf({}))
    assert own.name.startswith("classifier-metrics-") and not own.exists()


def readme_metrics() -> dict[str, set[str]]:
    """The README's metric table: each metric's name and labels (a row's trailing `{...}`
    is the labels of the names before it that have none of their own)."""
    from tests.helpers import REPO

    text = (REPO / "README.md").read_text()
    section = text.split("\n## Metrics and logs\n", 1)[1]
    table = next(part for part in section.split("\n\n") if part.startswith("| metric |"))
    found: dict[str, set[str]] = {}
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        items = re.findall(r"`([a-z_]*)(?:\{([a-z_,]*)\})?`", cell)
        shared = next((labels for name, labels in items if not name), "")
        for name, labels in items:
            if name:
                found[name] = set(filter(None, (labels or shared).split(",")))
    return found


def test_the_readme_names_every_metric_with_its_labels():
    """The README's table of metrics is the one /metrics exports (before: it lacked
    `http_requests_by_api_key_total`, `model_runtime_info` and `model_class_mismatch_total`)."""
    from prometheus_client.metrics import MetricWrapperBase

    from service import metrics

    exported = {
        metric._name + ("_total" if metric._type == "counter" else ""): set(metric._labelnames)
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    assert readme_metrics() == exported


def test_log_lines_are_timed_to_the_millisecond_in_rfc_3339():
    """Lines a moment apart keep their order once collected, and the offset is RFC 3339's
    `+00:00` (nginx's $time_iso8601; Go's RFC3339 parser refuses `+0000`). Before:
    `2026-01-02T03:04:05+0000`, whole seconds."""
    from datetime import datetime

    record = logging.LogRecord("service.access", logging.INFO, __file__, 1, "x", None, None)
    record.created = 1767323045.678901
    stamp = json.loads(JsonFormatter().format(record))["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp), stamp
    assert datetime.fromisoformat(stamp).timestamp() == 1767323045.678


def cut_short(url: str, path: str, content_type: str, body: bytes, request_id: str) -> None:
    """Send the headers and the first half of `body`, then close the connection."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.2)


@pytest.mark.e2e
def test_an_upload_cut_short_by_its_client_is_not_logged_as_a_bad_image(models_dir):
    """A client that goes away half-way through its upload: 400 `bad_request` in its log line
    and the failure metric (before: the half body was read as the whole one and decoded,
    logged and counted as the client's broken image, `truncated_image` or `not_an_image`)."""
    image = jpeg_bytes((400, 400))
    boundary = "cut"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    with Server(models_dir, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        server.wait_ready()
        cut_short(server.url, "/predict", "image/jpeg", image, "cut-raw")
        cut_short(
            server.url, "/predict", f"multipart/form-data; boundary={boundary}", form, "cut-form"
        )
        lines = server.logged(lambda line: line["request_id"].startswith("cut-"), at_least=2)
        found = samples(requests.get(f"{server.url}/metrics", timeout=10).text)
    assert sorted((line["request_id"], line["status"], line.get("error")) for line in lines) == [
        ("cut-form", 400, "bad_request"),
        ("cut-raw", 400, "bad_request"),
    ]
    assert value(found, "inference_request_failure_total", model="pets", reason="bad_request") == 2
