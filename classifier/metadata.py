"""The metadata.json of a model version, parsed and validated into a typed record."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from classifier.errors import ModelStoreError
from classifier.spec import InputSpec

METADATA_FILE = "metadata.json"
MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: int
    class_names: tuple[str, ...]
    input_spec: InputSpec
    threshold: float
    files: dict[str, str]
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: object) -> ModelMetadata:
        """Validate a parsed metadata.json; raises ModelStoreError naming the first problem."""
        if not isinstance(data, dict):
            raise _bad("metadata is not a JSON object")
        try:
            name = data["name"]
            version = data["version"]
            class_names = data["class_names"]
            input_spec = InputSpec.from_dict(data["input"])
            threshold = float(data["threshold"])
            files = data["files"]
        except KeyError as exc:
            raise _bad(f"metadata lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise _bad(f"metadata has an invalid value: {exc}") from None
        if not isinstance(name, str) or not name:
            raise _bad("metadata 'name' must be a non-empty string")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _bad("metadata 'version' must be a positive integer")
        if (
            not isinstance(class_names, list)
            or len(class_names) != 2
            or not all(isinstance(c, str) and c for c in class_names)
            or class_names[0] == class_names[1]
        ):
            raise _bad("metadata 'class_names' must be two distinct non-empty strings")
        if not (0.0 <= threshold <= 1.0) or math.isnan(threshold):
            raise _bad("metadata 'threshold' must lie in [0, 1]")
        if not isinstance(files, dict) or MODEL_FILE not in files:
            raise _bad(f"metadata 'files' must list {MODEL_FILE} with its SHA-256")
        for fname, digest in files.items():
            if not isinstance(fname, str) or "/" in fname or fname.startswith("."):
                raise _bad(f"metadata 'files' names an invalid file {fname!r}")
            if not isinstance(digest, str) or len(digest) != 64:
                raise _bad(f"metadata 'files' has no SHA-256 for {fname!r}")
        return cls(
            name=name,
            version=version,
            class_names=tuple(class_names),
            input_spec=input_spec,
            threshold=threshold,
            files=dict(files),
            raw=data,
        )


def _bad(message: str) -> ModelStoreError:
    return ModelStoreError(message, code="invalid_metadata")
