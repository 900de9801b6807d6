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
    model_version_status: list[TfVersionStatus] = Field(
        description="the versions as TensorFlow Serving reports them"
    )


class ModelList(Payload):
    default: str
    models: list[ModelStatus]


# -- health ----------------------------------------------------------------------------------


class Health(Payload):
    status: Literal["ok"]


class Readiness(Payload):
    status: Literal["ready", "not_ready"]
    models: dict[str, ModelSummary]


# -- Open Inference Protocol (V2) ------------------------------------------------------------


class SimpleError(Payload):
    """The error body of the V2 and TensorFlow Serving protocols."""

    error: str


class V2ServerMetadata(Payload):
    name: str
    version: str
    extensions: list[str]


class V2Live(Payload):
    live: bool


class V2Ready(Payload):
    ready: bool


class V2ModelReady(Payload):
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
    shape: list[Annotated[int, Field(ge=0)]]
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
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[V2ResponseOutput]


# -- TensorFlow Serving REST -----------------------------------------------------------------


class TfPredictRequest(Payload):
    """Row (`instances`) or columnar (`inputs`) form; images as {"b64": ...}, named or not."""

    signature_name: str | None = None
    instances: list[Any] | None = None
    inputs: Any = None


class TfClassifyRequest(Payload):
    signature_name: str | None = None
    context: dict[str, Any] | None = None
    examples: list[Any]


class TfPredictResponse(Payload):
    predictions: list[dict[str, Any]] | None = Field(
        None, description="row form: per image, its `probabilities` and `label`"
    )
    outputs: dict[str, list[Any]] | None = Field(
        None, description="columnar form: `probabilities` and `label`, one entry per image"
    )


class TfClassifyResponse(Payload):
    result: list[list[tuple[str, float]]] = Field(description="per image, [label, score] pairs")


class TfVersionStatus(Payload):
    version: str
    state: str
    status: dict[str, str] = Field(description="error_code and error_message")


class TfModelStatus(Payload):
    model_version_status: list[TfVersionStatus]


class TfModelMetadata(Payload):
    model_spec: dict[str, Any]
    metadata: dict[str, Any]


ModelStatus.model_rebuild()
