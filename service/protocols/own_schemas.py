"""This service's own API: its request and response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictStr

from service.protocols.payloads import (
    EXAMPLE_B64,
    EXAMPLE_MODEL,
    EXAMPLE_PNG,
    EXAMPLE_PROBABILITIES,
    Payload,
    Probability,
    example_bodies,
)
from service.protocols.tfserving_schemas import TF_OK, TfVersionStatus
from service.registry import VERSION_STATES

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
            "ready": True,
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
                {"version": "3", "state": "AVAILABLE", "status": TF_OK},
                {"version": "2", "state": "START", "status": TF_OK},
            ],
        }
    )

    name: str
    ready: bool = Field(
        description="a version is loaded and serving (KServe's V1 protocol reads it here)"
    )
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


class Alive(Payload):
    """KServe's V1 liveness, on `GET /` to a client that does not ask for HTML."""

    model_config = example_bodies({"status": "alive"})

    status: Literal["alive"]


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
