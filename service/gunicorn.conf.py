"""gunicorn settings for the service, taken from service.settings (the environment).

Run: classifier-serve (or: gunicorn -c service/gunicorn.conf.py 'service.http.app:create_app()')
A bad setting stops the start here, in the master, with one line naming it.
"""

import logging
import os
import shutil
import tempfile

# Prometheus multiprocess mode: every worker writes its metrics into this folder, and
# GET /metrics sums them. It must be set before anything imports prometheus_client, so
# before the service package (which the settings import) is imported here.
DEFAULT_METRICS_DIR = os.path.join(tempfile.gettempdir(), f"classifier-metrics-{os.getpid()}")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DEFAULT_METRICS_DIR)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ lines are not JSON

from classifier import hardware  # noqa: E402
from service.settings import load_or_exit  # noqa: E402 (after the environment above)

settings = load_or_exit()

# The default folder above is this process's own: it goes at exit (an operator's stays).
OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] == DEFAULT_METRICS_DIR

bind = settings.address(settings.port)
workers = settings.workers
# Each worker reads the settings again and divides the cores by this count
# (Settings.worker_threads): the count the master runs, not one resolved again later.
os.environ["WEB_CONCURRENCY"] = str(workers)
# Threads let one worker take concurrent requests while its model runs: gunicorn's gthread,
# with a kept-alive connection's next request answered by the thread it is on
# (service/http/worker.py says why).
worker_class = "service.http.worker.ThreadWorker"
threads = settings.gunicorn_threads
# TensorFlow is not fork-safe: never build the app (and its model) in the master.
preload_app = False
timeout = settings.gunicorn_timeout
graceful_timeout = settings.graceful_timeout
keepalive = 5
# gunicorn has no body limit: the app enforces MAX_UPLOAD_BYTES; these bound the headers.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# The app writes one JSON line per request (service.access); gunicorn's own access log is off.
accesslog = None
errorlog = "-"
loglevel = settings.log_level
# Every line on stderr is one JSON object: gunicorn's own lines through this logger class,
# the app's and Python's warnings through the same formatter (service.logs).
logger_class = "service.logs.GunicornLogger"


def on_starting(server):
    """Start without an earlier run's metric files (they would be summed in): only those,
    prometheus_client's `*.db`, go from a folder an operator named; it may hold others."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))
    logging.getLogger("gunicorn.error").info(
        "workers: %d, inference threads each: %d, cores: %d",
        workers,
        settings.worker_threads,
        hardware.cores(),
        extra={"fields": {"event": "workers", "workers": workers,
                          "web_concurrency": settings.web_concurrency}},
    )  # fmt: skip


def on_exit(server):
    """The folder this process made for its metrics goes with it."""
    if OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """This worker's gRPC server, once its app (models, data plane) is built: created after
    fork, sharing GRPC_PORT with the other workers (service/grpc/__init__.py says why)."""
    if settings.grpc_port:
        from service.grpc.server import start

        worker.grpc_server = start(worker.wsgi.extensions["dataplane"], settings)
        worker.grpc_server.stop_on_sigterm(settings.graceful_timeout)


def worker_exit(server, worker):
    """The gRPC calls in flight finish within GRACEFUL_TIMEOUT of SIGTERM, as HTTP ones do;
    then the captures already answered are written (the monitor's thread is a daemon)."""
    grpc_server = getattr(worker, "grpc_server", None)
    if grpc_server is not None:
        grpc_server.stop(settings.graceful_timeout).wait(settings.graceful_timeout)
    plane = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("dataplane")
    if plane is not None and plane.monitor is not None:
        plane.monitor.wait_idle(min(5.0, settings.graceful_timeout))


def post_fork(server, worker):
    """Each worker: JSON logging, its lines written by one thread of its own."""
    from service.logs import configure_logging, write_from_one_thread

    configure_logging(settings.log_level)
    write_from_one_thread()
