"""What the request path costs, per stage, beside decode and the model; and the ratio to the
peers, in one run on one machine:

1. in process, on the same photos: decoding (CPU per image, one thread) and the served model
   (process CPU per image at batch 16, on its lanes as the service runs it under load);
2. the service as `compare.sh` starts it (1 worker, 64 threads, batches up to 16, the model on
   INFERENCE_THREADS=2), multipart uploads of those photos from keep-alive connections, at
   each concurrency: images/s, latency, server CPU per image (its process tree, from /proc),
   client CPU, cores in use; the request path = server CPU per image - decode - model, the
   latter two measured again before, between and after the step's parts (`--segments`:
   the host's speed moves within seconds; each time the median of three measurements),
   and the median of the parts' figures;
3. py-spy on the worker at the highest concurrency (the figures of 2 come from an unprofiled
   pass): where its busy threads spend their samples, by stage (accept and parse, body read,
   multipart, decode, queueing, model, encode, log, metrics, ...), as ms of CPU per image;
   and with `--gil`, how much of the time one thread holds the interpreter lock, by stage;
4. optional variants of the service (`--variant NAME:ENV=V,ENV=V`), e.g. more workers;
5. with `--peers`, `../shared/peers/compare.sh project <peers>` right after, and the ratios:
   images/s at c=32 against the best peer, c=1 p50 against the best peer's;
6. issue 22's targets, met or not, for this processor (the peer ratio wanted is 2x with
   AMX, 1.3x without).

    python -m benchmarks.request_path --peers litserve,mlserver --output runs/request_path.json
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path

import numpy as np
import requests
from urllib3.filepost import encode_multipart_formdata

from benchmarks.harness import (
    REPO,
    LoadResult,
    Server,
    answered,
    batch_counters,
    benchmark_parser,
    drive,
    free_port,
    positive,
    setting,
    write_results,
)
from classifier import hardware
from classifier.predictor import load_predictor
from classifier.preprocess import decode_image
from classifier.store import ModelStore

# compare.sh's settings for the project (../shared/peers/compare.sh, start_server)
COMPARE_ENV = {
    "WEB_CONCURRENCY": "1",
    "GUNICORN_THREADS": "64",
    "MAX_BATCH_SIZE": "16",
    "BATCH_TIMEOUT_MS": "0",
    "INFERENCE_THREADS": "2",
    "GRPC_PORT": "0",
    "MODEL_POLL_SECONDS": "0",
}

REQUEST_PATH_TARGET_MS = 0.8  # issue 22: at c=32
PEER_TARGETS = {True: 2.0, False: 1.3}  # c=32 against the best peer: with AMX, without


# Stages, first match wins, by the frames a py-spy sample holds (file or function names). Not
# "concurrent/futures": every request thread's stack starts in its pool, so with it (the
# batcher's futures, once) all that no stage above took was counted as the hand-off.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("cpu_runtimes.py", "openvino", "onnxruntime", "_run_batch")),
    ("decode", ("classifier/preprocess.py", "decode_uploads")),
    ("log", ("service/logs.py", "service/access.py", "logging/")),
    ("metrics", ("prometheus_client", "service/metrics.py")),
    ("body read", ("gunicorn/http/body.py", "gunicorn/http/unreader.py", "get_data")),
    ("multipart", ("python_multipart", "protocols/uploads.py", "formparser.py", "multipart.py")),
    ("accept and parse", ("gunicorn/http/message.py", "gunicorn/http/parser.py", "create (")),
    ("encode", ("flask/json", "orjson", "json/encoder.py", "rest.py", "_prediction", "pydantic")),
    ("queueing, batch hand-off", ("classifier/batching.py",)),
    ("response write", ("gunicorn/http/wsgi.py", "gunicorn/util.py")),
    ("gunicorn loop (poll, keep-alive)", ("gunicorn/workers/gthread.py", "selectors.py")),
    ("dispatch (the fast path or Flask), hooks", ("flask/", "werkzeug/", "service/")),
)
OTHER = "other"


def multipart_bodies(files: list[Path]) -> tuple[list[bytes], list[dict[str, str]]]:
    """One multipart upload per photo, built once (as compare.sh's client builds them)."""
    bodies, headers = [], []
    for path in files:
        body, ctype = encode_multipart_formdata(
            {"image": (path.name, path.read_bytes(), "image/jpeg")}
        )
        bodies.append(body)
        headers.append({"Content-Type": ctype})
    return bodies, headers


class InProcess:
    """Decode CPU per image (one thread) and the served model's process CPU per image at 16,
    on the same photos, measurable again at any time: this host's speed moves by up to 2x
    within seconds, so it is measured around each part of a load step (`segmented`)."""

    def __init__(self, store: ModelStore, name: str, photos: list[bytes], env: dict) -> None:
        from service.settings import load

        # the runtime, precision, threads and lanes the service gets from `env` over this
        # process's environment (as harness.Server passes them)
        self.predictor = load_predictor(store, name, options=load(env).runtime_options)
        self.photos = photos
        for data in photos[:20]:
            decode_image(data, self.predictor.spec)

    def measure(self) -> dict:
        """The model as the service runs it under load: batches of 16, overlapped on every
        lane where the runtime has more than one (cheaper per image than one call alone)."""
        spec = self.predictor.spec
        started = time.thread_time()
        images = np.stack([decode_image(data, spec) for data in self.photos])
        decode_ms = (time.thread_time() - started) * 1000 / len(self.photos)
        pool = np.resize(images, (max(64, len(images) // 16 * 16), *images.shape[1:]))  # repeats
        batches = [pool[i : i + 16] for i in range(0, len(pool), 16)]
        lanes = self.predictor.runtime.lanes
        alone = lanes == 1
        with ThreadPoolExecutor(lanes) as pool_of_lanes:
            run = partial(self.predictor.predict, alone=alone)
            list(pool_of_lanes.map(run, batches[:lanes]))  # a first call on every lane
            cpu, wall = time.process_time(), time.perf_counter()
            list(pool_of_lanes.map(run, batches))
        model_ms = (time.process_time() - cpu) * 1000 / (16 * len(batches))
        rate = 16 * len(batches) / (time.perf_counter() - wall)
        runtime = self.predictor.runtime
        return {
            "runtime": f"{runtime.name}/{runtime.precision}, {lanes} lane{'s' * (lanes > 1)}",
            "decode_ms_per_image": round(decode_ms, 3),
            "model_ms_per_image": round(model_ms, 3),
            "model_images_per_s_batch16": round(rate, 1),
        }

    def floor(self, rounds: int = 3) -> float:
        """Decode + model, ms of CPU per image, now: the median of `rounds` measurements, each
        about a second (one alone moved by up to 0.6 ms between a step's two brackets)."""
        totals = []
        for _ in range(rounds):
            now = self.measure()
            totals.append(now["decode_ms_per_image"] + now["model_ms_per_image"])
        return statistics.median(totals)


def tree(pid: int) -> list[int]:
    """pid and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        stack.extend(children.get(p, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, and PSS (shared pages split among the processes that map them: what one more
    worker adds, roughly)."""
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("Rss", "Pss"):
            found[key.lower()] = round(int(line.split()[1]) / 1024, 1)
    return found


def batches(server: Server, name: str) -> tuple[float, float] | None:
    """Model calls and images so far, summed over the workers (`batch_counters`); None where
    /metrics cannot be read: the step goes on without its mean batch."""
    try:
        return batch_counters(server.url, name)
    except (requests.RequestException, ValueError):
        return None


def machine_cpu() -> tuple[float, float, float]:
    """Seconds of CPU the whole machine has spent busy, idle, and stolen by the hypervisor."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - steal) / tick, idle / tick, steal / tick


def measure(
    server: Server,
    bodies,
    headers,
    concurrency: int,
    seconds: float,
    name: str,
    local: InProcess | None = None,
    segments: int = 1,
) -> dict:
    """One load step: throughput, latency, server and client CPU per image, mean batch, and
    what the whole machine did meanwhile (busy, idle and stolen cores). With `local`, the
    request path too (`segmented`): the step runs as `segments` parts with decode + model
    measured in process before, between and after them."""
    pids = tree(server.process.pid)
    before = batches(server, name)
    row = segmented(
        partial(drive, server.port, "/predict", bodies, concurrency, 10**7, headers=headers),
        partial(cpu_seconds, pids),
        seconds,
        local,
        segments,
    )
    after = batches(server, name)
    if before and after and after[0] > before[0]:
        row["mean_batch"] = round((after[1] - before[1]) / (after[0] - before[0]), 2)
    return row


@dataclass
class Spent:
    """CPU seconds over a step's parts: the server's, this client's, the whole machine's."""

    server: float = 0.0
    client: float = 0.0
    machine: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # busy, idle, stolen


def segmented(
    load: Callable[[float], LoadResult],
    server_cpu: Callable[[], float],
    seconds: float,
    local: InProcess | None,
    segments: int,
) -> dict:
    """`load` for `seconds` in all, as `segments` parts; with `local`, decode + model measured
    in process before, between and after the parts, as this host's speed moves within
    seconds (docs/benchmarks.md, "The request path measured in parts")."""
    spent = Spent()
    floors = [local.floor()] if local is not None else []
    results, parts = [], []
    for _ in range(segments):
        result, ms_per_image = part(load, server_cpu, seconds / segments, spent)
        results.append(result)
        parts.append(ms_per_image)
        if local is not None:
            floors.append(local.floor())
    row = step_row(results, spent)
    if local is not None:
        row.update(path_by_part(parts, floors))
    return row


def part(
    load: Callable[[float], LoadResult],
    server_cpu: Callable[[], float],
    seconds: float,
    spent: Spent,
) -> tuple[LoadResult, float]:
    """One part of a step, its CPU added to `spent`: its result and the server's CPU ms per
    image in it."""
    machine, started, client = machine_cpu(), server_cpu(), time.process_time()
    result = load(seconds)
    server = server_cpu() - started
    spent.client += time.process_time() - client
    spent.server += server
    now = machine_cpu()
    spent.machine = [t + b - a for t, a, b in zip(spent.machine, machine, now, strict=True)]
    return result, server * 1000 / max(result.requests - result.errors, 1)


def step_row(results: list[LoadResult], spent: Spent) -> dict:
    """A step's figures over all its parts."""
    total = LoadResult(results[0].concurrency, 0, sum(r.seconds for r in results))
    for result in results:
        total.add(result)
    ok, wall = total.requests - total.errors, total.seconds
    busy, idle, stolen = spent.machine
    return {
        **total.summary(),
        "statuses": total.statuses,
        "seconds": round(wall, 1),
        "server_cpu_ms_per_image": round(spent.server * 1000 / max(ok, 1), 3),
        "client_cpu_ms_per_image": round(spent.client * 1000 / max(ok, 1), 3),
        "cores_busy": round((spent.server + spent.client) / wall, 2),
        "server_cores": round(spent.server / wall, 2),
        "machine_cores_busy": round(busy / wall, 2),
        "machine_cores_idle": round(idle / wall, 2),
        "machine_cores_stolen": round(stolen / wall, 2),
    }


def path_by_part(parts: list[float], floors: list[float]) -> dict:
    """Each part's server CPU per image less the mean of the in-process measurements around
    it; the step's figure is their median (a part where the host moved reads far off)."""
    paths = [ms - (a + b) / 2 for ms, (a, b) in zip(parts, pairwise(floors), strict=True)]
    return {
        "in_process_ms_per_image": [round(f, 3) for f in floors],
        "server_cpu_ms_per_image_by_part": [round(ms, 3) for ms in parts],
        "request_path_ms_per_part": [round(ms, 3) for ms in paths],
        "request_path_ms_per_image": round(statistics.median(paths), 3),
    }


def workers(server: Server) -> list[int]:
    return [p for p in tree(server.process.pid) if p != server.process.pid]


class _Socket:
    """Where gunicorn's response writer sends its bytes in `stage_costs`."""

    def __init__(self) -> None:
        self.sent = 0

    def sendall(self, data) -> None:
        self.sent += len(data)

    def send(self, data) -> int:
        self.sent += len(data)
        return len(data)


def stage_costs(models_dir: Path, name: str, bodies, headers, threads: int) -> dict:
    """One request at a time, in this process: gunicorn's own parser on the bytes a client
    sends, the real app (its hooks, logging and metrics too), gunicorn's response writer into
    a socket stand-in; the CPU of this thread per stage (the model runs in the batcher's
    thread, not counted here; the log line's formatting and writing is timed apart, as the
    writer thread does it). Nothing else runs, so this is each stage's own cost.

    The metrics folder it makes is this call's only: removed, and out of the environment,
    after it (left there, every server the run starts next inherited it and never removed
    it, and this process's own /metrics read that empty folder)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return _stage_costs(models_dir, name, bodies, headers, threads)
    folder = tempfile.mkdtemp(prefix="metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        return _stage_costs(models_dir, name, bodies, headers, threads)
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def _stage_costs(models_dir: Path, name: str, bodies, headers, threads: int) -> dict:
    import logging

    from gunicorn.config import Config
    from gunicorn.http import get_parser, wsgi
    from gunicorn.http.body import Body

    from classifier import batching
    from service import access, dataplane, logs
    from service.http import fastpath, observability
    from service.http.app import create_app
    from service.http.worker import OneSendResponse, Settled
    from service.protocols import own

    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives with the run
    sink.setFormatter(logs.JsonFormatter())
    logging.getLogger().addHandler(sink)
    logging.getLogger().setLevel(logging.INFO)
    logs.write_from_one_thread()
    app = create_app(
        {
            "models_dir": str(models_dir), "model_name": name, "model_poll_seconds": 0,
            "grpc_port": 0, "inference_threads": threads, "max_batch_size": 16,
        }
    )  # fmt: skip
    spent: Counter = Counter()

    def timed(stage, function):
        def wrapper(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[stage] += time.thread_time() - started

        return wrapper

    patches = [
        (dataplane, "decode_uploads", "decode"),
        (own, "read_uploads", "body read + multipart (Flask's route)"),
        (fastpath, "plain_images", "multipart (fast path)"),
        (batching.Batcher, "predict", "queueing, batch hand-off"),
        (own, "answer", "encode (Flask's route)"),
        (fastpath, "encode", "encode (fast path)"),
        (observability, "finish", "metrics + log record"),
        (access, "finish", "log (the record) + inference metrics"),
        (Body, "read", "body read"),
    ]
    saved = [(target, attr, getattr(target, attr)) for target, attr, _ in patches]
    for target, attr, stage in patches:
        setattr(target, attr, timed(stage, getattr(target, attr)))
    hooks = app.before_request_funcs[None], app.after_request_funcs[None]
    app.before_request_funcs[None] = [timed("hooks before", f) for f in hooks[0]]
    app.after_request_funcs[None] = [timed("hooks after (all)", f) for f in hooks[1]]
    cfg = Settled(Config())  # as the worker reads it
    raw = [
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        + h["Content-Type"].encode()
        + f"\r\nContent-Length: {len(b)}\r\nConnection: keep-alive\r\n\r\n".encode()
        + b
        for b, h in zip(bodies, headers, strict=True)
    ]
    try:
        for _round in (1, 2):  # the first round warms up
            spent.clear()
            for request in raw:
                started = time.thread_time()
                parser = get_parser(cfg, iter([request]), ("127.0.0.1", 1))
                req = next(parser)
                sock = _Socket()
                resp, environ = wsgi.create(
                    req, sock, ("127.0.0.1", 1), ("127.0.0.1", 8000), cfg, OneSendResponse
                )  # as the worker makes it
                parsed = time.thread_time()
                spent["HTTP parse (gunicorn)"] += parsed - started
                body = app(environ, resp.start_response)
                answered = time.thread_time()
                spent["app (all of it)"] += answered - parsed
                for chunk in body:
                    resp.write(chunk)
                resp.close()
                spent["response write (gunicorn)"] += time.thread_time() - answered
    finally:
        for target, attr, function in saved:
            setattr(target, attr, function)
        app.before_request_funcs[None], app.after_request_funcs[None] = hooks
    record = logging.LogRecord("service.access", logging.INFO, "", 0, "%s", ("x",), None)
    record.fields = {"event": "request", "request_id": "0" * 32, "status": 200}
    started = time.thread_time()
    for _ in range(1000):
        sink.format(record)
    spent["log line (writer thread: format)"] = (time.thread_time() - started) * len(raw) / 1000
    return _stages(spent, len(raw))


def _stages(spent: Counter, requests: int) -> dict:
    """ms of CPU per request by stage, each counted once, whichever path answered: the
    timed functions nest (the body read within Flask's multipart, the log record within
    the metrics, those within Flask's after-hooks), so each stage here is its own part."""
    flask_route = spent.pop("body read + multipart (Flask's route)", 0.0)
    body_in_route = spent["body read"] if flask_route else 0.0
    spent["multipart"] = flask_route - body_in_route + spent.pop("multipart (fast path)", 0.0)
    spent["encode"] = spent.pop("encode (Flask's route)", 0.0) + spent.pop(
        "encode (fast path)", 0.0
    )
    metrics_and_log = spent.pop("metrics + log record")
    hooks_after = spent.pop("hooks after (all)", 0.0)
    spent["hooks after (headers, CORS)"] = hooks_after - metrics_and_log if hooks_after else 0.0
    spent["HTTP metrics"] = metrics_and_log - spent["log (the record) + inference metrics"]
    inside = (
        sum(v for k, v in spent.items() if k != "app (all of it)")
        - spent["HTTP parse (gunicorn)"]
        - spent["response write (gunicorn)"]
        - spent["log line (writer thread: format)"]
    )
    spent["dispatch (the fast path or Flask), view: the rest"] = (
        spent.pop("app (all of it)") - inside
    )
    return {
        stage: round(s * 1000 / requests, 3)
        for stage, s in spent.most_common()
        if s * 1000 / requests >= 0.0005  # a stage this path does not have
    }


def threads_of(worker: int, py_spy: str) -> dict[int, str]:
    """The worker's Python threads by native id and name (py-spy dump); the others are the
    runtime's own threads."""
    out = subprocess.run([py_spy, "dump", "-p", str(worker)], capture_output=True, text=True)
    names = {}
    for line in out.stdout.splitlines():
        if line.startswith("Thread "):
            tid, _, rest = line[7:].partition(" ")
            names[int(tid, 0)] = rest.split(": ", 1)[-1].strip('"')
    return names


def role(name: str | None, tid: int, worker: int) -> str:
    if tid == worker or name == "MainThread":
        return "gunicorn main thread (accept, poll, keep-alive)"
    if name is None:
        return "model (runtime threads)"
    if name.startswith("batcher-"):
        return "batcher thread (hand-off, model call)"
    if "_monitor" in name:
        return "log writer thread"
    if name.startswith("ThreadPoolExecutor-0_"):
        return "request threads"
    return "other threads"


def thread_cpu(worker: int) -> dict[int, float]:
    tick, found = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir(f"/proc/{worker}/task"):
        try:
            stat = Path(f"/proc/{worker}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return found


RATE = 200  # py-spy samples per second


def spy(server: Server, bodies, headers, concurrency: int, seconds: float, flag: str | None):
    """py-spy on the (first) worker under load (raw stacks, by thread), and the worker's CPU by
    thread over the same time. `flag`: None samples the threads that are running (the CPU),
    "--gil" the one holding the interpreter lock, "--idle" every thread, waiting or not."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    worker = workers(server)[0]
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        argv = [py_spy, "record", "-p", str(worker), "-r", str(RATE), "-d", str(int(seconds))]
        argv += ["-f", "raw", "-o", out.name, "--nonblocking", "--threads"]
        process = subprocess.Popen(
            argv + ([flag] if flag else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(0.5)
        before = thread_cpu(worker)
        result = drive(server.port, "/predict", bodies, concurrency, 10**7, seconds - 1, headers)
        after = thread_cpu(worker)
        _, err = process.communicate(timeout=seconds + 60)
        if process.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
        stacks = Path(out.name).read_text().splitlines()
    samples = []
    for line in stacks:
        stack, _, count = line.rpartition(" ")
        if count.isdigit():  # not a line py-spy cut short (seen once, in a full test run)
            samples.append((stack, int(count)))
    return samples, before, after, result.requests - result.errors


# A request thread waiting, by the frame it waits in (the last of the stack): py-spy with
# --nonblocking guesses which threads run (py-spy issue 480) and counts a wait with a timeout
# (a lock's, select's) as running, so without these the running samples put the wait for the
# batch's answer among the CPU (1.2 ms of 1.6 per image at c=32, decode at 0.27 of 1.1).
WAITS: tuple[tuple[str, str], ...] = (
    ("idle in the thread pool (no request)", "_worker (concurrent/futures/thread.py"),
    ("waiting for the next request on its connection", "_next_request_here (service/http/"),
    # _WaitingUnreader.wait: a receive under a timeout, for the next request
    ("waiting for the next request on its connection", "wait (service/http/worker.py"),
    ("waiting for the answer (queue, batch, model)", "Pending.wait (classifier/batching.py"),
)
WAITING = frozenset(stage for stage, _ in WAITS)


def request_stages(samples, worker: int) -> Counter:
    """Samples of the request threads by stage, or by what they wait for (WAITS)."""
    by_stage: Counter = Counter()
    for stack, count in samples:
        if role(_thread_name(stack), -1, worker) != "request threads":
            continue
        leaf = stack.rsplit(";", 1)[-1]
        waiting = next((stage for stage, mark in WAITS if mark in leaf), None)
        by_stage[waiting or stage_of(stack)] += count
    return by_stage


def profile(server: Server, bodies, headers, concurrency: int, seconds: float) -> dict:
    """The worker's CPU per image by thread (/proc); the request threads' CPU split by stage
    in proportion to their running samples; the interpreter lock's share by stage (--gil);
    and where the request threads' time goes, waiting included (--idle)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    worker = workers(server)[0]
    names = threads_of(worker, py_spy)
    samples, before, after, images = spy(server, bodies, headers, concurrency, seconds, None)
    names = {**names, **threads_of(worker, py_spy)}
    by_role: Counter = Counter()
    for tid, cpu in after.items():
        by_role[role(names.get(tid), tid, worker)] += cpu - before.get(tid, 0.0)
    per_image = {r: cpu * 1000 / max(images, 1) for r, cpu in by_role.most_common()}
    running = request_stages(samples, worker)
    for waiting in WAITING:
        running.pop(waiting, None)
    total = sum(running.values()) or 1
    request_ms = per_image.get("request threads", 0.0)
    stages = {stage: round(request_ms * n / total, 3) for stage, n in running.most_common()}
    leaves: Counter = Counter()
    for stack, count in samples:
        if role(_thread_name(stack), -1, worker) == "request threads":
            leaves[";".join(stack.split(";")[-4:])] += count
    gil, _, _, _ = spy(server, bodies, headers, concurrency, seconds, "--gil")
    held = request_stages(gil, worker)
    held_total = sum(count for _, count in gil)
    idle, _, _, _ = spy(server, bodies, headers, concurrency, seconds, "--idle")
    spent = request_stages(idle, worker)
    spent_total = sum(spent.values()) or 1
    return {
        "images": images,
        "cpu_ms_per_image_by_thread": {r: round(ms, 3) for r, ms in per_image.items()},
        "request_thread_stages_ms_per_image": stages,
        "request_thread_top_stacks": dict(leaves.most_common(25)),
        "lock_held": round(held_total / (RATE * (seconds - 0.5)), 3),
        "lock_share_by_stage": {k: round(v / (held_total or 1), 3) for k, v in held.most_common()},
        "request_thread_time": {k: round(v / spent_total, 3) for k, v in spent.most_common()},
    }


def _thread_name(stack: str) -> str | None:
    """py-spy --threads starts each stack with "thread (id): name"."""
    head = stack.split(";", 1)[0]
    return head.split("): ", 1)[1] if head.startswith("thread (") and "): " in head else None


def stage_of(stack: str) -> str:
    for stage, marks in STAGES:
        if any(mark in stack for mark in marks):
            return stage
    return OTHER


def run_service(
    label, env, models_dir, bodies, headers, levels, seconds, spy, local, segments
) -> dict:
    rows, profiles = [], {}
    with Server(models_dir, **env) as server:
        server.wait_ready()
        drive(server.port, "/predict", bodies, 32, 10**7, 5, headers)  # warm up
        for concurrency in levels:
            step = measure(
                server, bodies, headers, concurrency, seconds, env["MODEL_NAME"], local, segments
            )
            row = {"setup": label, **step}
            rows.append(row)
            print(f"  {label} c={concurrency}: {row}", flush=True)
        rss = {str(pid): memory_mb(pid) for pid in workers(server)}
        if spy:
            top = max(levels)
            profiles = profile(server, bodies, headers, top, min(seconds, 12))
            shown = {k: v for k, v in profiles.items() if k != "request_thread_top_stacks"}
            print(f"  threads and py-spy --gil at c={top}: {shown}", flush=True)
    return {"rows": rows, "worker_memory_mb": rss, "profiles": profiles}


def deployed(
    replicas: int, env, models_dir, bodies, headers, levels, seconds, local, segments
) -> dict:
    """The deployed path without Docker: deploy/nginx.conf (compose's defaults: per-client
    limits off) in a real nginx in front of `replicas` services on 127.0.0.2, .3, ... sharing
    one port, found as "api" by a DNS server on loopback standing in for Docker's (the tests'
    own harness, tests/nginx_helpers.py). CPU counts the replicas and nginx."""
    from tests.nginx_helpers import LoopbackDNS, Nginx, Replica

    label = f"nginx + {replicas} replica{'s' * (replicas > 1)}"
    dns, servers, proxy = LoopbackDNS(), [], None
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="deployed-"))
    try:
        servers = [Replica(models_dir, f"127.0.0.{2 + i}", port, **env) for i in range(replicas)]
        for server in servers:
            server.wait_ready(timeout=300)
        dns.set("api", [server.host for server in servers])
        proxy = Nginx(tmp, f"api:{port}", dns.port)
        rows = []
        pids = [p for s in servers for p in tree(s.process.pid)] + tree(proxy.process.pid)
        drive(proxy.port, "/predict", bodies, 32, 10**7, 5, headers)  # warm up
        for concurrency in levels:
            load = partial(
                drive, proxy.port, "/predict", bodies, concurrency, 10**7, headers=headers
            )
            step = segmented(load, partial(cpu_seconds, pids), seconds, local, segments)
            row = {"setup": label, **step}
            rows.append(row)
            print(f"  {label} c={concurrency}: {row}", flush=True)
        return {"rows": rows}
    finally:
        if proxy is not None:
            proxy.stop()
        for server in servers:
            server.stop()
        dns.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def peers(names: list[str], seconds: int) -> dict:
    """compare.sh for the project and `names`, one after the other; its results by target."""
    out = Path(tempfile.mkdtemp(prefix="compare-"))
    env = {**os.environ, "OUT": str(out), "DURATION": str(seconds), "CONCURRENCY": "1 32"}
    env.pop("PYTHONPATH", None)  # the peers' own venvs; the project runs from REPO
    script = REPO.parent / "shared/peers/compare.sh"
    subprocess.run(["bash", str(script), "project", *names], cwd=REPO, env=env, check=False)
    results: dict[str, dict] = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        results.setdefault(row.get("label") or row["target"], {})[str(row["concurrency"])] = row
    return {"folder": str(out), "results": results}


def ratios(compared: dict) -> dict:
    results = compared["results"]
    project = results.get("project", {})
    others = {name: rows for name, rows in results.items() if name != "project"}
    if not project or not others:
        return {}
    rate = {n: r["32"]["images_per_s"] for n, r in others.items() if "32" in r}
    p50 = {n: r["1"]["latency_ms"]["p50"] for n, r in others.items() if "1" in r}
    best_rate, best_p50 = max(rate, key=rate.get), min(p50, key=p50.get)
    return {
        "c32_vs_best_peer": round(project["32"]["images_per_s"] / rate[best_rate], 2),
        "best_peer_c32": best_rate,
        "c1_p50_ms": project["1"]["latency_ms"]["p50"],
        "best_peer_c1_p50_ms": p50[best_p50],
        "best_peer_c1": best_p50,
    }


def verdicts(host: dict, rows: list[dict], summary: dict) -> list[dict]:
    """Issue 22's targets, met or not, from this run's figures (the processor decides the
    peer ratio wanted); a target the run did not measure is left out."""
    found = []
    top = next((row for row in rows if row["concurrency"] == 32), None)
    if top is not None and "request_path_ms_per_image" in top:
        value = top["request_path_ms_per_image"]
        found.append(verdict("request path at c=32, ms", value, "<=", REQUEST_PATH_TARGET_MS))
    if summary:
        amx = bool(host.get("amx_bf16"))
        what = f"c=32 images/s over the best peer's ({'with' if amx else 'no'} AMX)"
        found.append(verdict(what, summary["c32_vs_best_peer"], ">=", PEER_TARGETS[amx]))
        best = summary["best_peer_c1_p50_ms"]
        found.append(verdict("c=1 p50, ms (the best peer's)", summary["c1_p50_ms"], "<=", best))
    return found


def verdict(target: str, value: float, sense: str, wanted: float) -> dict:
    met = value <= wanted if sense == "<=" else value >= wanted
    return {"target": target, "value": value, "wanted": f"{sense} {wanted}", "met": met}


def _cores(row: dict) -> str:
    if "cores_busy" not in row:
        return "-"
    client = round(row["cores_busy"] - row["server_cores"], 2)
    machine = f"; machine busy {row['machine_cores_busy']}, idle {row['machine_cores_idle']}"
    return f"{row['cores_busy']} ({row['server_cores']} + {client}){machine}"


def stage_table(profiles: dict, concurrency: int) -> None:
    """The worker's CPU per image by thread; the request threads' split by stage."""
    by_thread = profiles["cpu_ms_per_image_by_thread"]
    lock = profiles["lock_share_by_stage"]
    print(
        f"\nworker CPU per image at c={concurrency}, by thread, and the request threads' by "
        f"stage (their running samples: py-spy --nonblocking tells running from waiting by a "
        f"guess, py-spy issue 480, and a thread in a socket call or waiting for the "
        f"interpreter lock can count as running, so the socket stages read high; each stage's "
        f"own CPU is the table above); the interpreter lock was held "
        f"{profiles['lock_held']:.0%} of the time, by request threads in these stages:\n"
    )
    print("| where | stage | ms CPU per image | share of the lock's samples |")
    print("|---|---|---:|---:|")
    for name, ms in by_thread.items():
        if name != "request threads":
            print(f"| {name} | | {ms:.3f} | |")
    for stage, ms in profiles["request_thread_stages_ms_per_image"].items():
        print(f"| request threads | {stage} | {ms:.3f} | {lock.get(stage, 0):.0%} |")
    print(f"| worker, all threads | | {sum(by_thread.values()):.3f} | |")
    spent = profiles.get("request_thread_time")
    if spent:
        print("\nwhere the request threads' time goes, waiting included (py-spy --idle):")
        print(", ".join(f"{stage} {share:.0%}" for stage, share in spent.items()))


def variant(text: str) -> tuple[str, dict[str, str]]:
    """An argparse type: NAME:ENV=V,ENV=V, the service again with these settings."""
    name, _, listed = text.partition(":")
    return name, dict(setting(item) for item in listed.split(",") if item)


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.request_path", __doc__)
    p.add_argument("--model-name", default="cats_vs_dogs")
    p.add_argument("--files", type=int, default=400, help="photos to send (and to time in process)")
    p.add_argument("--concurrency", default="1,32", help="client connections, one step each")
    p.add_argument("--seconds", type=float, default=20, help="seconds per load step")
    p.add_argument(
        "--segments",
        type=positive(int),
        default=4,
        help="parts of each load step, with decode + model measured in process around each",
    )
    p.add_argument("--no-profile", action="store_true", help="leave py-spy out")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        type=variant,
        help="NAME:ENV=V,ENV=V: the service again with these settings (repeatable)",
    )
    p.add_argument(
        "--peers", default="", help="compare.sh targets after the project, e.g. litserve,mlserver"
    )
    p.add_argument("--peer-seconds", type=int, default=20, help="compare.sh's DURATION")
    p.add_argument(
        "--deployed",
        default="",
        help="replica counts for the deployed path (nginx in front), e.g. 1,3; needs nginx "
        "and the test extra (dnslib)",
    )
    p.add_argument("--output", type=Path, help="write every figure to this JSON file")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    files = sorted(args.data_dir.rglob("*.jpg"))[: args.files]
    if not files:
        sys.exit(f"no JPEG under {args.data_dir}")
    host = hardware.describe()
    print(f"host: {host}", flush=True)
    photos = [f.read_bytes() for f in files]
    store = ModelStore(args.models_dir)
    env = {**COMPARE_ENV, "MODEL_NAME": args.model_name}
    measurer = InProcess(store, args.model_name, photos, env)
    local = measurer.measure()
    floor = local["decode_ms_per_image"] + local["model_ms_per_image"]
    print(f"in process: {local}; decode + model {floor:.3f} ms/image", flush=True)

    bodies, headers = multipart_bodies(files)
    stages = stage_costs(
        args.models_dir, args.model_name, bodies, headers, int(COMPARE_ENV["INFERENCE_THREADS"])
    )
    print(f"in process, one request at a time, CPU per image by stage: {stages}", flush=True)
    services = {
        "service": run_service(
            "service",
            env,
            args.models_dir,
            bodies,
            headers,
            levels,
            args.seconds,
            not args.no_profile,
            measurer,
            args.segments,
        )
    }
    for name, extra in args.variant:
        settings = {**env, **extra}
        own = InProcess(store, args.model_name, photos, settings)  # its runtime, its lanes
        services[name] = run_service(
            name, settings, args.models_dir, bodies, headers, levels, args.seconds, False, own,
            args.segments,
        )  # fmt: skip
        del own
    for count in [int(n) for n in args.deployed.split(",") if n]:
        deploy = deployed(
            count, env, args.models_dir, bodies, headers, levels, args.seconds, measurer,
            args.segments,
        )  # fmt: skip
        services[deploy["rows"][0]["setup"]] = deploy
    compared = peers(args.peers.split(","), args.peer_seconds) if args.peers else None

    print(
        f"\nhost: {host.get('cpu')}; {local['runtime']}; decode {local['decode_ms_per_image']} + model {local['model_ms_per_image']} = {floor:.3f} ms CPU per image in process"
    )
    print(
        "\n| setup | c | images/s | p50 ms | p99 ms | errors | mean batch | server CPU ms/image | decode + model in process, around the parts | request path ms/image (median of the parts) | cores busy (server + client; whole machine) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, service in services.items():
        for row in service["rows"]:
            around = " / ".join(f"{ms:.2f}" for ms in row["in_process_ms_per_image"])
            print(
                f"| {name} | {row['concurrency']} | {row['images_per_s']} | {row['p50_ms']} | {row['p99_ms']} | {row['errors']} | {row.get('mean_batch', '-')} | {row['server_cpu_ms_per_image']} | {around} | **{row['request_path_ms_per_image']}** | {_cores(row)} |"
            )
        if "worker_memory_mb" in service:
            print(f"worker memory after load ({name}), MB: {service['worker_memory_mb']}")
    print("\nin process, one request at a time (each stage's own cost, ms CPU per image):\n")
    print("| stage | ms CPU per image |\n|---|---:|")
    for stage, ms in stages.items():
        print(f"| {stage} | {ms:.3f} |")
    print(
        f"| all of the request path here | {sum(stages.values()) - stages.get('decode', 0):.3f} |"
    )
    profiles = services["service"]["profiles"]
    if profiles:
        stage_table(profiles, max(levels))
    summary = {}
    if compared:
        summary = ratios(compared)
        print(f"\npeers (compare.sh, {compared['folder']}):")
        for name, rows in compared["results"].items():
            for c, row in sorted(rows.items(), key=lambda kv: int(kv[0])):
                print(
                    f"  {name:9s} c={c:>2s} {row['images_per_s']:7.1f} images/s p50 {row['latency_ms']['p50']:6.1f} ms, server CPU {(row.get('server') or {}).get('cpu_ms_per_image')} ms/image, errors {row.get('errors')}"
                )
        print(f"ratios: {summary}")
    checked = verdicts(host, services["service"]["rows"], summary)
    if checked:
        print("\nissue 22's targets on this host:")
        for v in checked:
            print(
                f"  {'met' if v['met'] else 'NOT met':7s} {v['target']}: {v['value']} ({v['wanted']})"
            )
    write_results(
        args.output,
        {
            "host": host,
            "in_process": local,
            "stages_in_process": stages,
            "services": services,
            "peers": compared,
            "ratios": summary,
            "targets": checked,
        },
    )
    steps = [
        (f"{name} c={row['concurrency']}", row["requests"], row["errors"])
        for name, service in services.items()
        for row in service["rows"]
    ]
    return answered(steps)


if __name__ == "__main__":
    sys.exit(main())
