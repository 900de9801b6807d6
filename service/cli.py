"""The one command that serves the app; the Makefile, Dockerfile, tests and benchmarks use it."""

GUNICORN_ARGV = ["gunicorn", "-c", "service/gunicorn.conf.py", "service:create_app()"]
