"""The Open Inference Protocol (V2): its REST bodies (the gRPC adapter converts its messages
from and to these metadata models as well)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictInt, StrictStr

from service.protocols.payloads import (
    EXAMPLE_MODEL,
    EXAMPLE_PNG,
    EXAMPLE_PROBABILITIES,
    Payload,
    example_bodies,
)
from service.protocols.tensors import IMAGE_INPUT, LABEL, PROBABILITIES

_V2_IMAGE = {"name": IMAGE_INPUT, "shape": [1], "datatype": "BYTES", "data": [EXAMPLE_PNG]}


class V2ServerMetadata(Payload):
    name: str
    version: str
    extensions: list[str]


class V2Live(Payload):
    model_config = example_bodies({"live": True})

    live: bool


class V2Ready(Payload):
    model_config = example_bodies({"ready": True})

    ready: bool


class V2ModelReady(Payload):
    model_config = example_bodies({"name": EXAMPLE_MODEL, "ready": True})

    name: str
    ready: bool


class V2Tensor(Payload):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 where any size is accepted")


class V2ModelMetadata(Payload):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2Tensor] = Field(description="send exactly one of them")
    outputs: list[V2Tensor]
    parameters: dict[str, Any] | None = None


class V2RequestInput(Payload):
    name: StrictStr
    shape: list[Annotated[StrictInt, Field(ge=0)]]
    datatype: StrictStr
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(
        None, description="row-major, flat or nested; BYTES elements base64-encoded"
    )


class V2RequestOutput(Payload):
    name: StrictStr
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data` (bool), `classification` (top k)"
    )


class V2InferRequest(Payload):
    model_config = example_bodies(
        {"inputs": [_V2_IMAGE]},
        {
            "id": "request-1",
            "inputs": [_V2_IMAGE],
            "outputs": [{"name": PROBABILITIES, "parameters": {"classification": 2}}],
        },
    )

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput] = Field(min_length=1)
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(Payload):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2InferResponse(Payload):
    model_config = example_bodies(
        {
            "model_name": EXAMPLE_MODEL,
            "model_version": "3",
            "outputs": [
                {
                    "name": PROBABILITIES,
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "data": list(EXAMPLE_PROBABILITIES.values()),
                },
                {"name": LABEL, "datatype": "BYTES", "shape": [1], "data": ["cats"]},
            ],
        },
        {
            "model_name": EXAMPLE_MODEL,
            "model_version": "3",
            "id": "request-1",
            "outputs": [
                {
                    "name": PROBABILITIES,
                    "datatype": "BYTES",
                    "shape": [1, 2],
                    "data": [
                        f"{p:f}:{i}:{c}" for i, (c, p) in enumerate(EXAMPLE_PROBABILITIES.items())
                    ],
                }
            ],
        },
    )

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[V2ResponseOutput]
