"""gunicorn settings for the service; every value can be overridden by the environment.

Run: gunicorn -c service/gunicorn.conf.py 'service:create_app()'
"""

import os

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
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
