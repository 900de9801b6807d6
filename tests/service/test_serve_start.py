"""Clear words at start: a taken port (HTTP or gRPC) is one line and exit status 2 at once;
a store with no loadable model is one log line naming the folder looked in, and the server
serves on (503 until a version is published)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from benchmarks.harness import Server, free_port

pytestmark = pytest.mark.e2e

SERVE = str(Path(sys.executable).parent / "classifier-serve")


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "HOST": "127.0.0.1",
        "MODELS_DIR": str(tmp_path),
        "HOME": str(tmp_path),  # gunicorn's control socket, were it to start
        **env,
    }
    return subprocess.run(
        [SERVE], env=environment, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def taken():
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("variable", ["PORT", "GRPC_PORT"])
def test_a_taken_port_is_one_line_and_exit_2_at_once(tmp_path, taken, variable):
    ports = {"PORT": str(free_port()), "GRPC_PORT": str(free_port()), variable: str(taken)}
    started = time.monotonic()
    done = serve(tmp_path, **ports)
    assert time.monotonic() - started < 5
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {variable}={taken}: 127.0.0.1:{taken} is already in use")
    assert f"set {variable} to a free port" in line


def test_a_grpc_port_another_server_shares_is_taken_too(models_template, tmp_path):
    """gRPC workers bind with SO_REUSEPORT: a second server must not quietly split the
    first one's gRPC calls."""
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as first:
        first.wait_ready()
        done = serve(tmp_path, PORT=str(free_port()), GRPC_PORT=str(first.grpc_port))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert f"GRPC_PORT={first.grpc_port}" in line and "(0: no gRPC)" in line


def test_no_loadable_model_is_said_in_one_line_naming_the_folder(tmp_path):
    empty = tmp_path / "store"
    empty.mkdir()
    with Server(empty, MODEL_POLL_SECONDS="0") as server:
        deadline = time.monotonic() + 60
        while "no loadable model" not in server.output() and time.monotonic() < deadline:
            assert server.process.poll() is None, server.output()
            time.sleep(0.2)
        [said] = [x for x in server.log_lines() if "no loadable model" in x["message"]]
        assert said["level"] == "error"
        assert f"'cats_vs_dogs' in {empty / 'cats_vs_dogs'};" in said["message"]
        assert "MODELS_DIR" in said["message"]
        ready = requests.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503  # it serves on, and says it is not ready


def test_the_start_says_how_many_workers_and_starts_them(tmp_path):
    """WEB_CONCURRENCY=0 (the default): the master says the count it resolved for the cores
    found, and boots that many workers."""
    from classifier import hardware

    empty = tmp_path / "store"
    empty.mkdir()
    expected = max(1, hardware.cores() // 2)
    with Server(empty, MODEL_POLL_SECONDS="0", WEB_CONCURRENCY="0") as server:
        deadline = time.monotonic() + 60
        while server.output().count("no loadable model") < expected:
            assert server.process.poll() is None and time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        [said] = [x for x in server.log_lines() if x.get("event") == "workers"]
        booted = [x for x in server.log_lines() if x["message"].startswith("Booting worker")]
    assert (said["workers"], said["web_concurrency"]) == (expected, 0)
    assert said["message"].startswith(f"workers: {expected}, inference threads each: ")
    assert len(booted) == expected


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_an_ipv6_host_serves_http_and_grpc(models_template, host):
    """Before, HOST=::1 stopped gunicorn ("'' is not a valid port number") and HOST=[::1]
    was refused by classifier-serve as no address."""
    import grpc

    with Server(models_template, HOST=host, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        url = f"http://[::1]:{server.port}/readyz"
        deadline = time.monotonic() + 120
        while True:
            assert server.process.poll() is None, server.output()
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.3)
        with grpc.insecure_channel(f"[::1]:{server.grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
