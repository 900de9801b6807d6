"""The metadata.json of a model version, declared once as a typed model.

Its JSON Schema is generated into docs/metadata.schema.json (`python -m service.doc_tables
--write`); a test keeps that file current.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from classifier.errors import ModelStoreError
from classifier.spec import InputSpec

METADATA_FILE = "metadata.json"
MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
SCHEMA_VERSION = 1
ACTIVATIONS = ("sigmoid", "softmax")  # the output layers a version may have

ClassName = Annotated[StrictStr, Field(min_length=1)]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Section = dict[str, Any] | None
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class ConfidenceHistogram(BaseModel):
    """A histogram of the top-class probability: `fractions[i]` of the answers fell in
    [edges[i], edges[i + 1])."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    edges: tuple[Fraction, ...] = Field(min_length=2, description="bin edges, increasing")
    fractions: tuple[Fraction, ...] = Field(description="one fraction per bin")

    @model_validator(mode="after")
    def _bins(self) -> ConfidenceHistogram:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError("confidence edges must increase")
        if len(self.fractions) != len(self.edges) - 1:
            raise ValueError("confidence needs one fraction per bin (edges minus one)")
        return self


class DriftReference(BaseModel):
    """What the version's answers look like on its validation photos, as it is served: the
    population the service compares its recent answers with (classifier/drift.py)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    of: StrictStr = Field(description="the photos: `validation`")
    count: StrictInt = Field(ge=1, description="how many photos")
    class_mix: dict[ClassName, Fraction] = Field(
        description="the fraction of the answers that went to each class"
    )
    confidence: ConfidenceHistogram = Field(
        description="the histogram of the top-class probability"
    )
    recorded_by: StrictStr | None = Field(
        None, description="`training` at publish time, or the tool that added it later"
    )


class CalibrationErrors(BaseModel):
    """The expected calibration error on the photos the temperature was fitted on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    before: Fraction = Field(description="as trained")
    after: Fraction = Field(description="with the temperature: as served")


class Calibration(BaseModel):
    """Temperature scaling as training recorded it (other fields it wrote are kept as
    written: the method, the loss before and after, the reliability bins)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    temperature: float = Field(
        gt=0, allow_inf_nan=False, description="the logits were divided by it (> 0)"
    )
    fitted_on: StrictStr = Field(description="the photos it was fitted on: `validation`")
    expected_calibration_error: CalibrationErrors


class ModelMetadata(BaseModel):
    """What a version folder says of itself; the store refuses a folder that does not fit."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    schema_version: StrictInt = Field(
        SCHEMA_VERSION,
        ge=1,
        le=SCHEMA_VERSION,
        description="version of this layout (a newer one than this reader's is refused)",
    )
    name: StrictStr = Field(min_length=1, description="model name (the store's folder name)")
    version: StrictInt = Field(ge=1, description="version number (the folder's name)")
    class_names: tuple[ClassName, ...] = Field(
        min_length=2,
        description="class names in output order: a sigmoid output is P(class_names[1]), a "
        "softmax output one probability per class",
    )
    input_spec: InputSpec = Field(
        alias="input", description="the input the model takes, and how images are resized"
    )
    threshold: StrictFloat = Field(
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="two classes: the label is class_names[1] from here up (softmax: argmax)",
    )
    files: dict[str, Sha256] = Field(description="every file of the version with its SHA-256")
    created_at: str | None = Field(None, description="publish time, ISO 8601 UTC")
    output: Section = Field(None, description="the output layer's activation and classes")
    preprocessing: Section = Field(None, description="decode steps, from classifier.preprocess")
    training: Section = Field(
        None,
        description="options, the command line, data counts and the data manifest "
        "(data_manifest: the file listing every photo with its SHA-256, and that file's hash)",
    )
    metrics: Section = Field(None, description="validation scores when it was published")
    calibration: Calibration | None = Field(
        None,
        description="temperature scaling fitted on validation and folded into the model's "
        "output layer (the served probabilities are the calibrated ones), with the "
        "calibration error before and after; absent: not calibrated",
    )
    promotion: Section = Field(None, description="the retrain gate's decision, when retrained")
    libraries: Section = Field(None, description="library versions that trained it")
    drift_reference: DriftReference | None = Field(
        None,
        description="the class mix and top-class probability histogram of the version's "
        "answers on its validation photos, as served: what GET /v1/models/<name>/drift "
        "compares recent answers with; absent in versions published before it was recorded "
        "(`python -m training.drift_reference` adds it)",
    )

    _raw: dict = PrivateAttr(default_factory=dict)

    @field_validator("input_spec", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        try:
            return InputSpec.from_dict(value)
        except TypeError as exc:  # a field of the wrong type
            raise ValueError(str(exc)) from None

    @field_validator("class_names")
    @classmethod
    def _distinct(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError("class names must be distinct")
        # A class name is a folder name too (training's class folders, feedback's labels).
        unsafe = [n for n in names if n.startswith(".") or set(n) & {"/", "\\", "\x00"}]
        if unsafe:
            raise ValueError(
                f"{unsafe} cannot be folder names: no '/', '\\' or NUL, no leading '.'"
            )
        return names

    @field_validator("files")
    @classmethod
    def _plain_files(cls, files: dict[str, str]) -> dict[str, str]:
        if MODEL_FILE not in files:
            raise ValueError(f"must list {MODEL_FILE} with its SHA-256")
        for fname in files:
            # a NUL cannot be in a path: opening it raises ValueError, which no caller expects
            if "/" in fname or "\x00" in fname or fname.startswith("."):
                raise ValueError(f"names an invalid file {fname!r}")
        return files

    @model_validator(mode="after")
    def _head_fits_the_classes(self) -> ModelMetadata:
        activation = (self.output or {}).get("activation", "sigmoid")
        if activation not in ACTIVATIONS:  # any other was read as softmax
            raise ValueError(
                f"output.activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        if self.activation == "sigmoid" and len(self.class_names) != 2:
            raise ValueError(
                f"a sigmoid head has two classes; {len(self.class_names)} need output.activation "
                "softmax"
            )
        return self

    @model_validator(mode="after")
    def _reference_fits_the_classes(self) -> ModelMetadata:
        ref = self.drift_reference
        if ref is not None and tuple(ref.class_mix) != self.class_names:
            raise ValueError(
                f"drift_reference.class_mix names {list(ref.class_mix)}, not the classes "
                f"{list(self.class_names)}"
            )
        return self

    @property
    def activation(self) -> str:
        """The output layer: "sigmoid" (one unit, two classes; every version before C-class
        training) or "softmax" (one unit per class)."""
        return (self.output or {}).get("activation", "sigmoid")

    @property
    def decision_threshold(self) -> float | None:
        """What decides an answer: a sigmoid's `threshold` on P(class_names[1]); None for a
        softmax (the most probable class)."""
        return self.threshold if self.activation == "sigmoid" else None

    @property
    def output_width(self) -> int:
        return 1 if self.activation == "sigmoid" else len(self.class_names)

    @property
    def raw(self) -> dict:
        """The JSON as read, served as is by the model status route."""
        return self._raw

    @classmethod
    def from_dict(cls, data: object) -> ModelMetadata:
        """Validate a parsed metadata.json; raises ModelStoreError naming the first problem."""
        if not isinstance(data, dict):
            raise _bad("metadata is not a JSON object")
        if nesting(data) > MAX_NESTING:
            raise _bad(f"metadata nested deeper than {MAX_NESTING} levels")
        try:
            metadata = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "metadata"
            message = first["msg"].removeprefix("Value error, ")
            raise _bad(f"metadata field {where!r}: {message}") from None
        metadata._raw = data
        return metadata


# Deep enough for any section training writes (about 5 levels); the status routes answer the
# metadata as JSON, and JSON encoders stop near 250 levels.
MAX_NESTING = 32


def nesting(data: object) -> int:
    """How deep lists and objects nest in parsed JSON (iterative: any depth is measured)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _bad(message: str) -> ModelStoreError:
    return ModelStoreError(message, code="invalid_metadata")


def json_schema() -> dict:
    schema = ModelMetadata.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
