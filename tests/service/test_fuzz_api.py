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
from service.keys import new_key
from tests.helpers import publish_model

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", params=["keys off", "keys on"])
def fuzz_server(request, tmp_path_factory):
    """The service as deployed by default, and with API keys and CORS on."""
    models = tmp_path_factory.mktemp("fuzz-models")
    publish_model(models, "pets")
    env = {"MODEL_NAME": "pets", "MODEL_POLL_SECONDS": "0"}
    headers = {}
    if request.param == "keys on":
        key, line = new_key("fuzzer")
        (models / "keys").write_text(line + "\n")
        env |= {"API_KEYS_FILE": str(models / "keys"), "CORS_ORIGINS": "https://app.example"}
        headers = {"X-API-Key": key}
    with Server(models, **env) as server:
        yield server.wait_ready(), headers
        assert server.process.poll() is None  # it never fell over


EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


def test_no_5xx_and_every_answer_matches_the_schema(fuzz_server):
    server, headers = fuzz_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)
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
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()


def test_without_a_key_every_answer_is_documented(fuzz_server):
    """With keys on, a caller without one gets documented answers too (401 where keyed)."""
    server, headers = fuzz_server
    if not headers:
        pytest.skip("keys are off in this deployment")
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)
    for operation in (result.ok() for result in schema.get_all_operations()):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case):
            case.call_and_validate(checks=CHECKS)

        check()
