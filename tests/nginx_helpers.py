"""deploy/nginx.conf run by a real nginx on loopback: a private copy of the config (the
template filled in as the nginx image's entrypoint fills it, with compose's defaults), a tiny
DNS server standing in for Docker's, and service replicas on loopback addresses sharing one
port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.harness import Server, free_port
from tests.helpers import REPO

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
CONFIG = REPO / "deploy" / "nginx.conf"

# The lines of the deployment config that the test copy replaces, and with what.
LISTEN = "listen 8080;"
UPSTREAM = "set $api_upstream api:8000;"
RESOLVER = "resolver 127.0.0.11 valid=5s ipv6=off;"
ACCESS_LOG = "access_log /var/log/nginx/access.log proxied;"
GRPC_LISTEN = "listen 8081 http2;"
GRPC_UPSTREAM = "set $api_grpc_upstream api:8001;"


def compose_nginx_environment() -> dict[str, str]:
    """The nginx service's environment in docker-compose.yml, with each `${VAR:-default}`
    at its default."""
    import yaml  # the test extra's

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    environment = compose["services"]["nginx"]["environment"]
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in environment.items()}


def render(template: str, environment: dict[str, str]) -> str:
    """What the nginx image's entrypoint (20-envsubst-on-templates.sh) writes: `${NAME}` replaced
    for each variable set whose name matches NGINX_ENVSUBST_FILTER; nginx's own `$vars` kept."""
    keep = re.compile(environment.get("NGINX_ENVSUBST_FILTER", ""))
    names = [name for name in environment if keep.search(name)]
    for name in names:
        template = template.replace(f"${{{name}}}", environment[name])
    return template


class LoopbackDNS:
    """Answers A records from `answers` (name -> addresses, changeable while it runs) on
    127.0.0.1 over UDP; any other name is NXDOMAIN. Counts the questions per name."""

    def __init__(self) -> None:
        from dnslib.server import DNSLogger, DNSServer  # the test extra's; tests skip without

        self.answers: dict[str, list[str]] = {}
        self.questions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = DNSServer(
            self, address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _: None)
        )
        self.port = self._server.server.server_address[1]
        self._server.start_thread()

    def resolve(self, request, handler):
        """Called by dnslib's server thread for each question."""
        from dnslib import QTYPE, RCODE, RR, A

        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self._lock:
            self.questions[name] = self.questions.get(name, 0) + 1
            addresses = list(self.answers.get(name, ()))
        if not addresses:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=1))
        return reply

    def set(self, name: str, addresses: list[str]) -> None:
        with self._lock:
            self.answers[name] = list(addresses)

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()


def nginx_config(
    tmp: Path,
    listen: int,
    upstream: str,
    dns_port: int,
    grpc_listen: int | None = None,
    grpc_upstream: str = "api:8001",
    environment: dict[str, str] | None = None,
) -> Path:
    """The deployment config with loopback values: its own ports (HTTP, gRPC), `upstream` and
    `grpc_upstream` ("name:port") for the replicas, the test's DNS server (answers kept 1 s),
    and paths under `tmp`; the template filled in with compose's defaults and `environment`."""
    text = render(CONFIG.read_text(), {**compose_nginx_environment(), **(environment or {})})
    assert "${" not in text, "a ${VAR} of the template has no value in docker-compose.yml"
    replacements = {
        LISTEN: f"listen 127.0.0.1:{listen};",
        GRPC_LISTEN: f"listen 127.0.0.1:{grpc_listen or free_port()} http2;",
        GRPC_UPSTREAM: f"set $api_grpc_upstream {grpc_upstream};",
        UPSTREAM: f"set $api_upstream {upstream};",
        RESOLVER: f"resolver 127.0.0.1:{dns_port} valid=1s ipv6=off;",
        ACCESS_LOG: f"access_log {tmp / 'access.log'} proxied;",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} is not once in deploy/nginx.conf"
        text = text.replace(old, new)
    private = "\n".join(
        f"    {name}_temp_path {tmp / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {", f"http {{\n{private}", 1)
    head = f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
    if os.geteuid() == 0:
        head += "user root;\n"  # the workers write under tmp, which only root can enter
    path = tmp / "nginx.conf"
    path.write_text(head + text)
    return path


def check_config(config: Path) -> subprocess.CompletedProcess:
    assert NGINX is not None
    return subprocess.run(
        [NGINX, "-t", "-c", str(config), "-p", str(config.parent)],
        capture_output=True,
        text=True,
        timeout=30,
    )


class Nginx:
    """nginx in the foreground on 127.0.0.1 with the checked config; never reloaded."""

    def __init__(
        self,
        tmp: Path,
        upstream: str,
        dns_port: int,
        grpc_upstream: str = "api:8001",
        environment: dict[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.grpc_port = free_port(self.port)
        self.config = nginx_config(
            tmp, self.port, upstream, dns_port, self.grpc_port, grpc_upstream, environment
        )
        check = check_config(self.config)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(
            [NGINX, "-c", str(self.config), "-p", str(tmp), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:  # listening: a TCP connection, no request (none counts against a limit)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not start:\n{self.error_log()}") from None
                time.sleep(0.05)

    def access_log(self) -> list[dict]:
        path = self.tmp / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def logged(self, request_ids: set[str], timeout: float = 5) -> dict[str, dict]:
        """The access log entries of `request_ids`, waiting for the last ones to be written
        (nginx writes an entry just after the answer's last byte)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = {e["request_id"]: e for e in self.access_log()}
            if request_ids <= entries.keys() or time.monotonic() > deadline:
                return {i: e for i, e in entries.items() if i in request_ids}
            time.sleep(0.02)

    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Replica(Server):
    """A service bound to `host`:`port`: replicas behind one DNS name share the port."""

    def __init__(self, models_dir: Path, host: str, port: int, **env: str) -> None:
        super().__init__(models_dir, HOST=host, PORT=str(port), **env)
        self.host, self.port, self.url = host, port, f"http://{host}:{port}"

    def logged_ids(self, expected: set[str], timeout: float = 5) -> set[str]:
        """The request ids in its access log, waiting up to `timeout` for `expected` among
        them: the line is written by the worker's log thread just after the answer."""
        deadline = time.monotonic() + timeout
        while True:
            ids = {e["request_id"] for e in self.requests_logged()}
            if expected <= ids or time.monotonic() > deadline:
                return ids
            time.sleep(0.05)

    def requests_logged(self) -> list[dict]:
        """The service's access log lines (one JSON object per request)."""
        entries = []
        for line in self.output(tail=1 << 30).splitlines():
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == "request":
                    entries.append(entry)
        return entries


def dribble(
    port: int, stop: threading.Event, body: bytes, seconds: float, headers: str = ""
) -> None:
    """A slow client: headers at once, then the body a few bytes at a time, for `seconds`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                (
                    "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
                    f"{headers}Content-Length: {len(body)}\r\n\r\n"
                ).encode()
            )
            deadline = time.monotonic() + seconds
            sent = 0
            while not stop.is_set() and time.monotonic() < deadline and sent < len(body) - 1:
                sock.sendall(body[sent : sent + 4])
                sent += 4
                time.sleep(0.1)
    except OSError:
        pass
