"""deploy/prometheus and deploy/grafana: the alert rules pass `promtool check rules` and their
unit tests (`promtool test rules`), every dashboard query is valid PromQL, and every metric
the rules and the dashboard name is one a live server exports on /metrics.

promtool is Debian's (package `prometheus`, which `make test` installs as root); the tests
that need it skip where it is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from benchmarks.harness import Server
from tests.helpers import REPO, SHIPPED_MODELS, jpeg_bytes

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "image-classifier.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian's prometheus; make test installs it)"
)
# Grafana's variables, as Grafana fills them in before Prometheus sees a query
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".*"}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan",
}  # fmt: skip


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = [t["expr"] for p in panels for t in p.get("targets", [])]
    filled = []
    for query in queries:
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        filled.append(query)
    return filled


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query reads: identifiers that are not functions, keywords,
    label names (in braces or in by/without/on/ignoring/group_* lists) or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name not in PROMQL_WORDS:
            names.add(name)
    return names


def test_metric_names_are_read_from_promql():
    assert metric_names(
        'sum by (model, le) (rate(foo_bucket{a="b"}[5m])) / ignoring (label) group_left '
        "sum(bar_total offset 5m) > 0.2 and baz"
    ) == {"foo_bucket", "bar_total", "baz"}


@needs_promtool
def test_promtool_accepts_the_alert_rules():
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


@needs_promtool
def test_each_alert_fires_when_it_should_and_only_then():
    result = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for t in case["alert_rule_test"]}  # fmt: skip
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert tested == alerts == {"ModelDrifting", "LiveAccuracyLow", "HighErrorRate", "QueueFull"}


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each query as the expression of a recording rule."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q}
                    for i, q in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_covers_what_operators_watch():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "image-classifier"
    names = set().union(*map(metric_names, dashboard_queries()))
    for wanted in (
        "inference_count_total",  # throughput
        "http_request_duration_seconds_bucket",  # latency
        "inference_batch_size_bucket",  # batch sizes
        "inference_queue_duration_seconds_bucket",  # queue
        "inference_request_failure_total",  # errors, queue full
        "feedback_total",  # live accuracy
        "model_drift_psi",  # drift
        "prediction_confidence_bucket",  # confidence
        "predictions_total",  # class mix
    ):
        assert wanted in names, wanted
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.e2e
def test_every_metric_the_rules_and_the_dashboard_read_is_exported(tmp_path):
    """A live server that has answered, refused, captured, taken feedback and measured drift
    exports every metric name the rules and the dashboard use."""
    env = {
        "MODEL_POLL_SECONDS": "0",
        "FEEDBACK_DIR": str(tmp_path / "feedback"),
        "CAPTURE_RATE": "1",
        "DRIFT_WINDOW": "10",
        "MODEL_VERSION_POLICY": "specific:3",  # a shipped version with a drift reference
    }
    wanted = set().union(*map(metric_names, dashboard_queries() + rule_queries()))
    with Server(SHIPPED_MODELS, **env) as server:
        server.wait_ready()
        files = [("image", (f"{i}.jpg", jpeg_bytes(seed=i))) for i in range(10)]
        ok = requests.post(
            f"{server.url}/predict", files=files, headers={"X-Request-ID": "m-1"}, timeout=30
        )
        assert ok.status_code == 200
        bad = requests.post(f"{server.url}/predict", files={"image": ("x.jpg", b"x")}, timeout=30)
        assert bad.status_code == 400
        import tritonclient.grpc as triton

        assert triton.InferenceServerClient(url=server.grpc_target).is_server_live()
        feedback = f"{server.url}/v1/models/cats_vs_dogs/feedback"
        deadline = time.monotonic() + 30
        while (
            sent := requests.post(feedback, json={"request_id": "m-1", "label": "cats"}, timeout=10)
        ).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.1)  # until the capture is written
        assert sent.status_code == 201, sent.text
        while True:
            text = requests.get(f"{server.url}/metrics", timeout=10).text
            exported = {
                line.split("{")[0].split(" ")[0]
                for line in text.splitlines()
                if line and not line.startswith("#")
            }
            if wanted <= exported or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the drift gauges are refreshed every 2 s
    assert not wanted - exported, f"not exported: {sorted(wanted - exported)}"
