"""Start a real gunicorn on a free loopback port, and drive bounded load at it."""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

from classifier import hardware

REPO = Path(__file__).resolve().parent.parent
SERVE_COMMAND = "classifier-serve"


def benchmark_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: where the photos and the models are."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=REPO.parent / "shared/data/cats_vs_dogs/validation",
        help="folder of JPEGs (searched recursively)",
    )
    p.add_argument("--models-dir", type=Path, default=REPO / "models", help="model store root")
    return p


def positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a finite number above 0 (a run of 0 s, or 0 clients, measures
    nothing and would end in an error instead of one line)."""

    def read(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be above 0 and finite, got {text!r}")
        return value

    return read


def setting(text: str) -> tuple[str, str]:
    """An argparse type: NAME=VALUE, a setting of the service (its environment)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return name, value


def batch_counters(url: str, name: str) -> tuple[float, float]:
    """(model calls, images) so far, from /metrics: summed over every worker (a model's own
    description answers for the one worker that took the request)."""
    response = requests.get(f"{url}/metrics", timeout=10)
    response.raise_for_status()
    totals = {"inference_exec_count_total": 0.0, "inference_count_total": 0.0}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in totals and sample.labels.get("model") == name:
                totals[sample.name] += sample.value
    return totals["inference_exec_count_total"], totals["inference_count_total"]


def free_port(*taken: int) -> int:
    """A port free now and none of `taken` (the kernel may hand a just-closed port out again:
    a server's two ports drawn one after the other were once the same)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


class Server:
    """A gunicorn process bound to 127.0.0.1 only; `argv` defaults to the product's command.

    In a custom `argv`, "{port}" is replaced by the chosen port.
    """

    def __init__(
        self, models_dir: Path, argv: list[str] | None = None, cwd: Path = REPO, **env: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # gRPC on a free port of its own too (GRPC_PORT="0" in `env` turns it off)
        self.grpc_port = int(env.get("GRPC_PORT", free_port(self.port)))
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        environment = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MODELS_DIR": str(models_dir),
            "WEB_CONCURRENCY": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "GRPC_PORT": str(self.grpc_port),
            **env,
        }
        # The product's command, the one beside this interpreter (the project's venv).
        argv = [arg.format(port=self.port) for arg in (argv or [SERVE_COMMAND])]
        if argv[0] in ("gunicorn", SERVE_COMMAND):
            argv[0] = str(Path(sys.executable).parent / argv[0])
        # A file, not a pipe: nobody drains a pipe, and a full one blocks the server's logging.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 120, path: str = "/readyz") -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.output()}")
            try:
                if requests.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"gunicorn not ready in {timeout}s:\n{self.output()}")

    def wait_workers(self, count: int, marker: str = "warmed up", timeout: float = 120) -> None:
        """Until `count` workers have logged a line with `marker` (their model loaded and warmed
        up, by default): /readyz answers as soon as the first worker does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = {line["pid"] for line in self.log_lines() if marker in line.get("message", "")}
            if len(pids) >= count:
                return
            time.sleep(0.2)
        raise TimeoutError(f"fewer than {count} workers logged {marker!r}:\n{self.output()}")

    def logged(self, wanted, at_least: int = 1, timeout: float = 10) -> list[dict]:
        """The access log lines (`"event": "request"`) that `wanted` accepts, once there are
        `at_least`: a worker's log lines are written by a thread of its own, a moment after
        the answer went out."""
        deadline = time.monotonic() + timeout
        while True:
            found = [x for x in self.log_lines() if x.get("event") == "request" and wanted(x)]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self, tail: int = 20_000) -> str:
        """The last `tail` characters the server printed."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    def log_lines(self) -> list[dict]:
        """Every JSON line the server printed, from its start (`output` keeps only a tail)."""
        lines = self.output(tail=1 << 30).splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def host() -> dict[str, object]:
    """The processor (and what it computes natively), printed as the run's first line: every
    benchmark's figures carry the CPU they were measured on."""
    found = hardware.describe()
    print(f"host: {found}", flush=True)
    return found


def write_results(path: Path | None, results) -> None:
    """A run's figures as JSON at `path` (its folder made), where `--output` asked for it."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


EXIT_NOTHING_ANSWERED = 3  # distinct from argparse's 2 and a crash's 1


def answered(steps: list[tuple[str, int, int]]) -> int:
    """The exit code of a run whose load steps are (label, requests, errors): 0 when every
    step had answers; else one line naming the steps where every request failed, and
    EXIT_NOTHING_ANSWERED, as their figures measure the error path, not the service. A step
    with some errors is named on stderr but passes (its error count is in the figures)."""
    empty = [label for label, requests, errors in steps if requests == errors]
    partial = [
        f"{label} ({errors} of {requests})"
        for label, requests, errors in steps
        if 0 < errors < requests
    ]
    if partial:
        print(f"some requests failed: {', '.join(partial)}", file=sys.stderr)
    if empty:
        print(f"every request failed (or none was sent) in: {', '.join(empty)}", file=sys.stderr)
        return EXIT_NOTHING_ANSWERED
    return 0


def shares_of(count: int, concurrency: int) -> list[int]:
    """`count` requests split as evenly as can be between `concurrency` clients."""
    return [count // concurrency + (i < count % concurrency) for i in range(concurrency)]


def run_clients(client, shares: list[int]) -> float:
    """Run `client(index, share)` in a thread per share, all at once; the wall seconds taken."""
    threads = [threading.Thread(target=client, args=(i, s)) for i, s in enumerate(shares)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def add(self, other: LoadResult) -> None:
        """Count `other`'s requests in this result: a client thread's, or a load process's."""
        self.requests += other.requests
        self.errors += other.errors
        self.latencies_ms.extend(other.latencies_ms)
        for key, value in other.statuses.items():
            self.statuses[key] = self.statuses.get(key, 0) + value

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "images_per_s": round(self.rate, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "errors": self.errors,
        }


def drive(
    port: int,
    path: str,
    bodies: list[bytes],
    concurrency: int,
    count: int,
    max_seconds: float = 300,
    headers: list[dict[str, str]] | None = None,
) -> LoadResult:
    """POST `count` bodies (raw image/jpeg unless `headers` gives each body's own) from
    `concurrency` keep-alive connections to 127.0.0.1.

    Bounded in count and in time: each client stops at its share or at `max_seconds`.
    """
    lock = threading.Lock()
    result = LoadResult(concurrency, 0, 0.0)
    stop_at = time.monotonic() + max_seconds
    shares = shares_of(count, concurrency)

    def client(index: int, share: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies, statuses, errors = [], {}, 0
        for j in range(share):
            if time.monotonic() > stop_at:
                break
            pick = (index * 7919 + j) % len(bodies)
            body = bodies[pick]
            header = headers[pick] if headers else {"Content-Type": "image/jpeg"}
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, header)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = 0
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            errors += status != 200
        conn.close()
        with lock:
            result.add(LoadResult(1, len(latencies), 0.0, latencies, errors, statuses))

    result.seconds = run_clients(client, shares)
    return result


def drive_processes(
    processes: int,
    port: int,
    path: str,
    bodies: list[bytes],
    concurrency: int,
    count: int,
    max_seconds: float = 300,
    headers: list[dict[str, str]] | None = None,
) -> LoadResult:
    """`drive` split over `processes` forked client processes, so that the load client's own
    interpreter lock cannot cap a server of many workers on many cores; the results merged,
    timed as the slowest process. No more processes than clients: a process needs one, and
    the requests of one without would never be sent."""
    processes = min(processes, concurrency)
    if processes <= 1:
        return drive(port, path, bodies, concurrency, count, max_seconds, headers)
    parts = [
        (port, path, bodies, threads, share, max_seconds, headers)
        for threads, share in zip(
            shares_of(concurrency, processes), shares_of(count, processes), strict=True
        )
    ]
    with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
        results = pool.starmap(drive, parts)
    merged = LoadResult(concurrency, 0, max(r.seconds for r in results))
    for part in results:
        merged.add(part)
    return merged
