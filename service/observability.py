"""Request ids, one JSON log line per request, HTTP metrics, and JSON logging for the app."""

from __future__ import annotations

import atexit
import json
import logging
import logging.config
import logging.handlers
import queue
import re
import time
import uuid

from flask import Flask, Response, g, request
from gunicorn import glogging

from service import metrics

access_log = logging.getLogger("service.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={"fields": {...}}` adds fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class GunicornLogger(glogging.Logger):
    """gunicorn's own lines as JSON; its access log stays off (the app writes one JSON line
    per request, service.access), so gunicorn never builds its access fields."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def _compute_access_log_enabled(self) -> bool:
        return False


def json_logging(level: str) -> dict:
    """A logging.config dictionary: every logger of the process writes JSON lines to stderr."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def configure_logging(level: str) -> None:
    """JSON lines from every logger, Python's warnings included (once per process)."""
    logging.captureWarnings(True)
    if not logging.getLogger().handlers:  # else someone has configured it already
        logging.config.dictConfig(json_logging(level))


class _RecordQueue(logging.handlers.QueueHandler):
    """Queue the record as it is: formatting (JSON) happens in the writing thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def write_from_one_thread() -> None:
    """Move this process's JSON handlers behind a queue, written by one thread: 64 request
    threads writing their access lines through one locked stream handler spent more time
    waiting for its lock than the line costs (py-spy, docs/benchmarks.md). Called in each
    gunicorn worker after fork (threads do not survive a fork)."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    if not ours:  # already queued, or someone else's handlers
        return
    records: queue.SimpleQueue = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, *ours, respect_handler_level=True)
    for handler in ours:
        root.removeHandler(handler)
    root.addHandler(_RecordQueue(records))
    listener.start()
    atexit.register(listener.stop)  # writes what is queued before the worker exits


def note_model(model: str, version: int) -> None:
    """The model a predict request went to, for the access log line and the metrics."""
    g.model, g.version = model, version


def note_images(images: int) -> None:
    g.images = images


def install(app: Flask, inference_rules: frozenset[str]) -> None:
    """Request ids, metrics and the access log; `inference_rules` count as predictions."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex

    @app.after_request
    def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        response.headers["X-Request-ID"] = g.get("request_id", "")
        method = request.method if request.method in _METHODS else "other"  # bounded labels
        metrics.HTTP_REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
        metrics.HTTP_LATENCY.labels(endpoint).observe(elapsed)
        model = g.get("model")
        if endpoint in inference_rules:
            if response.status_code == 200:
                metrics.INFERENCE_SUCCESS.labels(model, str(g.get("version"))).inc()
            else:  # "-" when no served model was named: client input never becomes a label
                reason = g.get("error_code", str(response.status_code))
                metrics.INFERENCE_FAILURE.labels(model or "-", reason).inc()
        fields = {
            "event": "request",
            "request_id": g.get("request_id"),
            "method": request.method,
            "endpoint": endpoint,
            "status": response.status_code,
            "latency_ms": round(elapsed * 1000, 2),
            "images": g.get("images", 0),
            "model": model,
            "version": g.get("version"),
        }
        if g.get("error_code"):
            fields["error"] = g.error_code
        if g.get("api_key"):  # the key's name, never the key
            fields["api_key"] = g.api_key
            metrics.API_KEY_REQUESTS.labels(g.api_key, str(response.status_code)).inc()
        access_log.info(
            "%s %s %s", request.method, endpoint, response.status_code, extra={"fields": fields}
        )
        return response
