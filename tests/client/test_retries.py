"""Retries: Retry-After honoured, bounded tries and total time, connection refused."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.harness import free_port
from client import Client, Failure, Prediction, RetryPolicy
from client.cli import main
from tests.client.fakes import FlakyServer, read_jsonl
from tests.helpers import jpeg_bytes

FAST = RetryPolicy(tries=3, total_s=10, backoff_s=0.05)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "one.jpg"
    path.write_bytes(jpeg_bytes(seed=7))
    return path


@pytest.mark.e2e
def test_503_with_retry_after_is_retried_until_served(server, image):
    with FlakyServer(server.url, fail_first=2, retry_after="1") as flaky:
        started = time.monotonic()
        [result] = Client(flaky.url, retry=RetryPolicy(tries=5, total_s=30)).predict([image])
        elapsed = time.monotonic() - started
    assert isinstance(result, Prediction) and result.model == "pets"
    assert flaky.requests == 3
    assert 2.0 <= elapsed < 10  # two waits of Retry-After: 1


def test_a_server_that_never_recovers_gets_the_configured_tries(image, tmp_path):
    out = tmp_path / "out.jsonl"
    with FlakyServer(None, retry_after="1") as down:
        started = time.monotonic()
        argv = ["--url", down.url, "--tries", "3", "--output", str(out), "--no-progress"]
        assert main([*argv, str(image)]) == 1
        elapsed = time.monotonic() - started
    assert down.requests == 3 and 2.0 <= elapsed < 10
    [record] = read_jsonl(out)
    assert record["file"] == str(image) and record["error"]["code"] == "queue_full"
    assert "gave up after 3 tries" in record["error"]["message"]


def test_the_total_time_bounds_the_tries(image):
    with FlakyServer(None, retry_after="1") as down:
        started = time.monotonic()
        [result] = Client(down.url, retry=RetryPolicy(tries=100, total_s=2.5)).predict([image])
        elapsed = time.monotonic() - started
    assert isinstance(result, Failure) and down.requests <= 3
    assert elapsed < 4  # it does not sleep past its budget


def test_504_without_retry_after_backs_off_exponentially(image):
    with FlakyServer(None, retry_after=None, status=504) as slow:
        [result] = Client(slow.url, retry=FAST).predict([image])
    assert isinstance(result, Failure) and slow.requests == 3
    assert result.transient


def test_connection_refused_is_retried_then_an_error(image, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    [result] = Client(url, retry=FAST).predict([image])
    assert isinstance(result, Failure) and result.code == "connection_error"
    assert "gave up after 3 tries" in result.message
    out = tmp_path / "out.csv"
    argv = ["--url", url, "--tries", "2", "--backoff", "0.05", "--output", str(out)]
    assert main([*argv, "--no-progress", str(image)]) == 1
    assert time.monotonic() - started < 10
    header, row = out.read_text().splitlines()
    assert header == "file,label,model,version,error,message"
    assert row.startswith(f"{image},,,,connection_error,")


@pytest.mark.e2e
def test_a_retry_goes_to_the_next_host(server, image):
    dead = f"http://127.0.0.1:{free_port()}"
    [result] = Client([dead, server.url], retry=FAST).predict([image])
    assert isinstance(result, Prediction)
