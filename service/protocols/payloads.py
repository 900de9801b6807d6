"""What every protocol's payloads share: the base model, the error bodies and the examples.

Each protocol declares its request and response bodies once, as typed models, in its own
schemas module (own_schemas, v2_schemas, tfserving_schemas); the adapters build their answers
from them and /openapi.json is generated from them (service/http/openapi.py), so the document
cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from classifier.store import DEFAULT_MODEL

Probability = Annotated[float, Field(ge=0, le=1)]

# -- examples: shown in /openapi.json and on /docs; tests check them against the models --------

EXAMPLE_MODEL = DEFAULT_MODEL  # the shipped model, cats_vs_dogs
EXAMPLE_PNG = (  # a 1x1 PNG, base64-encoded: a real image for every b64 field
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mM4MS0FAAPsAcM0yMLuAAAAAElFTkSuQmCC"
)
EXAMPLE_PROBABILITIES = {"cats": 0.958854, "dogs": 0.041146}
EXAMPLE_B64 = {"b64": EXAMPLE_PNG}


def example_bodies(*bodies: Any) -> ConfigDict:
    """A model's example bodies (JSON Schema `examples`, which service/http/openapi.py also
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


class ErrorResponse(Payload):  # the error body of this service's own API
    error: ErrorBody


class SimpleError(Payload):
    """The error body of the V2 and TensorFlow Serving protocols."""

    error: str
