"""gunicorn settings for the service; every value can be overridden by the environment.

Run: gunicorn -c service/gunicorn.conf.py 'service:create_app()'
"""

import os
import shutil
import tempfile

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Threads let one worker take concurrent requests while its model runs.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
# TensorFlow is not fork-safe: never build the app (and its model) in the master.
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# gunicorn has no body limit: the app enforces MAX_UPLOAD_BYTES; these bound the headers.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# The app writes one JSON line per request (service.access); gunicorn's own access log is off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# Prometheus multiprocess mode: every worker writes its metrics into this folder, and
# GET /metrics sums them. It must be set before a worker imports prometheus_client.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(tempfile.gettempdir(), f"classifier-metrics-{os.getpid()}"),
)


def on_starting(server):
    """Start from an empty metrics folder: files of an earlier run would be summed in."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
