"""Serving benchmark on real JPEGs, side by side in one run:

1. the ceiling: in-process decode + preprocessing + each runtime at each batch size;
2. the service with dynamic batching;
3. the service with batching off (MAX_BATCH_SIZE=1);
4. a naive Flask app calling Keras `model.predict` per request (benchmarks/naive_app.py);
5. on the same server as 2, the Open Inference Protocol (V2) forms beside /predict: binary
   tensor data (as tritonclient sends it) and JSON with base64, at --protocol-concurrency.

It also prints the model's FLOPs per image, the machine's measured FMA peak (float32 GEMM)
and the fraction of it each figure reaches. All traffic goes to 127.0.0.1 and every phase
is bounded in count and time.

    python -m benchmarks.serving --data-dir ../shared/data/cats_vs_dogs/validation
"""

from __future__ import annotations

import base64
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from benchmarks.harness import REPO, Server, benchmark_parser, drive
from classifier.predictor import load_predictor
from classifier.preprocess import decode_image
from classifier.runtimes import RuntimeOptions
from classifier.store import ModelStore
from service.tensors import pack_bytes


def load_bodies(data_dir: Path, limit: int) -> list[bytes]:
    files = sorted(p for p in data_dir.rglob("*.jpg"))[:limit]
    if not files:
        sys.exit(f"no JPEG under {data_dir}")
    return [p.read_bytes() for p in files]


def fma_peak_gflops(size: int = 2048, repeats: int = 8) -> float:
    """The machine's float32 multiply-add rate as a large GEMM reaches it (best of N)."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def model_flops(model_path: Path) -> int:
    """Multiply-adds x 2 per image, counted from the Keras layers (Conv2D and Dense)."""
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * c_out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def ceiling(store, name, bodies, batch_sizes, runtimes) -> list[dict]:
    """Images/s of decode + inference in this process: two decode threads feed the runtime."""
    rows = []
    for runtime_name in runtimes:
        predictor = load_predictor(store, name, options=RuntimeOptions(runtime=runtime_name))
        spec = predictor.spec
        predictor.predict_proba(np.zeros((max(batch_sizes), *spec.shape), np.uint8))
        for size in batch_sizes:
            chunks = [bodies[i : i + size] for i in range(0, len(bodies), size)]
            predictor.predict_proba(np.zeros((size, *spec.shape), np.uint8))

            def decode(chunk, spec=spec):
                return np.stack([decode_image(b, spec) for b in chunk])

            started = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                for batch in pool.map(decode, chunks):
                    predictor.predict_proba(batch)
            rate = len(bodies) / (time.perf_counter() - started)
            rows.append(
                {"runtime": runtime_name, "batch_size": size, "images_per_s": round(rate, 1)}
            )
            print(f"  ceiling {runtime_name:5s} batch {size:3d}: {rate:7.1f} images/s", flush=True)
    return rows


def single_image_latency_ms(store, name, runtime_name, bodies, n=200) -> float:
    """Median of one image's decode + inference, in process: the c=1 latency reference."""
    predictor = load_predictor(store, name, options=RuntimeOptions(runtime=runtime_name))
    times = []
    for body in bodies[:n]:
        started = time.perf_counter()
        predictor.predict_proba(decode_image(body, predictor.spec)[None])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def batch_counters(url: str, name: str) -> tuple[int, int]:
    batching = requests.get(f"{url}/v1/models/{name}", timeout=10).json()["batching"]
    return batching["batches"], batching["images"]


def v2_binary(photo: bytes) -> tuple[bytes, dict[str, str]]:
    """A V2 infer request with the binary tensor data extension, as tritonclient sends it."""
    data = pack_bytes([photo])
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "shape": [1], "datatype": "BYTES",
                 "parameters": {"binary_data_size": len(data)}}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()  # fmt: skip
    headers = {"Inference-Header-Content-Length": str(len(header))}
    return header + data, {**headers, "Content-Type": "application/octet-stream"}


def v2_json(photo: bytes) -> tuple[bytes, dict[str, str]]:
    """A V2 infer request in JSON, the image base64-encoded."""
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES"}
    body = {"inputs": [{**tensor, "data": [base64.b64encode(photo).decode()]}]}
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


# Request forms measured side by side on one server: (label, path, body builder).
FORMS = {
    "own": ("/predict", None),
    "v2 binary": ("/v2/models/{name}/infer", v2_binary),
    "v2 json": ("/v2/models/{name}/infer", v2_json),
}


def run_form(server, name: str, form: str, bodies: list[bytes], concurrency: int, count: int):
    path, build = FORMS[form]
    built = [build(body) for body in bodies] if build else None
    payloads = [b for b, _ in built] if built else bodies
    headers = [h for _, h in built] if built else None
    before = batch_counters(server.url, name)
    result = drive(
        server.port, path.format(name=name), payloads, concurrency, count, headers=headers
    )
    after = batch_counters(server.url, name)
    row = result.summary()
    batches = after[0] - before[0]
    row["mean_batch_size"] = round((after[1] - before[1]) / batches, 2) if batches else None
    return row


def run_service(label, models_dir, name, bodies, levels, count, env, forms=()) -> list[dict]:
    """/predict at every level; the other request `forms` at the levels in `forms`."""
    rows = []
    with Server(models_dir, **env) as server:
        server.wait_ready()
        drive(server.port, "/predict", bodies, 4, 64)  # warm the connections and threads
        for concurrency in levels:
            for form in ("own", *(f for f, at in forms if concurrency in at)):
                row = {
                    "setup": label if form == "own" else f"{label}, {form}",
                    **run_form(server, name, form, bodies, concurrency, count),
                }
                rows.append(row)
                print(f"  {row['setup']}: {row}", flush=True)
    return rows


def run_naive(model_path, bodies, levels, count, threads) -> list[dict]:
    argv = [
        "gunicorn",
        "-b",
        "127.0.0.1:{port}",
        "-k",
        "gthread",
        "--threads",
        str(threads),
        "benchmarks.naive_app:create_app()",
    ]
    rows = []
    with Server(REPO / "models", argv=argv, MODEL_PATH=str(model_path)) as server:
        _wait_naive(server)
        drive(server.port, "/predict", bodies, 2, 8)
        for concurrency in levels:
            result = drive(server.port, "/predict", bodies, concurrency, count)
            row = {"setup": "naive Flask + model.predict", **result.summary()}
            row["mean_batch_size"] = 1
            rows.append(row)
            print(f"  naive: {row}", flush=True)
    return rows


def _wait_naive(server: Server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(server.url, timeout=2)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.3)
    raise TimeoutError("naive app did not start")


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.serving", __doc__)
    p.add_argument("--model-name", default="cats_vs_dogs", help="model to serve")
    p.add_argument("--files", type=int, default=1000, help="how many JPEGs to use")
    p.add_argument("--concurrency", default="1,8,32,64", help="client concurrency levels")
    p.add_argument("--requests", type=int, default=1000, help="requests per level (service)")
    p.add_argument("--naive-requests", type=int, default=200, help="requests per level (naive)")
    p.add_argument("--batch-sizes", default="1,4,8,16,32,64", help="ceiling batch sizes")
    p.add_argument("--threads", type=int, default=64, help="gunicorn threads per worker")
    p.add_argument("--max-batch-size", type=int, default=16, help="service MAX_BATCH_SIZE")
    p.add_argument("--batch-timeout-ms", type=float, default=0.0, help="service BATCH_TIMEOUT_MS")
    p.add_argument("--skip-naive", action="store_true", help="leave the naive baseline out")
    p.add_argument(
        "--protocol-concurrency",
        default="32",
        help="levels at which the V2 binary and V2 JSON forms also run (empty: none)",
    )
    p.add_argument("--output", type=Path, help="write all figures to this JSON file")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    bodies = load_bodies(args.data_dir, args.files)
    store = ModelStore(args.models_dir)
    meta = store.latest_valid(args.model_name)
    version_dir = store.model_dir(args.model_name) / str(meta.version)
    flops = model_flops(version_dir / "model.keras")
    peak = fma_peak_gflops()
    peak_images = peak * 1e9 / flops
    print(f"model {args.model_name} v{meta.version}: {flops / 1e6:.1f} MFLOP per image")
    print(f"FMA peak (float32 GEMM): {peak:.1f} GFLOP/s = {peak_images:.0f} images/s at best")

    runtimes = ["onnx", "keras"] if "model.onnx" in meta.files else ["keras"]
    print("ceiling (in process, decode + inference):")
    ceiling_rows = ceiling(store, args.model_name, bodies, sizes, runtimes)
    best = max(ceiling_rows, key=lambda r: r["images_per_s"])
    single_ms = single_image_latency_ms(store, args.model_name, best["runtime"], bodies)
    print(f"best ceiling: {best}; one image decode + inference: {single_ms:.2f} ms")

    env = {
        "MODEL_NAME": args.model_name,
        "GUNICORN_THREADS": str(args.threads),
        "MAX_BATCH_SIZE": str(args.max_batch_size),
        "BATCH_TIMEOUT_MS": str(args.batch_timeout_ms),
        "QUEUE_CAPACITY": str(max(256, 4 * max(levels))),
    }
    print("service:")
    at = {int(c) for c in args.protocol_concurrency.split(",") if c}
    forms = [("v2 binary", at), ("v2 json", at)]
    service_rows = run_service(
        "service, batching",
        args.models_dir,
        args.model_name,
        bodies,
        levels,
        args.requests,
        env,
        forms,
    )
    unbatched = {**env, "MAX_BATCH_SIZE": "1", "BATCH_TIMEOUT_MS": "0"}
    service_rows += run_service(
        "service, MAX_BATCH_SIZE=1",
        args.models_dir,
        args.model_name,
        bodies,
        levels,
        args.requests,
        unbatched,
    )
    if not args.skip_naive:
        service_rows += run_naive(
            version_dir / "model.keras", bodies, levels, args.naive_requests, args.threads
        )

    print("\nsummary (ratios from this run):")
    for row in service_rows:
        row["of_ceiling"] = round(row["images_per_s"] / best["images_per_s"], 3)
        row["of_fma_peak"] = round(row["images_per_s"] / peak_images, 3)
        print(
            f"  {row['setup']:28s} c={row['concurrency']:3d} {row['images_per_s']:7.1f} img/s "
            f"p50 {row['p50_ms']:7.2f} p95 {row['p95_ms']:7.2f} p99 {row['p99_ms']:7.2f} ms "
            f"errors {row['errors']} batch {row['mean_batch_size']} "
            f"= {row['of_ceiling']:.2f} of ceiling, {row['of_fma_peak']:.2f} of peak"
        )
    print(
        f"  ceiling {best['images_per_s']} img/s = {best['images_per_s'] / peak_images:.2f} of peak"
    )
    if args.output:
        args.output.write_text(
            json.dumps(
                {
                    "model": {"name": args.model_name, "version": meta.version},
                    "mflops_per_image": flops / 1e6,
                    "fma_peak_gflops": peak,
                    "peak_images_per_s": peak_images,
                    "ceiling": ceiling_rows,
                    "single_image_ms": single_ms,
                    "service": service_rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
