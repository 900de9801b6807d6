"""A real gunicorn on the test store, shared by the client tests (starting one is slow)."""

from __future__ import annotations

import pytest

from benchmarks.harness import Server


@pytest.fixture(scope="session")
def server(models_template):
    """The service with model "pets" v1 on a free loopback port."""
    with Server(models_template, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as srv:
        srv.wait_ready()
        yield srv
