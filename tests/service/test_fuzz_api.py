"""Fuzz the live API from its own OpenAPI description (schemathesis) against real gunicorn.

Bounded: FUZZ_EXAMPLES examples per operation (25 by default; a longer run sets more).
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from benchmarks.harness import Server
from tests.helpers import publish_model

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    models = tmp_path_factory.mktemp("fuzz-models")
    publish_model(models, "pets")
    with Server(models, MODEL_NAME="pets", MODEL_POLL_SECONDS="0") as server:
        yield server.wait_ready()
        assert server.process.poll() is None  # it never fell over


EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


def test_no_5xx_and_every_answer_matches_the_schema(fuzz_server):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {f"{m.upper()} {p}" for p, ops in schema.raw_schema["paths"].items() for m in ops}
    # schemathesis leaves out the operation that serves the schema it was loaded from
    assert {operation.label for operation in operations} == documented - {"GET /openapi.json"}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(checks=CHECKS)

        check()
