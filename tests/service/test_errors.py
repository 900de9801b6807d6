"""The error table: every code the code base raises has a status and a gRPC status code, in
one place."""

import re

import grpc
import pytest

from service.errors import ERRORS, STATUS, grpc_status, http_status
from tests.helpers import REPO

CODE = re.compile(r"""\bcode\s*=\s*["']([a-z_]+)["']""")

# Raised by the core but never sent to a client: they stop a load or a training, not a request.
OFFLINE = {
    "model_store_error",
    "invalid_metadata",
    "incomplete_version",
    "unreadable_version",
    "checksum_mismatch",
    "model_load_failed",
    "model_shape_mismatch",
    "model_check_failed",
    "invalid_dataset",
    "invalid_model_name",
    "invalid_image",
    "unsafe_store",
    "class_mismatch",
}


def raised_codes() -> set[str]:
    codes = set()
    for folder in ("classifier", "service"):
        for path in (REPO / folder).rglob("*.py"):
            codes.update(CODE.findall(path.read_text()))
    return codes


def test_every_code_raised_on_the_request_path_has_a_status():
    missing = raised_codes() - set(STATUS) - OFFLINE
    assert not missing, f"add these codes to service/errors.py ERRORS: {sorted(missing)}"


def test_each_code_is_declared_once():
    codes = [code for kind in ERRORS for code in kind.codes]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize(
    ("code", "status"),
    [("missing_image", 400), ("image_too_large", 413), ("queue_full", 503), ("nope", 500)],
)
def test_status_of_a_code(code, status):
    assert http_status(code) == status


def test_every_kind_has_a_grpc_status_code():
    assert all(kind.grpc in grpc.StatusCode.__members__ for kind in ERRORS)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("model_not_found", "NOT_FOUND"),
        ("version_not_found", "NOT_FOUND"),
        ("invalid_request", "INVALID_ARGUMENT"),
        ("not_an_image", "INVALID_ARGUMENT"),
        ("queue_full", "RESOURCE_EXHAUSTED"),
        ("deadline_exceeded", "DEADLINE_EXCEEDED"),
        ("unauthorized", "UNAUTHENTICATED"),
        ("model_not_ready", "UNAVAILABLE"),
        ("inference_failed", "INTERNAL"),
        ("nope", "INTERNAL"),
    ],
)
def test_grpc_status_of_a_code(code, status):
    assert grpc_status(code) == status


def test_a_core_error_outside_the_table_is_a_generic_500(app):
    from classifier.errors import ModelStoreError

    @app.get("/__unmapped")
    def _raise():
        raise ModelStoreError("secret path /x/y", code="checksum_mismatch")

    response = app.test_client().get("/__unmapped")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {"code": "internal_error", "message": "internal server error"}
    }
