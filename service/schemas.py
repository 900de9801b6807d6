"""Every request and response body of the API, declared once as a typed model.

The views build their answers from these models and /openapi.json is generated from them
(service/openapi.py), so the document cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from service.registry import VERSION_STATES
from service.settings import Settings
from service.tensors import IMAGE_INPUT, LABEL, PROBABILITIES

Probability = Annotated[float, Field(ge=0, le=1)]

# -- examples: shown in /openapi.json and on /docs; tests check them against the models --------

EXAMPLE_MODEL = Settings.model_fields["model_name"].default  # the shipped model, cats_vs_dogs
EXAMPLE_PNG = (  # a 1x1 PNG, base64-encoded: a real image for every b64 field
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mM4MS0FAAPsAcM0yMLuAAAAAElFTkSuQmCC"
)
EXAMPLE_PROBABILITIES = {"cats": 0.958854, "dogs": 0.041146}
EXAMPLE_B64 = {"b64": EXAMPLE_PNG}
_V2_IMAGE = {"name": IMAGE_INPUT, "shape": [1], "datatype": "BYTES", "data": [EXAMPLE_PNG]}
_TF_OK = {"error_code": "OK", "error_message": ""}


def example_bodies(*bodies: Any) -> ConfigDict:
    """A model's example bodies (JSON Schema `examples`, which service/openapi.py also
    copies onto the operations that send or answer the model)."""
    return ConfigDict(json_schema_extra={"examples": list(bodies)})


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
        description="a base64-encoded image file",
        examples=[EXAMPLE_PNG],
        json_schema_extra={"format": "byte"},
    )


class InstancesRequest(Payload):
    """JSON input, as TensorFlow Serving takes images."""

    model_config = example_bodies({"instances": [EXAMPLE_B64]})

    instances: list[B64Instance]


class MultipartImages(Payload):
    """Multipart input: one or more files in the field `image` (several are one batch)."""

    image: list[bytes]


class ClassScore(Payload):
    label: str
    probability: Probability


class Prediction(Payload):
    label: str = Field(description="the predicted class")
    probabilities: dict[str, Probability] = Field(description="every class's probability")
    filename: str | None = Field(None, description="the uploaded file's name, when it had one")
    top: list[ClassScore] | None = Field(
        None, description="with `?top_k=k`: the k most probable classes, best first"
    )


class ModelRef(Payload):
    name: str
    version: int


class PredictResponse(Payload):
    model_config = example_bodies(
        {
            "model": {"name": EXAMPLE_MODEL, "version": 3},
            "predictions": [
                {"label": "cats", "probabilities": EXAMPLE_PROBABILITIES, "filename": "cat.png"}
            ],
        }
    )

    model: ModelRef
    predictions: list[Prediction] = Field(description="one per image, in input order")


# -- model status ----------------------------------------------------------------------------


class VersionInfo(Payload):
    version: int
    state: Literal[VERSION_STATES]  # type: ignore[valid-type]
    error: str | None = Field(None, description="why a version is FAILED or INVALID")
    note: str | None = None


class RuntimeInfo(Payload):
    name: str = Field(description="keras, onnx or openvino")
    device: str
    precision: str = Field(description="fp32, bf16 or mixed_float16")
    note: str | None = Field(None, description="why it is not the path `auto` would prefer")


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

    model_config = example_bodies(
        {
            "name": EXAMPLE_MODEL,
            "default": True,
            "serving_version": 3,
            "loaded_versions": [3],
            "error": None,
            "versions": [
                {"version": 2, "state": "NOT_LOADED"},
                {"version": 3, "state": "AVAILABLE"},
            ],
            "runtime": {"name": "openvino", "device": "cpu", "precision": "bf16"},
            "batching": {
                "max_batch_size": 16,
                "padded_sizes": [1, 2, 4, 8, 16],
                "timeout_ms": 0.0,
                "queue_capacity": 256,
                "queued": 0,
                "batches": 4,
                "images": 7,
                "mean_batch_size": 1.75,
                "batch_sizes": {"1": 2, "2": 1, "3": 1},
                "rejected_queue_full": 0,
                "expired_deadline": 0,
                "failed_batches": 0,
            },
            "metadata": {
                "class_names": ["cats", "dogs"],
                "input": {"height": 150, "width": 150, "channels": 3, "color": "RGB"},
                "threshold": 0.5,
            },
            "model_version_status": [
                {"version": "3", "state": "AVAILABLE", "status": _TF_OK},
                {"version": "2", "state": "START", "status": _TF_OK},
            ],
        }
    )

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
    model_config = example_bodies(
        {
            "default": EXAMPLE_MODEL,
            "models": ModelStatus.model_config["json_schema_extra"]["examples"],
        }
    )

    default: str
    models: list[ModelStatus]


# -- health ----------------------------------------------------------------------------------


class Health(Payload):
    model_config = example_bodies({"status": "ok"})

    status: Literal["ok"]


class Readiness(Payload):
    model_config = example_bodies(
        {
            "status": "ready",
            "models": {
                EXAMPLE_MODEL: {"serving_version": 3, "loaded_versions": [3], "error": None}
            },
        }
    )

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


# -- TensorFlow Serving REST -----------------------------------------------------------------


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
        {"model_version_status": [{"version": "3", "state": "AVAILABLE", "status": _TF_OK}]}
    )

    model_version_status: list[TfVersionStatus]


class TfModelMetadata(Payload):
    model_spec: dict[str, Any]
    metadata: dict[str, Any]


ModelStatus.model_rebuild()
