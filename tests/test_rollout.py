"""A rolling update rehearsed on one machine, as deploy/k8s runs it on a cluster.

Three replicas of the real service (classifier-serve, RUNTIME=onnx), each on its own loopback
port, share one model store behind a real nginx (deploy/nginx.conf's proxy directives, an
upstream of the replicas' ports, and no retries). Under continuous load through nginx:

1. a new version is published into the store (atomically, as the trainer does): every replica
   must serve it within two poll intervals, with no failed request;
2. the replicas are replaced one at a time, as a Deployment's rolling update does: the replica
   leaves the upstream (Kubernetes: the pod leaves the Service's endpoints), a short pause
   (the preStop sleep), SIGTERM and a graceful exit 0, a new one on the same port, which joins
   the upstream only once /readyz says ready (the readiness probe). Still no failed request.

nginx stands in for the Service: changing its upstream means a reload, which returns here
once no nginx worker of the old upstream is left (on a cluster, the preStop pause covers the
time the endpoint change takes to spread). The load's clients open a connection per request,
because a reload closes nginx's idle client connections, which a Service never does when
endpoints change; nginx keeps keep-alive connections to the replicas. Everything listens on
127.0.0.1; the load is bounded in requests and in time. The figures are in
docs/kubernetes.md.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from benchmarks.harness import Server, free_port
from tests.helpers import jpeg_bytes, publish_model

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
MODEL = "pets"
REPLICAS = 3
POLL_SECONDS = 1.0  # MODEL_POLL_SECONDS of every replica (the bound below is two of these)
PRESTOP_SECONDS = 1.0  # deploy/k8s waits 10 s for a whole cluster; one nginx needs less
CLIENTS = 4
MAX_SECONDS = 90.0  # the load stops by then whatever happens
MAX_REQUESTS_PER_CLIENT = 20_000


# -- nginx as the Service ------------------------------------------------------------------


def nginx_config(tmp: Path, listen: int, upstreams: list[int]) -> str:
    """An nginx in front of the replicas with deploy/nginx.conf's proxy directives (body
    limit and buffering, HTTP/1.1 keep-alive upstream, timeouts), on loopback, private paths.

    Unlike deploy/nginx.conf it never retries a request on another replica: a Kubernetes
    Service does not either, so no failed request here means the rollout itself (endpoints,
    preStop pause, graceful drain, readiness) loses nothing, not that a proxy hid the loss.
    """
    servers = "".join(f"        server 127.0.0.1:{port} max_fails=0;\n" for port in upstreams)
    user = "user root;\n" if os.geteuid() == 0 else ""  # the workers write under tmp
    temp_paths = "".join(
        f"    {name}_temp_path {tmp / name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"};
worker_processes 2;
events {{ worker_connections 1024; }}
http {{
{temp_paths}    log_format upstreams '$status $upstream_addr $upstream_status';
    access_log {tmp / "access.log"} upstreams;
    upstream api {{
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{listen};
        client_max_body_size 10m;
        client_body_buffer_size 1m;
        client_body_timeout 30s;
        client_header_timeout 10s;
        send_timeout 30s;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_request_buffering on;
            proxy_buffering on;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            proxy_next_upstream off;
        }}
    }}
}}
"""


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


class Nginx:
    """A real nginx whose upstream is changed by rewriting its config and reloading."""

    def __init__(self, tmp: Path, upstreams: list[int]) -> None:
        self.tmp, self.port = tmp, free_port()
        self.config = tmp / "nginx.conf"
        self.config.write_text(nginx_config(tmp, self.port, upstreams))
        check = subprocess.run(
            [NGINX, "-t", "-c", str(self.config), "-p", str(tmp)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(
            [NGINX, "-c", str(self.config), "-p", str(tmp), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise TimeoutError("nginx did not answer")

    def set_upstreams(self, upstreams: list[int]) -> None:
        """Reload with a new upstream; return once no worker of the old config is left."""
        self.config.write_text(nginx_config(self.tmp, self.port, upstreams))
        old = children(self.process.pid)
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            now = children(self.process.pid)
            if now and not now & old:
                return
            time.sleep(0.05)
        raise TimeoutError(f"old nginx workers still running:\n{self.log()}")

    def log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# -- replicas --------------------------------------------------------------------------------


def start_replica(models: Path, port: int | None = None) -> Server:
    env = {
        "MODEL_NAME": MODEL,
        "RUNTIME": "onnx",
        "MODEL_POLL_SECONDS": str(POLL_SECONDS),
        "INFERENCE_THREADS": "1",  # three replicas share two cores
        # HTTP only: a gRPC port picked free before a replica starts can be taken meanwhile by
        # one of the load's many connections through nginx (their local ports are ephemeral).
        "GRPC_PORT": "0",
    }
    server = Server(models, **env, **({"PORT": str(port)} if port else {}))
    if port:  # Server picked a free port of its own; the environment above overrides it
        server.port, server.url = port, f"http://127.0.0.1:{port}"
    return server


def serving_version(server: Server) -> int | None:
    try:
        answer = requests.get(f"{server.url}/v1/models/{MODEL}", timeout=2)
    except requests.RequestException:
        return None
    return answer.json().get("serving_version") if answer.ok else None


def predictions_served(server: Server) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("inference_request_success_total{")
    )


# -- load --------------------------------------------------------------------------------------


@dataclass
class Record:
    started: float
    finished: float
    status: int
    version: str | None
    error: str = ""


@dataclass
class Load:
    """CLIENTS threads posting a JPEG through nginx, a new connection each time, until stopped."""

    port: int
    body: bytes
    records: list[Record] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + MAX_SECONDS
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def client(self) -> None:
        mine = []
        while (
            not self.stop.is_set()
            and time.monotonic() < self.deadline
            and len(mine) < MAX_REQUESTS_PER_CLIENT
        ):
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request(
                    "POST",
                    "/predict",
                    self.body,
                    {"Content-Type": "image/jpeg", "Connection": "close"},
                )
                response = conn.getresponse()
                text = response.read()
                mine.append(
                    Record(
                        started,
                        time.monotonic(),
                        response.status,
                        response.getheader("X-Model-Version"),
                        "" if response.status == 200 else text[:200].decode(errors="replace"),
                    )
                )
            except (OSError, http.client.HTTPException) as exc:
                mine.append(Record(started, time.monotonic(), 0, None, repr(exc)))
            finally:
                conn.close()
        with self.lock:
            self.records.extend(mine)

    def finish(self) -> list[Record]:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        return sorted(self.records, key=lambda r: r.started)


def wait_for(condition, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


# -- the rehearsal -------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> Path:
    models = tmp_path / "models"
    assert publish_model(models, MODEL, seed=0) == 1
    return models


@pytest.mark.skipif(NGINX is None, reason="Debian's nginx is not installed (make browser)")
def test_rolling_update_under_load_fails_no_request(store, tmp_path):
    began = time.monotonic()
    replicas = [start_replica(store) for _ in range(REPLICAS)]
    nginx = load = None
    try:
        for replica in replicas:
            replica.wait_ready()
        assert [serving_version(r) for r in replicas] == [1] * REPLICAS
        nginx_tmp = tmp_path / "nginx"
        nginx_tmp.mkdir()
        nginx = Nginx(nginx_tmp, [r.port for r in replicas])
        load = Load(nginx.port, jpeg_bytes((320, 240), seed=3))
        time.sleep(2.0)  # a baseline on version 1

        # 1. A new version, published while the replicas serve; each polls and swaps.
        assert publish_model(store, MODEL, seed=1) == 2
        published = time.monotonic()
        swapped = {}

        def all_swapped():
            for index, replica in enumerate(replicas):
                if index not in swapped and serving_version(replica) == 2:
                    swapped[index] = time.monotonic() - published
            return len(swapped) == REPLICAS

        assert wait_for(all_swapped, timeout=30), f"replicas on version 2: {swapped}"
        converged = published + max(swapped.values())

        # 2. Replace the replicas one at a time, as a Deployment's rolling update does.
        replaced = []
        for index in range(REPLICAS):
            old = replicas[index]
            others = [r.port for i, r in enumerate(replicas) if i != index]
            step = time.monotonic()
            nginx.set_upstreams(others)  # out of the endpoints
            time.sleep(PRESTOP_SECONDS)  # preStop
            assert old.stop() == 0, old.output()  # SIGTERM: drains, exits 0
            new = start_replica(store, port=old.port)
            replicas[index] = new
            new.wait_ready()  # readiness
            assert serving_version(new) == 2
            nginx.set_upstreams([r.port for r in replicas])  # back in the endpoints
            replaced.append(time.monotonic() - step)
        time.sleep(2.0)  # the new replicas take their share
        records = load.finish()
        served = [predictions_served(r) for r in replicas]
    finally:
        if load is not None:
            load.finish()
        if nginx is not None:
            nginx.stop()
        for replica in replicas:
            replica.stop()

    failures = [r for r in records if r.status != 200]
    after = [r for r in records if r.started > converged]
    latencies = sorted((r.finished - r.started) * 1000 for r in records if r.status == 200)
    figures = {
        "requests": len(records),
        "failed": len(failures),
        "seconds_under_load": round(records[-1].finished - records[0].started, 1),
        "requests_per_second": round(len(records) / (records[-1].finished - records[0].started)),
        "p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(latencies[len(latencies) * 99 // 100], 1) if latencies else None,
        "poll_seconds": POLL_SECONDS,
        "publish_to_each_replica_s": sorted(round(s, 2) for s in swapped.values()),
        "publish_to_all_replicas_s": round(converged - published, 2),
        "version_1_answers_after_that": sum(r.status == 200 and r.version != "2" for r in after),
        "replacement_seconds": [round(s, 1) for s in replaced],
        "test_seconds": round(time.monotonic() - began, 1),
    }
    print("rollout rehearsal:", json.dumps(figures))
    assert not failures, [(f.status, f.error) for f in failures[:10]]
    assert len(records) >= 200, figures
    assert {r.version for r in records if r.finished < published} == {"1"}
    # Within two poll intervals of the publish, every replica serves the new version, and
    # every request that started after that was answered by it.
    assert converged - published <= 2 * POLL_SECONDS, figures
    assert figures["version_1_answers_after_that"] == 0, figures
    assert {r.version for r in records[-50:]} == {"2"}
    # Every replacement rejoined the upstream and answered requests.
    assert all(count > 0 for count in served), served
