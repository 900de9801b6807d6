"""This service's own API: its request and response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictInt, StrictStr

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

EXAMPLE_REQUEST_ID = "5b1f0c7e9d2a4b8f9a3c6e1d2f4a7b90"
EXAMPLE_SHA256 = "9f2b5c1e3d4a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c"

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
    lanes: int
    queue_capacity: int
    queued: int
    batches: int
    images: int
    mean_batch_size: float | None
    batch_sizes: dict[str, int]
    overlapped_batches: int
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
                "lanes": 1,
                "queue_capacity": 256,
                "queued": 0,
                "batches": 4,
                "images": 7,
                "mean_batch_size": 1.75,
                "batch_sizes": {"1": 2, "2": 1, "3": 1},
                "overlapped_batches": 0,
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


# -- the feedback loop: feedback, captures, drift --------------------------------------------


class FeedbackRequest(Payload):
    """Feedback on a captured request: the request id it was answered with (its
    `X-Request-ID`), which of its images (0: the first), and the class the image shows."""

    model_config = ConfigDict(
        extra="forbid", **example_bodies({"request_id": EXAMPLE_REQUEST_ID, "label": "cats"})
    )

    request_id: StrictStr = Field(min_length=1, max_length=128)
    label: StrictStr = Field(min_length=1, description="one of the model's classes")
    index: StrictInt = Field(0, ge=0, description="the image's place in the request")


class FeedbackUpload(Payload):
    """Multipart feedback: one photo in the file field `image`, its class in the field `label`."""

    image: bytes
    label: str


class Answered(Payload):
    label: str = Field(description="the class the model answered")
    version: int


class FeedbackResponse(Payload):
    model_config = example_bodies(
        {
            "model": EXAMPLE_MODEL,
            "label": "cats",
            "image": f"cats/{EXAMPLE_SHA256}.jpg",
            "sha256": EXAMPLE_SHA256,
            "request_id": EXAMPLE_REQUEST_ID,
            "predicted": {"label": "dogs", "version": 3},
            "correct": False,
        }
    )

    model: str
    label: str
    image: str = Field(
        description="the photo's place in FEEDBACK_DIR/<model>: <label>/<sha256>.<ext>"
    )
    sha256: str
    request_id: str | None = Field(description="the captured request's id (null for an upload)")
    predicted: Answered | None = Field(
        description="the answer the photo got (null: the model could not answer it then)"
    )
    correct: bool | None = Field(description="whether that answer was the label")


class CapturedImage(Payload):
    request_id: str
    index: int
    captured_at: str = Field(description="ISO 8601, UTC")
    version: int
    label: str = Field(description="the class the model answered")
    probabilities: dict[str, Probability]
    image: str = Field(description="its file name: GET /v1/models/<name>/captures/<image>")


class CaptureList(Payload):
    """Captured images not labelled yet, newest first."""

    model_config = example_bodies(
        {
            "model": EXAMPLE_MODEL,
            "classes": list(EXAMPLE_PROBABILITIES),
            "capture_rate": 0.05,
            "captures": [
                {
                    "request_id": EXAMPLE_REQUEST_ID,
                    "index": 0,
                    "captured_at": "2025-01-01T12:00:00.000+00:00",
                    "version": 3,
                    "label": "cats",
                    "probabilities": EXAMPLE_PROBABILITIES,
                    "image": f"{EXAMPLE_SHA256}.jpg",
                }
            ],
        }
    )

    model: str
    classes: list[str]
    capture_rate: float = Field(description="CAPTURE_RATE (0: nothing is captured)")
    captures: list[CapturedImage]


class DriftClassMix(Payload):
    psi: float | None = Field(description="population stability index (null: nothing to compare)")
    window: dict[str, float] = Field(description="the share of each class in the window's answers")
    reference: dict[str, float] | None = Field(description="the same on validation")


class DriftConfidence(Payload):
    psi: float | None
    edges: list[float] = Field(description="bin edges of the top-class probability")
    window: list[float] = Field(description="the share of the window's answers in each bin")
    reference: list[float] | None = Field(description="the same on validation")


class DriftReferenceInfo(Payload):
    of: str
    count: int
    recorded_by: str | None


class DriftResponse(Payload):
    """This worker's window of the serving version's answers against its validation answers."""

    model_config = example_bodies(
        {
            "model": EXAMPLE_MODEL,
            "version": 3,
            "window": 1000,
            "answers": 1000,
            "threshold": 0.2,
            "drifting": False,
            "class_mix": {
                "psi": 0.0012,
                "window": {"cats": 0.51, "dogs": 0.49},
                "reference": {"cats": 0.533, "dogs": 0.467},
            },
            "confidence": {
                "psi": 0.0214,
                "edges": [0.5, 0.75, 1.0],
                "window": [0.12, 0.88],
                "reference": [0.14, 0.86],
            },
            "reference": {"of": "validation", "count": 1000, "recorded_by": "training"},
            "note": None,
        }
    )

    model: str
    version: int = Field(description="the serving version, whose answers are compared")
    window: int = Field(description="DRIFT_WINDOW: the most answers the window holds")
    answers: int = Field(description="answers in the window now (this worker's)")
    threshold: float = Field(description="DRIFT_PSI_THRESHOLD")
    drifting: bool | None = Field(
        description="a PSI at the threshold or above; null: no reference, or too few answers"
    )
    class_mix: DriftClassMix
    confidence: DriftConfidence
    reference: DriftReferenceInfo | None = Field(
        description="the version's validation answers it is compared with (null: none recorded)"
    )
    note: str | None = Field(description="why drifting is null")
