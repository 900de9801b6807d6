"""Every request and response body of the API, declared once as a typed model.

The views build their answers from these models and /openapi.json is generated from them
(service/openapi.py), so the document cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from service.registry import VERSION_STATES

Probability = Annotated[float, Field(ge=0, le=1)]


class Payload(BaseModel):
    """Base of every body: fields that were not set are left out of the JSON."""

    model_config = ConfigDict(validate_assignment=True)


def dump(payload: BaseModel) -> dict:
    return payload.model_dump(mode="json", exclude_unset=True)


# -- errors ----------------------------------------------------------------------------------


class ErrorBody(Payload):
    code: str = Field(description="machine-readable error code (see the README's table)")
    message: str = Field(description="what went wrong, for people")
    details: dict[str, Any] | None = Field(None, description="e.g. which image of several")


class ErrorResponse(Payload):
    error: ErrorBody


# -- predict ---------------------------------------------------------------------------------


class B64Instance(Payload):
    b64: StrictStr = Field(
        description="a base64-encoded image file", json_schema_extra={"format": "byte"}
    )


class InstancesRequest(Payload):
    """JSON input, as TensorFlow Serving takes images."""

    instances: list[B64Instance]


class MultipartImages(Payload):
    """Multipart input: one or more files in the field `image` (several are one batch)."""

    image: list[bytes]


class Prediction(Payload):
    label: str = Field(description="the predicted class")
    probabilities: dict[str, Probability] = Field(description="every class's probability")
    filename: str | None = Field(None, description="the uploaded file's name, when it had one")


class ModelRef(Payload):
    name: str
    version: int


class PredictResponse(Payload):
    model: ModelRef
    predictions: list[Prediction] = Field(description="one per image, in input order")


# -- model status ----------------------------------------------------------------------------


class VersionInfo(Payload):
    version: int
    state: Literal[VERSION_STATES]  # type: ignore[valid-type]
    error: str | None = Field(None, description="why a version is FAILED or INVALID")
    note: str | None = None


class RuntimeInfo(Payload):
    name: str
    device: str


class BatchingInfo(Payload):
    max_batch_size: int
    padded_sizes: list[int]
    timeout_ms: float
    queue_capacity: int
    queued: int
    batches: int
    images: int
    mean_batch_size: float | None
    batch_sizes: dict[str, int]
    rejected_queue_full: int
    expired_deadline: int
    failed_batches: int


class ModelSummary(Payload):
    serving_version: int | None
    loaded_versions: list[int]
    error: str | None


class ModelStatus(Payload):
    """What GET /v1/models/<name> reports (the summary's fields in the same order)."""

    name: str
    default: bool = Field(description="served on /predict")
    serving_version: int | None
    loaded_versions: list[int]
    error: str | None
    versions: list[VersionInfo]
    runtime: RuntimeInfo | None
    batching: BatchingInfo | None
    metadata: dict[str, Any] | None = Field(description="the serving version's metadata.json")


class ModelList(Payload):
    default: str
    models: list[ModelStatus]


# -- health ----------------------------------------------------------------------------------


class Health(Payload):
    status: Literal["ok"]


class Readiness(Payload):
    status: Literal["ready", "not_ready"]
    models: dict[str, ModelSummary]
