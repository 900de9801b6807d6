"""gRPC against REST on one server, in one run: the Open Inference Protocol's ModelInfer over
gRPC and its REST form with the binary tensor data extension (as tritonclient sends each), one
JPEG per request, at each client concurrency (1 and 32 by default).

Both clients send prebuilt requests and read the whole answer without parsing it: REST over
keep-alive http.client connections (benchmarks/harness.py's drive), gRPC over one channel,
that is one HTTP/2 connection, per client thread. All traffic goes to 127.0.0.1 and every
phase is bounded in count and time.

    python -m benchmarks.grpc_vs_rest --data-dir ../shared/data/cats_vs_dogs/validation
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc

from benchmarks.harness import (
    LoadResult,
    Server,
    answered,
    batch_counters,
    benchmark_parser,
    drive,
    host,
    run_clients,
    shares_of,
    write_results,
)
from benchmarks.serving import load_bodies, v2_binary
from service.protocols import v2_messages
from service.protocols.tensors import pack_bytes

INFER = "/inference.GRPCInferenceService/ModelInfer"


def grpc_request(name: str, photo: bytes) -> bytes:
    """A serialized ModelInfer request: one image in raw_input_contents, as tritonclient.grpc
    sends it, asking for the probabilities."""
    request = v2_messages.ModelInferRequest(
        model_name=name, raw_input_contents=[pack_bytes([photo])]
    )
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.outputs.add(name="probabilities")
    return request.SerializeToString()


def drive_grpc(
    target: str, requests: list[bytes], concurrency: int, count: int, max_seconds: float = 300
) -> LoadResult:
    """Send `count` prebuilt requests from `concurrency` threads, each on its own connection;
    bounded in count and in time, like harness.drive."""
    lock = threading.Lock()
    result = LoadResult(concurrency, 0, 0.0)
    stop_at = time.monotonic() + max_seconds
    shares = shares_of(count, concurrency)

    def client(index: int, share: int) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
        latencies, codes = [], {}
        with grpc.insecure_channel(target, options=options) as channel:
            infer = channel.unary_unary(INFER)  # bytes in, bytes out
            for j in range(share):
                if time.monotonic() > stop_at:
                    break
                body = requests[(index * 7919 + j) % len(requests)]
                started = time.perf_counter()
                try:
                    infer(body, timeout=60)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                latencies.append((time.perf_counter() - started) * 1000)
                codes[code] = codes.get(code, 0) + 1
        with lock:
            result.latencies_ms.extend(latencies)
            result.requests += len(latencies)
            result.errors += sum(n for code, n in codes.items() if code != "OK")

    result.seconds = run_clients(client, shares)
    return result


def measure(
    server: Server, name: str, form: str, bodies: list[bytes], concurrency: int, count: int
) -> dict:
    """One form at one concurrency, with the mean batch the server formed meanwhile."""
    before = batch_counters(server.url, name)
    if form == "grpc":
        result = drive_grpc(
            server.grpc_target, [grpc_request(name, b) for b in bodies], concurrency, count
        )
    else:
        built = [v2_binary(body) for body in bodies]
        path = f"/v2/models/{name}/infer"
        result = drive(
            server.port,
            path,
            [b for b, _ in built],
            concurrency,
            count,
            headers=[h for _, h in built],
        )
    after = batch_counters(server.url, name)
    batches = after[0] - before[0]
    row = {"form": form, **result.summary()}
    row["mean_batch_size"] = round((after[1] - before[1]) / batches, 2) if batches else None
    return row


FORMS = ("v2 rest binary", "grpc")


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table, gRPC's rate against REST's at each concurrency."""
    rest = {r["concurrency"]: r["images_per_s"] for r in rows if r["form"] != "grpc"}
    lines = [
        "| form | c | images/s | p50 ms | p95 ms | p99 ms | errors | mean batch | vs REST |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["images_per_s"] / rest[r["concurrency"]] if rest.get(r["concurrency"]) else 0
        lines.append(
            f"| {r['form']} | {r['concurrency']} | {r['images_per_s']} | {r['p50_ms']} "
            f"| {r['p95_ms']} | {r['p99_ms']} | {r['errors']} | {r['mean_batch_size']} "
            f"| {ratio:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.grpc_vs_rest", __doc__)
    p.add_argument("--model-name", default="cats_vs_dogs", help="model to serve")
    p.add_argument("--files", type=int, default=1000, help="how many JPEGs to use")
    p.add_argument("--concurrency", default="1,32", help="client concurrency levels")
    p.add_argument("--requests", type=int, default=1000, help="requests per form and level")
    p.add_argument("--threads", type=int, default=64, help="gunicorn (and gRPC) threads")
    p.add_argument("--output", type=Path, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    bodies = load_bodies(args.data_dir, args.files)
    machine = host()
    env = {
        "MODEL_NAME": args.model_name,
        "MODEL_POLL_SECONDS": "0",
        "GUNICORN_THREADS": str(args.threads),
        "QUEUE_CAPACITY": str(max(256, 4 * max(levels))),
    }
    rows = []
    with Server(args.models_dir, **env) as server:
        server.wait_ready()
        for form in FORMS:  # warm both paths: connections, threads, first batches
            measure(server, args.model_name, form, bodies, 4, 32)
        for concurrency in levels:
            for form in FORMS:
                row = measure(server, args.model_name, form, bodies, concurrency, args.requests)
                rows.append(row)
                print(f"  {row}", flush=True)
    print(table(rows))
    write_results(args.output, {"host": machine, "rows": rows})
    steps = [(f"{r['form']} c={r['concurrency']}", r["requests"], r["errors"]) for r in rows]
    return answered(steps) or (1 if any(r["errors"] for r in rows) else 0)  # any error fails


if __name__ == "__main__":
    raise SystemExit(main())
