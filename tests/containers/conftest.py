"""The container test's engine, images and figures (run by `make test-containers`).

Everything runs on a real Docker engine (tests/containers/engine.py): the images are built
from the Dockerfile as committed, through docker-compose.yml as users build them. What the
test makes it removes (containers, networks, volumes); the images stay as a build cache.
The figures it measures (build times, image sizes, start and swap times) are printed at the
end of the run; docs/benchmarks.md records them.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.containers import standins
from tests.containers.engine import Engine, Unavailable
from tests.helpers import REPO

PROJECT = "image-classifier-test"  # compose project: never the user's own stack
IMAGE_TAG = "test"
FIGURES = pytest.StashKey[dict]()
SKIPPED = "skipped"


def pytest_configure(config):
    config.stash[FIGURES] = {}


def pytest_terminal_summary(terminalreporter, config):
    """The figures, or the one line that says why the test was skipped (`make
    test-containers` lists no skipped test one by one)."""
    figures = config.stash.get(FIGURES, {})
    if SKIPPED in figures:
        terminalreporter.write_line(figures[SKIPPED])
    elif figures:
        terminalreporter.section("container test figures")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def figures(pytestconfig) -> dict:
    return pytestconfig.stash[FIGURES]


@pytest.fixture(scope="session")
def scratch():
    """This run's own folder (pytest's temporary folders are pruned by other pytest runs on
    the machine, and the engine mounts from here): removed at the end."""
    with tempfile.TemporaryDirectory(prefix="container-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def engine(scratch, figures):
    """A Docker engine with compose v2; skips the whole test, in one line, where none can be
    had. A daemon this run started is stopped at the end, by its PID."""
    started = time.monotonic()
    engine = Engine(scratch / "docker-config")
    try:
        engine.install()
        engine.start()
    except Unavailable as exc:
        engine.stop()
        figures[SKIPPED] = f"container test skipped: {exc}"
        pytest.skip(figures[SKIPPED])
    try:
        version = engine.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        compose = engine.docker("compose", "version", "--short").stdout.strip()
        figures["engine"] = (
            f"Docker {version}, compose {compose} ({time.monotonic() - started:.0f} s)"
        )
        yield engine
    finally:
        engine.stop()


@dataclass(frozen=True)
class Images:
    serve: str
    train: str


def free_ports(count: int) -> list[int]:
    """`count` consecutive loopback ports that are free now."""
    for base in range(20000 + os.getpid() % 20000, 60000, 97):
        ports = list(range(base, base + count))
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return ports
    raise RuntimeError("no free loopback ports")


class Compose:
    """`docker compose` on this repository's files, as the test's own project."""

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        ports = free_ports(18)
        self.engine = engine
        self.data_dir = data_dir  # the trainer's DATA_DIR
        self.port = ports[0]  # nginx
        self.env = {
            "PORT": str(ports[0]),
            "GRPC_PORT": str(ports[9]),  # nginx's gRPC
            "API_PORTS": f"{ports[1]}-{ports[8]}",
            "API_GRPC_PORTS": f"{ports[10]}-{ports[17]}",
            "IMAGE_TAG": IMAGE_TAG,
            "DATA_DIR": str(data_dir),
        }

    def __call__(self, *args: str, timeout: float = 900, check: bool = True, train=False):
        """`docker compose ARGS`; with `train`, the trainer's profile too (never for `up`:
        it would start a training)."""
        profile = ["--profile", "train"] if train else []
        return self.engine.docker(
            "compose", "--project-name", PROJECT, *profile, *args,
            timeout=timeout, check=check, cwd=REPO, env=self.env,
        )  # fmt: skip

    def config(self) -> dict:
        return json.loads(self("config", "--format", "json", train=True).stdout)

    def down(self) -> None:
        self("down", "--volumes", "--remove-orphans", "--timeout", "40", train=True)


@pytest.fixture(scope="session")
def compose(engine, scratch) -> Compose:
    data = scratch / "retrain-data"
    data.mkdir(mode=0o755)  # the trainer reads it as its own user
    return Compose(engine, data)


@pytest.fixture(scope="session")
def images(engine, compose, figures) -> Images:
    """The serving and trainer images, built through compose from the Dockerfile; timed,
    then rebuilt on the warm cache and timed again; their sizes."""
    started = time.monotonic()
    bases = standins.ensure(engine)
    figures["base images"] = ", ".join(f"{image}: {how}" for image, how in bases.items()) + (
        f" ({time.monotonic() - started:.0f} s)"
    )
    services = compose.config()["services"]
    built = Images(services["api"]["image"], services["trainer"]["image"])
    fresh = all(
        engine.docker("image", "inspect", image, check=False).returncode != 0
        for image in (built.serve, built.train)
    )
    for label in ("build", "rebuild"):
        started = time.monotonic()
        compose("build", train=True)
        cache = (
            "nothing changed"
            if label == "rebuild"
            else "no image of the project on the engine before"
            if fresh
            else "earlier images of the project on the engine"
        )
        figures[f"{label} of both images"] = f"{time.monotonic() - started:.0f} s ({cache})"
    python, _ = standins.python_image()
    for kind, image in (
        ("python base", python),
        ("serving", built.serve),
        ("trainer", built.train),
    ):
        size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
        figures[f"{kind} image"] = f"{size / 1e6:.0f} MB"
    return built
