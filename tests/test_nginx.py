"""deploy/nginx.conf in a real nginx, in front of real gunicorns on loopback addresses.

Slow clients do not hold the service's threads; request ids pass through; a full replica's
503s are retried on another; replicas added to DNS get traffic without a reload; per-client
limits are off by default and, turned on, answer 429 in the service's JSON format. Uses Debian's nginx (make test installs it
as root) and a DNS server on 127.0.0.1 in place of Docker's; traffic stays on 127.0.0.0/8
and every client stops by itself.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import contextmanager

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from benchmarks.harness import Server, free_port
from tests.helpers import jpeg_bytes, publish_model
from tests.nginx_helpers import (
    NGINX,
    LoopbackDNS,
    Nginx,
    Replica,
    check_config,
    dribble,
    nginx_config,
)

pytestmark = pytest.mark.e2e

DRIBBLE_SECONDS = 6.0
JPEG = {"Content-Type": "image/jpeg"}


def post(url: str, request_id: str | None = None, key: str | None = None) -> requests.Response:
    """POST /predict with one small JPEG, and an X-Request-ID and an X-API-Key when given."""
    headers = dict(JPEG)
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    if key is not None:
        headers["X-API-Key"] = key
    return requests.post(f"{url}/predict", data=jpeg_bytes(), headers=headers, timeout=30)


def timed_request(port: int, body: bytes) -> float | None:
    started = time.monotonic()
    try:
        response = requests.post(
            f"http://127.0.0.1:{port}/predict", data=body, headers=JPEG, timeout=2.5
        )
    except requests.Timeout:
        return None
    assert response.status_code == 200
    return time.monotonic() - started


@contextmanager
def slow_clients(port: int, body: bytes, count: int, headers: str = ""):
    """`count` clients dribbling their uploads (for DRIBBLE_SECONDS at most) while inside."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=dribble, args=(port, stop, body, DRIBBLE_SECONDS, headers))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every slow client is connected and sending
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(DRIBBLE_SECONDS + 5)


def with_slow_clients(port: int, body: bytes, count: int = 6) -> float | None:
    with slow_clients(port, body, count):
        return timed_request(port, body)


@contextmanager
def kept_full(replica: Server, clients: int = 4, max_seconds: float = 60):
    """Clients posting straight to `replica` back to back, so its small queue stays full."""
    stop = threading.Event()
    body = jpeg_bytes((320, 240))

    def client(index: int) -> None:
        deadline = time.monotonic() + max_seconds
        with requests.Session() as session:
            for j in range(20_000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                session.post(
                    f"{replica.url}/predict",
                    data=body,
                    headers={**JPEG, "X-Request-ID": f"filler-{index}-{j}"},
                    timeout=30,
                )

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the queue is full most of the time from now on
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(max_seconds + 30)


@pytest.fixture(scope="module")
def dns():
    if NGINX is None:
        pytest.skip("Debian's nginx is not installed (make test installs it as root)")
    pytest.importorskip("dnslib")
    server = LoopbackDNS()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(dns, tmp_path_factory):
    models = tmp_path_factory.mktemp("nginx-models")
    publish_model(models, "pets")
    # Two threads: without a buffer in front, two slow clients take the whole worker.
    with Server(models, MODEL_NAME="pets", MODEL_POLL_SECONDS="0", GUNICORN_THREADS="2") as srv:
        yield srv.wait_ready()


@pytest.fixture
def nginx(dns, service, tmp_path):
    """A fresh nginx in front of `service`, found as "api" in DNS, as compose runs it."""
    dns.set("api", ["127.0.0.1"])
    proxy = Nginx(
        tmp_path, f"api:{service.port}", dns.port, grpc_upstream=f"api:{service.grpc_port}"
    )
    yield proxy
    proxy.stop()


# The per-client limits as deploy/nginx.conf documents them for a public API.
PUBLIC = {
    "NGINX_CLIENT_LIMITS": "on",
    "NGINX_CLIENT_RATE": "20",
    "NGINX_CLIENT_BURST": "40",
    "NGINX_CLIENT_CONNECTIONS": "16",
}


@pytest.fixture
def limited_nginx(dns, service, tmp_path):
    """As `nginx`, with the per-client limits on (fresh, empty limit zones)."""
    dns.set("api", ["127.0.0.1"])
    proxy = Nginx(tmp_path, f"api:{service.port}", dns.port, environment=PUBLIC)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def replicas(dns, tmp_path_factory):
    """Two replicas on 127.0.0.2 and 127.0.0.3, one port: the first has room for one image
    in its queue (a few clients keep it full), the second has the default 256."""
    models = tmp_path_factory.mktemp("replica-models")
    publish_model(models, "pets", image_size=128)  # a slower model: the queue fills sooner
    port = free_port()
    common = {"MODEL_NAME": "pets", "MODEL_POLL_SECONDS": "0"}
    small = {"QUEUE_CAPACITY": "1", "MAX_IMAGES_PER_REQUEST": "1", "MAX_BATCH_SIZE": "1"}
    full = Replica(models, "127.0.0.2", port, GUNICORN_THREADS="8", **common, **small)
    other = Replica(models, "127.0.0.3", port, **common)
    try:
        yield full.wait_ready(), other.wait_ready()
    finally:
        full.stop()
        other.stop()


def test_config_passes_nginx_t(dns, tmp_path):
    config = nginx_config(tmp_path, free_port(), "api:8000", dns.port)
    check = check_config(config)
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr


def test_nginx_passes_requests_and_limits_bodies(nginx):
    response = post(nginx.url, "through-nginx")
    assert response.status_code == 200
    # Refused by nginx from the headers alone, before any body reaches a worker.
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 11534336\r\n\r\n"
        )
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413")
    assert '"code": "payload_too_large"' in answer  # JSON, like the service's own errors


def test_no_replica_reached_or_answering_is_a_json_error(dns, tmp_path, monkeypatch):
    """nginx's own 502 and 504 (every replica restarting, the name not in DNS, a replica
    that never answers) in the service's JSON error format with the request id, not HTML."""
    import tests.nginx_helpers as helpers

    dns.set("down", ["127.0.0.1"])
    nobody = free_port()  # nothing listens there: connection refused
    answers = []
    for upstream in (f"down:{nobody}", f"unknown:{nobody}"):  # refused; not in DNS
        folder = tmp_path / upstream.split(":")[0]
        folder.mkdir()
        proxy = Nginx(folder, upstream, dns.port)
        try:
            answers.append(post(proxy.url, f"id-{upstream.split(':')[0]}"))
        finally:
            proxy.stop()
    for response, name in zip(answers, ("down", "unknown"), strict=True):
        assert response.status_code == 502
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "upstream_unavailable"
        assert response.headers["X-Request-ID"] == f"id-{name}"
        assert response.headers["Retry-After"] == "1"
    # A replica that takes the connection and never answers: 504 after proxy_read_timeout
    # (1 s in this copy of the config).
    config = tmp_path / "short-read.conf"
    text = helpers.CONFIG.read_text()
    config.write_text(text.replace("proxy_read_timeout 60s;", "proxy_read_timeout 1s;"))
    monkeypatch.setattr(helpers, "CONFIG", config)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        (tmp_path / "silent").mkdir()
        proxy = Nginx(tmp_path / "silent", f"down:{silent.getsockname()[1]}", dns.port)
        try:
            response = post(proxy.url, "id-silent")
        finally:
            proxy.stop()
    assert response.status_code == 504
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert response.headers["X-Request-ID"] == "id-silent"


def test_grpc_passes_through_with_status_codes_and_request_ids(nginx):
    target = f"127.0.0.1:{nginx.grpc_port}"
    with triton.InferenceServerClient(target) as client:
        assert client.is_server_ready()
        image = triton.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([jpeg_bytes()], dtype=object))
        result = client.infer("pets", [image], request_id="via-nginx")
        assert result.as_numpy("probabilities").shape == (1, 2)
        assert result.get_response().id == "via-nginx"
        with pytest.raises(InferenceServerException) as refused:
            client.infer("nope", [image])
        assert refused.value.status() == "StatusCode.NOT_FOUND"
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer, call = health.Check.with_call(
            health_pb2.HealthCheckRequest(), metadata=(("x-request-id", "grpc-id-7"),)
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert dict(call.initial_metadata())["x-request-id"] == "grpc-id-7"


def test_a_health_watch_outlives_the_wait_for_an_answer(dns, service, tmp_path, monkeypatch):
    """grpc.health.v1's Watch sends only changes: nginx must not end it as a call that took
    too long to answer (grpc_read_timeout, 2 s in this copy of the config)."""
    import tests.nginx_helpers as helpers

    config = tmp_path / "short-grpc-read.conf"
    text = helpers.CONFIG.read_text()
    config.write_text(text.replace("grpc_read_timeout 60s;", "grpc_read_timeout 2s;"))
    monkeypatch.setattr(helpers, "CONFIG", config)
    dns.set("api", ["127.0.0.1"])
    proxy = Nginx(tmp_path, "api:1", dns.port, grpc_upstream=f"api:{service.grpc_port}")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{proxy.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=5)
            statuses, ended = [], None
            started = time.monotonic()
            try:
                for answer in watch:
                    statuses.append(answer.status)
            except grpc.RpcError as error:
                ended = error.code(), time.monotonic() - started
    finally:
        proxy.stop()
    assert statuses == [health_pb2.HealthCheckResponse.SERVING]
    # Ended by the client's own deadline (5 s), not by nginx at 2 s.
    assert ended is not None and ended[0] == grpc.StatusCode.DEADLINE_EXCEEDED, ended
    assert ended[1] > 4.5, ended


def test_slow_clients_hold_gunicorn_directly_but_not_through_nginx(service, nginx):
    body = jpeg_bytes((200, 150))
    direct = with_slow_clients(service.port, body)
    proxied = with_slow_clients(nginx.port, body)
    assert direct is None  # both threads were held by slow uploads: the request timed out
    assert proxied is not None and proxied < 2.5


def test_request_ids_are_kept_or_made(service, nginx):
    kept = post(nginx.url, "client-id-42.a:b")
    made = [post(nginx.url), post(nginx.url)]
    malformed = post(nginx.url, "not a valid id!")
    assert kept.status_code == 200 and kept.headers["X-Request-ID"] == "client-id-42.a:b"
    ids = [response.headers["X-Request-ID"] for response in [*made, malformed]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)  # nginx's $request_id
    assert len(set(ids)) == 3
    # The service logged the ids nginx sent, and nginx logged the same ones.
    wanted = {"client-id-42.a:b", *ids}
    logged = service.logged(lambda line: line["request_id"] in wanted, at_least=len(wanted))
    assert {line["request_id"] for line in logged} == wanted
    assert nginx.logged(wanted).keys() == wanted


def test_a_full_replica_s_503s_are_retried_on_the_other(dns, replicas, tmp_path):
    full, other = replicas
    dns.set("replicas", [full.host, other.host])
    proxy = Nginx(tmp_path, f"replicas:{full.port}", dns.port)
    ids = [f"retry-{i}" for i in range(30)]
    try:
        with kept_full(full):
            statuses = []
            for request_id in ids:  # 20 a second at most: under the per-client limit
                statuses.append(post(proxy.url, request_id).status_code)
                time.sleep(0.05)
    finally:
        proxy.stop()
    assert statuses == [200] * len(ids)
    deadline = time.monotonic() + 5  # the last answers' lines may lag them (a log thread)
    while True:
        logged = full.requests_logged() + other.requests_logged()
        answered = {e["request_id"] for e in logged if e["status"] == 200}
        if set(ids) <= answered or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    refused = [e for e in logged if e["request_id"] in ids and e.get("error") == "queue_full"]
    assert refused and all(e["status"] == 503 for e in refused)
    assert {e["request_id"] for e in refused} <= {e["request_id"] for e in full.requests_logged()}
    served = [e["request_id"] for e in logged if e["request_id"] in ids and e["status"] == 200]
    assert sorted(served) == sorted(ids)  # each answered once, by one replica
    # nginx's log shows each refusal followed by the other replica's answer.
    retried = [e for e in proxy.logged(set(ids)).values() if e["upstream_status"] == "503, 200"]
    assert {e["request_id"] for e in retried} == {e["request_id"] for e in refused}
    assert all(e["upstream_addr"].startswith(f"{full.host}:") for e in retried)
    print(f"{len(refused)} of {len(ids)} requests refused by the full replica, all retried")


def test_a_replica_added_to_dns_gets_traffic_without_a_reload(dns, replicas, tmp_path):
    first, second = replicas
    dns.set("scaled", [first.host])
    proxy = Nginx(tmp_path, f"scaled:{first.port}", dns.port)
    before = [f"before-{i}" for i in range(10)]
    reached, request_id = None, None
    try:
        for request_id in before:
            assert post(proxy.url, request_id).status_code == 200
            time.sleep(0.05)
        dns.set("scaled", [first.host, second.host])  # docker compose up --scale api=2
        changed = time.monotonic()
        for i in range(150):  # 15 s at most, 10 requests a second
            request_id = f"after-{i}"
            assert post(proxy.url, request_id).status_code == 200
            [entry] = proxy.logged({request_id}).values()
            if entry["upstream_addr"].startswith(f"{second.host}:"):
                reached = time.monotonic() - changed
                break
            time.sleep(0.1)
        assert proxy.process.poll() is None  # the same nginx all along: never reloaded
    finally:
        proxy.stop()
    assert reached is not None, "the added replica got no request within 15 s"
    assert set(before) <= first.logged_ids(set(before))
    second_ids = second.logged_ids({request_id})  # the last answer's line may lag it
    assert not second_ids & set(before) and request_id in second_ids
    print(
        f"the added replica got traffic {reached:.2f} s after the DNS change, questions: "
        f"{dns.questions.get('scaled')}"
    )


def test_a_burst_from_one_client_is_limited_and_other_clients_are_not(limited_nginx):
    nginx = limited_nginx
    statuses, refused = [], None
    deadline = time.monotonic() + 20
    with requests.Session() as session:  # sequential: bounded by count and time
        while len(statuses) < 300 and statuses.count(429) < 10 and time.monotonic() < deadline:
            response = session.get(f"{nginx.url}/healthz", headers={"X-API-Key": "client-a"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                refused = response
        # The same key as a bearer token is the same client: still limited.
        as_bearer = [
            session.get(
                f"{nginx.url}/healthz", headers={"Authorization": "Bearer client-a"}
            ).status_code
            for _ in range(10)
        ]
        # Another key, and no key (the client's address), each have their own full burst.
        other_key = [
            session.get(f"{nginx.url}/healthz", headers={"X-API-Key": "client-b"}).status_code
            for _ in range(40)
        ]
        no_key = [session.get(f"{nginx.url}/healthz").status_code for _ in range(40)]
    assert statuses[:41] == [200] * 41  # the burst of 40 above the first, at once
    assert refused is not None and set(statuses) == {200, 429}
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Content-Type"] == "application/json"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["message"]
    assert len(refused.headers["X-Request-ID"]) == 32
    assert as_bearer.count(429) >= 8
    assert other_key == [200] * 40 and no_key == [200] * 40
    print(f"client-a: {statuses.count(200)} answered, then 429 (of {len(statuses)})")


def test_a_key_with_tabs_around_it_is_the_same_client(limited_nginx):
    """gunicorn drops the tabs around a header's value, and the service then takes the key:
    nginx must count it as that key too (it kept the tabs: a new client per request)."""
    nginx = limited_nginx
    statuses: list[int] = []
    deadline = time.monotonic() + 20
    with requests.Session() as session:  # sequential: bounded by count and time
        while len(statuses) < 300 and statuses.count(429) < 10 and time.monotonic() < deadline:
            tabs = "\t" * (len(statuses) + 1)  # another header value each time
            headers = (
                {"X-API-Key": f"client-a{tabs}"}
                if len(statuses) % 2
                else {"Authorization": f"Bearer\tclient-a{tabs}"}
            )
            statuses.append(session.get(f"{nginx.url}/healthz", headers=headers).status_code)
    assert statuses.count(429) == 10, f"{len(statuses)} requests, none limited"


def test_requests_in_flight_are_limited_per_client(limited_nginx):
    nginx = limited_nginx
    body = jpeg_bytes((200, 150))
    with slow_clients(nginx.port, body, 16, headers="X-API-Key: uploader\r\n"):
        same = post(nginx.url, key="uploader")
        other = post(nginx.url, key="someone-else")
    assert same.status_code == 429 and same.headers["Retry-After"] == "1"
    assert same.json()["error"]["code"] == "rate_limited"
    assert other.status_code == 200


def test_without_nginx_client_limits_one_client_gets_what_the_replicas_serve(nginx):
    """compose's default: no per-client rate or in-flight limit (an application server
    calling from one address is not refused while the replicas have room)."""
    body = jpeg_bytes((200, 150))
    with requests.Session() as session:  # far past the public burst of 40
        statuses = [session.get(f"{nginx.url}/healthz").status_code for _ in range(150)]
    assert statuses == [200] * 150
    with slow_clients(nginx.port, body, 20, headers="X-API-Key: uploader\r\n"):
        assert post(nginx.url, key="uploader").status_code == 200  # 21 in flight


def test_the_limits_are_settings_of_the_compose_file():
    from tests.nginx_helpers import CONFIG, compose_nginx_environment

    environment = compose_nginx_environment()
    template = CONFIG.read_text()
    named = set(re.findall(r"\$\{(NGINX_CLIENT_\w+)\}", template))
    assert named == {k for k in environment if k.startswith("NGINX_CLIENT_")}
    assert environment["NGINX_CLIENT_LIMITS"] == "off"
    for name in named:  # the public numbers are documented where they are set
        assert name in template.split("worker_processes")[0]
