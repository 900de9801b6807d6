"""TensorFlow Serving's REST API: its request and response bodies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from service.protocols.payloads import (
    EXAMPLE_B64,
    EXAMPLE_PROBABILITIES,
    Payload,
    example_bodies,
)
from service.protocols.tensors import IMAGE_INPUT, LABEL, PROBABILITIES

TF_OK = {"error_code": "OK", "error_message": ""}


class TfPredictRequest(Payload):
    """Row (`instances`) or columnar (`inputs`) form; images as {"b64": ...}, named or not."""

    model_config = example_bodies(
        {"instances": [EXAMPLE_B64]},
        {"inputs": {IMAGE_INPUT: [EXAMPLE_B64]}},
    )

    signature_name: str | None = None
    instances: list[Any] | None = None
    inputs: Any = None


class TfClassifyRequest(Payload):
    model_config = example_bodies({"examples": [{IMAGE_INPUT: EXAMPLE_B64}]})

    signature_name: str | None = None
    context: dict[str, Any] | None = None
    examples: list[Any]


class TfPredictResponse(Payload):
    model_config = example_bodies(
        {"predictions": [{PROBABILITIES: list(EXAMPLE_PROBABILITIES.values()), LABEL: "cats"}]},
        {"outputs": {PROBABILITIES: [list(EXAMPLE_PROBABILITIES.values())], LABEL: ["cats"]}},
    )

    predictions: list[dict[str, Any]] | None = Field(
        None, description="row form: per image, its `probabilities` and `label`"
    )
    outputs: dict[str, list[Any]] | None = Field(
        None, description="columnar form: `probabilities` and `label`, one entry per image"
    )


class TfClassifyResponse(Payload):
    model_config = example_bodies(
        {"result": [[list(item) for item in EXAMPLE_PROBABILITIES.items()]]}
    )

    # Pairs as two-item lists rather than tuples: OpenAPI tools handle `items` better than
    # `prefixItems`.
    result: list[list[Annotated[list[str | float], Field(min_length=2, max_length=2)]]] = Field(
        description="per image, [label, score] pairs in class order"
    )


class TfVersionStatus(Payload):
    version: str
    state: str
    status: dict[str, str] = Field(description="error_code and error_message")


class TfModelStatus(Payload):
    model_config = example_bodies(
        {"model_version_status": [{"version": "3", "state": "AVAILABLE", "status": TF_OK}]}
    )

    model_version_status: list[TfVersionStatus]


class TfModelMetadata(Payload):
    model_spec: dict[str, Any]
    metadata: dict[str, Any]
