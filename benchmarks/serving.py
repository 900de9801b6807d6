"""Serving benchmark on real JPEGs, side by side in one run:

1. the ceiling: in-process decode + preprocessing + each runtime at each batch size;
2. the service with dynamic batching;
3. the service with batching off (MAX_BATCH_SIZE=1);
4. a naive Flask app calling Keras `model.predict` per request (benchmarks/naive_app.py);
5. on the same server as 2, the Open Inference Protocol (V2) forms beside /predict: binary
   tensor data (as tritonclient sends it) and JSON with base64, at --protocol-concurrency.

It also prints the host (processor and what it computes natively), the model's FLOPs per
image, the measured multiply-add peak of each precision (float32 GEMM through numpy; bfloat16
MatMul through OpenVINO where the CPU has it), every runtime/precision path this host can
run with its in-process ceiling and its accuracy on the labelled photos (a reduced-precision
path more than 0.2 points from fp32 is not one `auto` should use), and the fraction of the
served path's ceiling and peak each figure reaches. All traffic goes to 127.0.0.1 and every phase
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

from benchmarks.harness import (
    REPO,
    Server,
    answered,
    batch_counters,
    benchmark_parser,
    drive,
    drive_processes,
    write_results,
)
from classifier import hardware, runtimes
from classifier.predictor import load_predictor
from classifier.preprocess import decode_image
from classifier.runtimes import RuntimeOptions
from classifier.store import ModelStore
from service.protocols.tensors import pack_bytes


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


def paths() -> list[tuple[str, str]]:
    """Every (runtime, precision) this host and install can run the model with."""
    found = [("onnx", "fp32")]
    if runtimes.runtime_refusal("openvino") is None:
        found.append(("openvino", "fp32"))
        if runtimes.bf16_refusal("openvino", "bf16") is None:
            found.append(("openvino", "bf16"))
    if runtimes.has_tensorflow():
        found.append(("keras", "fp32"))
    return found


def load(store, name, path: tuple[str, str]):
    runtime, precision = path
    return load_predictor(store, name, options=RuntimeOptions(runtime=runtime, precision=precision))


def ceiling(store, name, bodies, batch_sizes, chosen_paths) -> list[dict]:
    """Images/s of decode + inference in this process: two decode threads feed the runtime."""
    rows = []
    for path in chosen_paths:
        predictor = load(store, name, path)
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
            label = "/".join(path)
            rows.append({"path": label, "batch_size": size, "images_per_s": round(rate, 1)})
            print(f"  ceiling {label:13s} batch {size:3d}: {rate:7.1f} images/s", flush=True)
    return rows


def accuracy(store, name, data_dir: Path, chosen_paths) -> list[dict]:
    """Each path's accuracy on the labelled photos (class folders), against ONNX Runtime fp32."""
    first = load(store, name, chosen_paths[0])
    classes = list(first.class_names)
    files = [p for p in sorted(data_dir.rglob("*.jpg")) if p.parent.name in classes]
    if not files:
        return []
    images = np.stack([decode_image(p.read_bytes(), first.spec) for p in files])
    truth = np.array([classes.index(p.parent.name) for p in files])
    rows = []
    for path in chosen_paths:
        predictor = load(store, name, path)
        probs = np.concatenate(
            [predictor.predict_proba(images[i : i + 64]) for i in range(0, len(images), 64)]
        )
        predicted = (probs >= predictor.metadata.threshold).astype(int)
        rows.append(
            {"path": "/".join(path), "accuracy": float((predicted == truth).mean()), "probs": probs}
        )
    reference = rows[0]
    for row in rows:
        row["points_vs_fp32"] = round(100 * (row["accuracy"] - reference["accuracy"]), 2)
        row["max_abs_diff_vs_fp32"] = (
            float(np.abs(row.pop("probs") - reference["probs"]).max())
            if row is not reference
            else 0.0
        )
        row["usable_by_auto"] = abs(row["points_vs_fp32"]) <= 0.2
        print(
            f"  accuracy {row['path']:13s} {row['accuracy']:.4f} ({row['points_vs_fp32']:+.2f} points, max |dp| {row['max_abs_diff_vs_fp32']:.2g})",
            flush=True,
        )
    reference.pop("probs", None)
    return rows


def bf16_peak_gflops(size: int = 2048, repeats: int = 8) -> float | None:
    """The bf16 multiply-add rate of a large MatMul through OpenVINO (native bf16 only)."""
    if runtimes.bf16_refusal("openvino", "bf16") is not None:
        return None
    import openvino as ov
    from openvino import opset13 as ops

    a = ops.parameter([size, size], np.float32)
    weights = np.random.default_rng(0).random((size, size), dtype=np.float32)
    model = ov.Model([ops.matmul(a, ops.constant(weights), False, False)], [a])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    request = compiled.create_infer_request()
    x = weights.T.copy()
    request.infer({0: x})
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        request.infer({0: x})
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def single_image_latency_ms(store, name, path, bodies, n=200) -> float:
    """Median of one image's decode + inference, in process: the c=1 latency reference."""
    predictor = load(store, name, path)
    times = []
    for body in bodies[:n]:
        started = time.perf_counter()
        predictor.predict_proba(decode_image(body, predictor.spec)[None])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


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


def run_form(server, name, form, bodies, concurrency: int, count: int, processes: int = 1):
    path, build = FORMS[form]
    built = [build(body) for body in bodies] if build else None
    payloads = [b for b, _ in built] if built else bodies
    headers = [h for _, h in built] if built else None
    before = batch_counters(server.url, name)
    result = drive_processes(
        processes, server.port, path.format(name=name), payloads, concurrency, count,
        headers=headers,
    )  # fmt: skip
    after = batch_counters(server.url, name)
    row = result.summary()
    batches = after[0] - before[0]
    row["mean_batch_size"] = round((after[1] - before[1]) / batches, 2) if batches else None
    return row


def run_service(
    label, models_dir, name, bodies, levels, count, env, forms=(), processes: int = 1
) -> list[dict]:
    """/predict at every level; the other request `forms` at the levels in `forms`; the load
    from `processes` client processes."""
    rows = []
    with Server(models_dir, **env) as server:
        server.wait_ready()
        drive(server.port, "/predict", bodies, 4, 64)  # warm the connections and threads
        for concurrency in levels:
            for form in ("own", *(f for f, at in forms if concurrency in at)):
                row = {
                    "setup": label if form == "own" else f"{label}, {form}",
                    **run_form(server, name, form, bodies, concurrency, count, processes),
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
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="the service's WEB_CONCURRENCY (0: the service's own default, a worker per 2 cores)",
    )
    p.add_argument(
        "--load-processes",
        type=int,
        default=1,
        help="client processes the load is split over (for servers of many workers)",
    )
    p.add_argument("--runtime", default="auto", help="the service's RUNTIME")
    p.add_argument("--precision", default="auto", help="the service's PRECISION")
    p.add_argument("--output", type=Path, help="write all figures to this JSON file")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    bodies = load_bodies(args.data_dir, args.files)
    store = ModelStore(args.models_dir)
    meta = store.latest_valid(args.model_name)
    version_dir = store.model_dir(args.model_name) / str(meta.version)
    flops = model_flops(version_dir / "model.keras")
    host = hardware.describe()
    print(f"host: {host}")
    print(f"model {args.model_name} v{meta.version}: {flops / 1e6:.1f} MFLOP per image")
    peaks = {"fp32": fma_peak_gflops(), "bf16": bf16_peak_gflops()}
    for precision, gflops in peaks.items():
        if gflops:
            print(
                f"{precision} peak (GEMM): {gflops:.1f} GFLOP/s = {gflops * 1e9 / flops:.0f} images/s"
            )

    options = RuntimeOptions(runtime=args.runtime, precision=args.precision)
    served = "/".join(runtimes.choose(options, "model.onnx" in meta.files))
    chosen = paths()
    print(f"paths here: {['/'.join(p) for p in chosen]}; the service serves {served}")
    print("ceiling (in process, decode + inference):")
    ceiling_rows = ceiling(store, args.model_name, bodies, sizes, chosen)
    best = max((r for r in ceiling_rows if r["path"] == served), key=lambda r: r["images_per_s"])
    served_path = tuple(served.split("/"))
    single_ms = single_image_latency_ms(store, args.model_name, served_path, bodies)
    print(f"ceiling of the served path: {best}; one image decode + inference: {single_ms:.2f} ms")
    print("accuracy of each path on the labelled photos:")
    accuracy_rows = accuracy(store, args.model_name, args.data_dir, chosen)
    peak = peaks[served_path[1]] or peaks["fp32"]
    peak_images = peak * 1e9 / flops

    env = {
        "MODEL_NAME": args.model_name,
        "RUNTIME": args.runtime,
        "PRECISION": args.precision,
        "GUNICORN_THREADS": str(args.threads),
        "MAX_BATCH_SIZE": str(args.max_batch_size),
        "BATCH_TIMEOUT_MS": str(args.batch_timeout_ms),
        "QUEUE_CAPACITY": str(max(256, 4 * max(levels))),
        "WEB_CONCURRENCY": str(args.workers),
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
        args.load_processes,
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
        processes=args.load_processes,
    )
    if not args.skip_naive:
        service_rows += run_naive(
            version_dir / "model.keras", bodies, levels, args.naive_requests, args.threads
        )

    print("\nsummary (ratios from this run):")
    for row in service_rows:
        row["of_ceiling"] = round(row["images_per_s"] / best["images_per_s"], 3)
        row["of_peak"] = round(row["images_per_s"] / peak_images, 3)
        print(
            f"  {row['setup']:28s} c={row['concurrency']:3d} {row['images_per_s']:7.1f} img/s "
            f"p50 {row['p50_ms']:7.2f} p95 {row['p95_ms']:7.2f} p99 {row['p99_ms']:7.2f} ms "
            f"errors {row['errors']} batch {row['mean_batch_size']} "
            f"= {row['of_ceiling']:.2f} of ceiling, {row['of_peak']:.2f} of peak"
        )
    print(
        f"  ceiling {best['images_per_s']} img/s = {best['images_per_s'] / peak_images:.2f} "
        f"of the {served_path[1]} peak"
    )
    write_results(
        args.output,
        {
            "host": host,
            "model": {"name": args.model_name, "version": meta.version},
            "mflops_per_image": flops / 1e6,
            "peak_gflops": peaks,
            "served_path": served,
            "peak_images_per_s": peak_images,
            "ceiling": ceiling_rows,
            "accuracy": accuracy_rows,
            "single_image_ms": single_ms,
            "service": service_rows,
        },
    )
    return answered([(_step(row), row["requests"], row["errors"]) for row in service_rows])


def _step(row: dict) -> str:
    return f"{row['setup']} c={row['concurrency']}"


if __name__ == "__main__":
    sys.exit(main())
