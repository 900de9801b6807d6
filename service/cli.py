"""`classifier-serve`: check the settings, then become gunicorn serving the app.

The Makefile, the Docker image, the tests and the benchmarks all start the service this way.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from service.settings import Settings, load_or_exit

CONFIG = Path(__file__).with_name("gunicorn.conf.py")
APP = "service.http.app:create_app()"


def gunicorn_argv() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(CONFIG), APP]


def parser() -> argparse.ArgumentParser:
    lines = [
        f"  {name.upper()}: {field.description} (default: {field.default})"
        for name, field in Settings.model_fields.items()
    ]
    return argparse.ArgumentParser(
        prog="classifier-serve",
        description="Serve the models under MODELS_DIR over HTTP (gunicorn, gthread workers). "
        "Every setting is an environment variable:",
        epilog="\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> None:
    """A bad setting exits 2 with one line; otherwise exec gunicorn (same pid, signals reach it)."""
    parser().parse_args(argv)
    load_or_exit()
    argv = gunicorn_argv()
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
