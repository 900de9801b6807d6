"""Prometheus metrics, correct across gunicorn workers (prometheus-client's multiprocess mode).

Names follow Triton's where one fits (inference_count, inference_exec_count, queue and compute
durations, request success and failure), in Prometheus base units (seconds).
gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports this module.
"""

from __future__ import annotations

import os
import struct
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by endpoint, method and status",
    ["endpoint", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
GRPC_REQUESTS = Counter(
    "grpc_server_handled_total",
    "gRPC calls by method and status code",
    ["grpc_method", "grpc_code"],
)
GRPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "gRPC call latency by method",
    ["grpc_method"],
    buckets=LATENCY_BUCKETS,
)
API_KEY_REQUESTS = Counter(
    "http_requests_by_api_key_total",
    "HTTP requests by API key name (never the key itself) and status",
    ["key", "status"],
)
INFERENCE_SUCCESS = Counter(
    "inference_request_success_total", "Predict requests answered", ["model", "version"]
)
INFERENCE_FAILURE = Counter(
    "inference_request_failure_total", "Predict requests that failed", ["model", "reason"]
)
INFERENCE_COUNT = Counter(
    "inference_count_total", "Images run through a model", ["model", "version"]
)
INFERENCE_EXEC = Counter(
    "inference_exec_count_total", "Model calls (batches) executed", ["model", "version"]
)
QUEUE_DURATION = Histogram(
    "inference_queue_duration_seconds",
    "Time the oldest image of a batch waited in the queue",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
COMPUTE_DURATION = Histogram(
    "inference_compute_duration_seconds",
    "Time one model call took",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "inference_batch_size",
    "Images in one model call (before padding)",
    ["model"],
    buckets=BATCH_BUCKETS,
)
MODEL_RUNTIME = Gauge(
    "model_runtime_info",
    "1 for each loaded version: the runtime, precision and device it runs on",
    ["model", "version", "runtime", "precision", "device"],
    multiprocess_mode="livemax",
)
MODEL_CLASS_MISMATCH = Counter(
    "model_class_mismatch_total",
    "Versions refused because their classes differ from the ones the model answers with",
    ["model"],
)
MODEL_LOADS = Counter("model_load_total", "Model version loads by result", ["model", "result"])
MODEL_VERSION = Gauge(
    "model_loaded_version",
    "Newest version loaded per model (highest over live workers)",
    ["model"],
    multiprocess_mode="livemax",
)

# -- the feedback loop: answers, feedback, drift, capture (service/monitor.py, feedback.py) --

CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

PREDICTIONS = Counter(
    "predictions_total",
    "Images answered, by the class answered: the class mix of the answers",
    ["model", "version", "label"],
)
CONFIDENCE = Histogram(
    "prediction_confidence",
    "The top class's probability of each answer",
    ["model", "version"],
    buckets=CONFIDENCE_BUCKETS,
)
FEEDBACK = Counter(
    "feedback_total",
    "Feedback received, by the version that answered and whether its answer was right "
    "(unknown: the model could not answer the uploaded photo then)",
    ["model", "version", "correct"],
)
DRIFT_PSI = Gauge(
    "model_drift_psi",
    "Population stability index of the last DRIFT_WINDOW answers against the version's "
    "validation answers, by what is compared (class_mix, confidence); highest over workers",
    ["model", "version", "kind"],
    multiprocess_mode="livemax",
)
DRIFTING = Gauge(
    "model_drifting",
    "1 when the answers drift (a PSI at DRIFT_PSI_THRESHOLD or above) in any worker's window",
    ["model", "version"],
    multiprocess_mode="livemax",
)
DRIFT_ANSWERS = Gauge(
    "model_drift_window_answers",
    "Answers in the drift windows, summed over workers (each holds at most DRIFT_WINDOW)",
    ["model", "version"],
    multiprocess_mode="livesum",
)
MONITOR_DROPPED = Counter(
    "monitor_dropped_answers_total",
    "Answers left out of the loop's metrics, drift and capture: its queue was full",
)
CAPTURED = Counter(
    "capture_images_total", "Images captured for labelling, by result", ["model", "result"]
)
CAPTURE_REMOVED = Counter(
    "capture_removed_total",
    "Captured files removed by the bounds (age: CAPTURE_MAX_AGE_HOURS, size: CAPTURE_MAX_BYTES)",
    ["reason"],
)
CAPTURE_BYTES = Gauge(
    "capture_stored_bytes",
    "Bytes the captured requests take (all workers share the folder)",
    multiprocess_mode="livemax",
)


def observe_batch(model: str, version: int, images: int, wait_s: float, compute_s: float) -> None:
    INFERENCE_COUNT.labels(model, str(version)).inc(images)
    INFERENCE_EXEC.labels(model, str(version)).inc()
    QUEUE_DURATION.labels(model).observe(wait_s)
    COMPUTE_DURATION.labels(model).observe(compute_s)
    BATCH_SIZE.labels(model).observe(images)


MERGE_TRIES = 5  # reads of the workers' files before /metrics gives up (a 500)


def render() -> tuple[bytes, str]:
    """The exposition text: summed over every worker when running under gunicorn. The files
    are read without a lock while the workers write them, so a read may catch one mid-write
    (a new file, a new series: a cut JSON key); it is read again, as the write ends at once
    (before, that /metrics was a 500, once in CI)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    for attempt in range(MERGE_TRIES):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        try:
            return generate_latest(registry), CONTENT_TYPE_LATEST
        except (ValueError, RuntimeError, struct.error):  # JSONDecodeError is a ValueError
            if attempt + 1 == MERGE_TRIES:
                raise
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")
