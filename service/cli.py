"""`classifier-serve`: check the settings and that its ports are free, then become gunicorn
serving the app.

The Makefile, the Docker image, the tests and the benchmarks all start the service this way.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
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


def port_refusal(host: str, port: int, variable: str) -> str | None:
    """Why HOST:port cannot be listened on (taken, not an address here, not allowed), in one
    line naming the setting; None when it can. Bound as gunicorn binds (SO_REUSEADDR) but
    without SO_REUSEPORT, so that a gRPC port another server shares by SO_REUSEPORT counts as
    taken too (the workers' own gRPC servers would otherwise split its calls with it)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on HOST={host!r}: {exc.strerror}"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"{host}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    other = " (0: no gRPC)" if variable == "GRPC_PORT" else ""
                    return (
                        f"{variable}={port}: {where} is already in use (another server, or an "
                        f"earlier `make serve` still running?): stop it, or set {variable} to "
                        f"a free port{other}"
                    )
                return f"{variable}={port}: cannot listen on {where}: {exc.strerror}"
    return None


def main(argv: list[str] | None = None) -> None:
    """A bad setting or a taken port exits 2 with one line; otherwise exec gunicorn (same pid,
    signals reach it)."""
    parser().parse_args(argv)
    settings = load_or_exit()
    ports = [("PORT", settings.port)]
    if settings.grpc_port:
        ports.append(("GRPC_PORT", settings.grpc_port))
    for variable, port in ports:
        refusal = port_refusal(settings.host, port, variable)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            raise SystemExit(2)
    argv = gunicorn_argv()
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
